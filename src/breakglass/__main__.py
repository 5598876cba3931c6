"""``python -m breakglass``."""

from breakglass.cli import main

main()
