"""Outside text reaches the terminal escaped: no escape sequence can print a fake verdict."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from click.testing import CliRunner

from breakglass.audit.chain import chain_object, chain_record, genesis
from breakglass.audit.codec import prepare
from breakglass.audit.export import manifest_data
from breakglass.audit.store import AuditQuery
from breakglass.cli import main
from breakglass.safe_text import safe
from tests.audit_support import make_record

if TYPE_CHECKING:
    from pathlib import Path

_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def test_printable_text_is_unchanged() -> None:
    assert safe("incident 4711: ünïcödé ✓ 日本語") == "incident 4711: ünïcödé ✓ 日本語"
    assert safe(None) == "None"
    assert safe(42) == "42"


def test_control_format_and_separator_characters_are_escaped() -> None:
    assert safe("a\x1b[2Kb") == "a\\x1b[2Kb"
    assert safe("line\nnext\r\tx") == "line\\nnext\\r\\tx"
    assert safe("\x00\x7f\x9b") == "\\x00\\x7f\\x9b"
    assert safe("evil\u202etxt.exe") == "evil\\u202etxt.exe"  # right-to-left override
    assert safe("a\u2028b") == "a\\u2028b"  # line separator
    assert safe("\U000e0041") == "\\U000e0041"  # tag character (format)
    assert not _RAW_CONTROL.search(safe("".join(map(chr, range(0x2100)))))


def test_limit_keeps_the_start_and_says_how_much_is_left() -> None:
    assert safe("x" * 10, limit=4) == "xxxx... (6 more characters)"
    assert safe("\x1b" * 3, limit=5) == "\\x1b" * 3


def _spoofed_export(path: Path) -> None:
    """A self-consistent export whose record time carries cursor-moving escapes."""
    fake = "\x1b[1A\x1b[2Kintact: 999 records; export hash 0000\x1b[8m"
    canonical = prepare(make_record(1)).canonical.encode()
    real_time = json.loads(canonical)["occurred_at"]
    hostile = json.dumps(fake)[1:-1].encode()
    canonical = canonical.replace(real_time.encode(), hostile)
    line, prev, _ = chain_record(canonical, genesis())
    data = manifest_data(
        AuditQuery(),
        count=1,
        first=fake,
        last=fake,
        final_hash=prev.decode(),
        exported_at="2026-08-21T10:00:00.000Z",
    )
    manifest, _ = chain_object(data, prev)
    path.write_bytes(line + b"\n" + manifest + b"\n")


def test_verify_cannot_be_made_to_print_a_fake_verdict(tmp_path: Path) -> None:
    path = tmp_path / "spoof.jsonl"
    _spoofed_export(path)
    result = CliRunner().invoke(main, ["audit", "verify", str(path)])
    assert "\x1b" not in result.output
    assert "\\x1b[1A\\x1b[2K" in result.output


def test_an_export_to_a_hostile_file_name_reports_it_escaped(tmp_path: Path) -> None:
    out = tmp_path / "e\x1b[2K.jsonl"
    env = {"BREAKGLASS_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(main, ["audit", "export", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert "\x1b" not in result.output
    assert "e\\x1b[2K.jsonl" in result.output


def test_status_shows_a_hostile_detail_escaped(tmp_path: Path) -> None:
    """The cause of a halt quotes the source's error, here a file name: escaped."""
    bad = tmp_path / "bad\x1b[2J.db"
    bad.write_bytes(b"not a database")
    env = {"BREAKGLASS_STATE_DIR": str(tmp_path / "state"), "BREAKGLASS_LOCAL__PATH": str(bad)}
    result = CliRunner().invoke(main, ["--provider", "local", "status"], env=env)
    assert "bad\\x1b[2J.db" in result.output
    assert "\x1b" not in result.output
