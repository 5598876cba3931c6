"""RFC 3161 time stamps of an export, against a real time-stamping authority: `openssl ts -reply`.

The TSA here is OpenSSL's own implementation of RFC 3161, behind a small HTTP
endpoint on loopback (what a public TSA such as FreeTSA serves over HTTPS):
its own CA, a TSA certificate with the critical timeStamping purpose, and a
serial number file.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from breakglass.audit.export import export_jsonl
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.audit.timestamp import TimestampError, request_der, stamp
from breakglass.audit.verify import verify_lines
from breakglass.cli import main
from tests.audit_support import make_record, rows

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

OPENSSL = shutil.which("openssl")

_TSA_CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ tsa_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
"""


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None, "the openssl command is needed (apt-get install openssl)"
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A running TSA: its URL, and its CA certificate."""
    d = tmp_path_factory.mktemp("tsa")
    (d / "tsa.cnf").write_text(_TSA_CONFIG.format(dir=d))
    (d / "serial").write_text("01\n")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test TSA root",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=test TSA",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tsa.crt", "-days", "2",
        "-extfile", "tsa.cnf", "-extensions", "tsa_ext",
        cwd=d,
    )  # fmt: skip
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:  # one serial-number update at a time
                (d / "q.tsq").write_bytes(query)
                done = subprocess.run(
                    [OPENSSL or "openssl", "ts", "-reply", "-config", str(d / "tsa.cnf"),
                     "-queryfile", str(d / "q.tsq"), "-out", str(d / "r.tsr")],
                    capture_output=True, check=False,
                )  # fmt: skip
                reply = (d / "r.tsr").read_bytes() if done.returncode == 0 else b""
            self.send_response(200 if reply else 400)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tsr", d / "ca.crt"
    server.shutdown()
    server.server_close()


def _stamped_export(tmp_path: Path, url: str) -> bytes:
    store = SqliteAuditStore(tmp_path / "audit.db")
    store.save(rows(make_record(1), make_record(2)))
    out = io.BytesIO()
    export_jsonl(store, AuditQuery(), out, stamper=lambda h: stamp(url, h))
    store.close()
    return out.getvalue()


def test_the_request_is_one_openssl_reads(tmp_path: Path) -> None:
    (tmp_path / "q.tsq").write_bytes(request_der("ab" * 32, nonce=12345))
    assert OPENSSL is not None
    text = subprocess.run(
        [OPENSSL, "ts", "-query", "-in", str(tmp_path / "q.tsq"), "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Hash Algorithm: sha256" in text
    assert "Nonce: 0x3039" in text
    assert "Certificate required: yes" in text


def test_an_export_stamped_by_a_tsa_verifies_with_its_ca(
    tmp_path: Path, tsa: tuple[str, Path]
) -> None:
    url, ca = tsa
    text = _stamped_export(tmp_path, url)
    line = json.loads(text.splitlines()[-1])
    assert (line["kind"], line["tsa"]) == ("timestamp", url)
    result = verify_lines(io.BytesIO(text), tsa_ca=ca)
    assert result.ok, result.summary()
    assert result.timestamp_time is not None
    assert "GMT" in result.timestamp_time
    assert "time stamp valid" in result.summary()
    # Without the CA it is reported, not checked.
    assert "not checked (give --tsa-ca)" in verify_lines(io.BytesIO(text)).summary()


def test_a_stamp_moved_to_another_export_fails(tmp_path: Path, tsa: tuple[str, Path]) -> None:
    url, ca = tsa
    first = _stamped_export(tmp_path / "a", url)
    second = _stamped_export(tmp_path / "b", url)
    stamp_of_first = json.loads(first.splitlines()[-1])
    stamp_of_first["export_hash"] = json.loads(second.splitlines()[-2])["hash"]
    forged = b"\n".join([*second.splitlines()[:-1], json.dumps(stamp_of_first).encode()]) + b"\n"
    result = verify_lines(io.BytesIO(forged), tsa_ca=ca)
    assert not result.ok
    assert "does not verify against the TSA's CA certificate" in (result.problem or "")


def test_a_stamp_from_another_ca_or_a_changed_reply_fails(
    tmp_path: Path, tsa: tuple[str, Path]
) -> None:
    url, ca = tsa
    text = _stamped_export(tmp_path, url)
    other = tmp_path / "other"
    other.mkdir()
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "o.key", "-out", "o.crt", "-days", "1", "-subj", "/CN=other", cwd=other,
    )  # fmt: skip
    assert not verify_lines(io.BytesIO(text), tsa_ca=other / "o.crt").ok
    line = json.loads(text.splitlines()[-1])
    reply = bytearray(base64.b64decode(line["reply"]))
    reply[-10] ^= 0xFF
    line["reply"] = base64.b64encode(bytes(reply)).decode()
    changed = b"\n".join([*text.splitlines()[:-1], json.dumps(line).encode()]) + b"\n"
    assert not verify_lines(io.BytesIO(changed), tsa_ca=ca).ok


def test_the_cli_stamps_and_checks(tmp_path: Path, tsa: tuple[str, Path]) -> None:
    url, ca = tsa
    env = {"BREAKGLASS_STATE_DIR": str(tmp_path / "state")}
    out = tmp_path / "e.jsonl"
    runner = CliRunner()
    made = runner.invoke(main, ["audit", "export", "--out", str(out), "--tsa-url", url], env=env)
    assert made.exit_code == 0, made.output
    checked = runner.invoke(main, ["audit", "verify", str(out), "--tsa-ca", str(ca)], env=env)
    assert checked.exit_code == 0, checked.output
    assert "time stamp valid" in checked.output


def test_a_tsa_that_is_away_fails_the_export_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(TimestampError, match="cannot reach the time-stamping authority"):
        stamp("http://127.0.0.1:1/tsr", "ab" * 32, timeout=2)
    env = {"BREAKGLASS_STATE_DIR": str(tmp_path / "state")}
    out = tmp_path / "e.jsonl"
    made = CliRunner().invoke(
        main, ["audit", "export", "--out", str(out), "--tsa-url", "http://127.0.0.1:1/"], env=env
    )
    assert made.exit_code == 1
    assert "cannot reach the time-stamping authority" in made.output
    assert not out.exists()
