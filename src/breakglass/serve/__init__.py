"""``breakglass serve``: the authenticated halt API and the operator console.

The web parts need the ``serve`` extra (``pip install breakglass[serve]``);
:mod:`breakglass.serve.listeners` (the seam notifications plug into) needs
nothing beyond the core.
"""
