"""``breakglass audit``: pull, export, verify and inspect the flag's change history.

Exit codes: 0 done (``verify``: intact), 1 an error (``verify``: broken),
2 a usage error, 4 (``pull``) done, but some vendor entries were malformed
or conflicting: they are counted, listed and kept in the store's problems.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import click

from breakglass.audit.recorder import PROVIDER as OWN_PROVIDER
from breakglass.audit.store import AuditQuery, open_audit_store
from breakglass.audit.verify import MAX_LINE_BYTES as MAX_LINE
from breakglass.cli_errors import fail, json_flag, print_json
from breakglass.clock import SYSTEM_CLOCK
from breakglass.columns import table
from breakglass.errors import BreakglassError, ConfigurationError, ProviderNotFoundError
from breakglass.plugins import KNOWN_VENDORS, available_providers, load_plugin
from breakglass.safe_text import safe

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.audit.export import Manifest
    from breakglass.audit.pull import PullReport
    from breakglass.audit.settings import FeedSettings
    from breakglass.audit.signing import Signer
    from breakglass.audit.store import AuditStore
    from breakglass.settings import Settings

EXIT_PROBLEMS = 4

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _HasSettings(Protocol):
    def settings(self) -> Settings: ...


class TimeParam(click.ParamType[datetime]):
    """An RFC 3339 time, a date (midnight UTC), or an age such as ``7d``, ``12h``, ``30m``."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """Parse ``value`` into an aware UTC datetime."""
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        relative = _RELATIVE.match(text)
        if relative:
            delta = timedelta(**{_UNITS[relative[2]]: int(relative[1])})
            return SYSTEM_CLOCK.now() - delta
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not a time (2026-08-21, 2026-08-21T10:15:00Z, 7d, 12h)", param, ctx
            )
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


TIME = TimeParam()
_FILE = click.Path(dir_okay=False, path_type=Path)


def _fail(exc: BreakglassError) -> NoReturn:
    fail(exc)


def _store(settings: Settings) -> AuditStore:
    return open_audit_store(settings)


def _drain_spool(settings: Settings, store: AuditStore) -> None:
    """Write what bridge processes spooled while the store was down (before pulling or exporting)."""
    from breakglass.audit.settings import load_audit_settings
    from breakglass.audit.spool import Spool

    spool = Spool(load_audit_settings().spool(settings))
    try:
        drained = spool.drain(store)
    except OSError as exc:
        click.echo(
            f"breakglass: warning: cannot read the spool {safe(spool.path)}: {exc.strerror}",
            err=True,
        )
        return
    if drained:
        click.echo(f"{drained} spooled records of the bridge written to the store", err=True)


@click.group()
def audit() -> None:
    """The flag's change history: pull it from providers, export it as evidence, verify exports.

    The store is SQLite in the state directory (<state_dir>/audit.db), or
    PostgreSQL when BREAKGLASS_AUDIT__DATABASE_URL is set.
    """


class _Progress:
    """A counter line on stderr, rewritten in place on a terminal, silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def __call__(self, report: PullReport) -> None:
        if self.enabled:
            click.echo(
                f"\r{safe(report.provider)}: {report.fetched} fetched, {report.stored} new, "
                f"{report.malformed} malformed ({report.pages} pages)",
                err=True,
                nl=False,
            )

    def done(self) -> None:
        if self.enabled:
            click.echo("", err=True)


@audit.command()
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Pull this provider (repeatable; default: the configured one).",
)
@click.option("--since", type=TIME, help="Keep only records from this time on (2026-08-21, 7d).")
@click.option(
    "--from-start", is_flag=True, help="Ignore the stored cursor and fetch everything again."
)
@click.option(
    "--page-pause",
    type=click.FloatRange(min=0, max=60),
    default=0.0,
    show_default=True,
    help="Seconds to wait between pages, to spare a vendor's rate limit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.pass_obj
def pull(
    ctx: _HasSettings,
    providers: tuple[str, ...],
    since: datetime | None,
    *,
    from_start: bool,
    page_pause: float,
    as_json: bool,
) -> None:
    """Fetch what is new in each provider's change log into the audit store."""
    from breakglass.audit.pull import pull_history
    from breakglass.audit.settings import load_audit_settings

    reports: list[PullReport] = []
    try:
        settings = ctx.settings()
        feeds = load_audit_settings().feeds
        store = _store(settings)
        try:
            _drain_spool(settings, store)
            for given in providers or (settings.provider,):
                name = given.strip().lower()
                if name == OWN_PROVIDER:
                    raise ConfigurationError(
                        "the bridge writes its own records (provider 'breakglass') as they "
                        "happen; there is nothing to pull"
                    )
                chosen = settings.model_copy(update={"provider": name})
                backend = _backend(name, chosen, feeds)
                if backend.audit is None:
                    raise ConfigurationError(f"the {name} provider has no audit source configured")
                progress = _Progress()
                try:
                    report = pull_history(
                        store,
                        backend.audit,
                        provider=name,
                        flag_key=chosen.flag_key,
                        since=since,
                        from_start=from_start,
                        page_pause=page_pause,
                        on_page=progress,
                    )
                finally:
                    progress.done()
                    _close_parts(backend)
                reports.append(report)
                if not as_json:
                    click.echo(safe(report.summary()))
                    for problem in report.problems:
                        click.echo(f"  problem: {safe(problem)}")
        finally:
            store.close()
    except BreakglassError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    if any(r.error for r in reports):
        sys.exit(1)
    if not all(r.clean for r in reports):
        sys.exit(EXIT_PROBLEMS)


def _backend(name: str, settings: Settings, feeds: dict[str, FeedSettings]) -> Any:
    """A provider's plugin, or, for a configured feed (the kill switch), just its audit source."""
    feed = feeds.get(name)
    if feed is None:
        try:
            plugin = load_plugin(name)
        except ProviderNotFoundError:
            if name in KNOWN_VENDORS:
                raise  # its message says which distribution to install
            # `--provider killswitch` before its feed is configured: name both ways to fix it,
            # not BREAKGLASS_PROVIDER, which the user did not set.
            raise ConfigurationError(
                f"nothing to pull from {name!r}: no provider adapter of that name is installed "
                f"(installed: {', '.join(available_providers()) or 'none'}) and no audit feed has "
                f"it (configured: {', '.join(sorted(feeds)) or 'none'}); a feed is an "
                f"[audit.feeds.{name}] table with its url and token (docs/audit-record.md)"
            ) from None
        return plugin.create(settings, SYSTEM_CLOCK)
    from breakglass.audit.feed import FeedAuditSource

    return _FeedBackend(
        FeedAuditSource(feed.url, provider=name, token=feed.token, timeout=feed.timeout)
    )


@dataclass(frozen=True, slots=True)
class _FeedBackend:
    """A feed pulled like a provider: only the audit seam."""

    audit: Any
    source: None = None
    admin: None = None


def _close_parts(backend: Any) -> None:
    for part in (backend.source, backend.admin, backend.audit):
        close = getattr(part, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 -- closing must not mask the pull's outcome
                click.echo(f"breakglass: warning: closing {type(part).__name__} failed", err=True)


def _query(
    providers: tuple[str, ...],
    flags: tuple[str, ...],
    environments: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
) -> AuditQuery:
    return AuditQuery(
        providers=tuple(sorted(set(providers))),
        flags=tuple(sorted(set(flags))),
        environments=tuple(sorted(set(environments))),
        since=since,
        until=until,
    )


_filter_options = [
    click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable)."),
    click.option("--flag", "flags", multiple=True, help="Only this flag key (repeatable)."),
    click.option(
        "--environment", "environments", multiple=True, help="Only this environment (repeatable)."
    ),
    click.option("--since", type=TIME, help="From this time on (inclusive)."),
    click.option("--until", type=TIME, help="Before this time (exclusive)."),
]


def _filters(func: Any) -> Any:
    for option in reversed(_filter_options):
        func = option(func)
    return func


@audit.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: hash-chained evidence with a manifest; csv: flat, for spreadsheets.",
)
@click.option("--out", type=_FILE, help="Write here (default: stdout).")
@click.option(
    "--new",
    "new_only",
    is_flag=True,
    help="Only what was stored since the last unfiltered export, continuing its chain.",
)
@click.option(
    "--sign-key",
    type=_FILE,
    help="Sign with this Ed25519 private key (default: BREAKGLASS_AUDIT__SIGNING_KEY).",
)
@click.option(
    "--tsa-url",
    help="Have this RFC 3161 time-stamping authority stamp the export hash "
    "(default: BREAKGLASS_AUDIT__TSA_URL).",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every flag's records: the store's whole chain (the probe's flag too).",
)
@_filters
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print what was exported (count, file, export hash, key) as JSON; needs --out.",
)
@click.pass_obj
def export(  # noqa: PLR0913 -- one parameter per option
    ctx: _HasSettings,
    fmt: str,
    out: Path | None,
    providers: tuple[str, ...],
    flags: tuple[str, ...],
    environments: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    *,
    new_only: bool,
    everything: bool,
    sign_key: Path | None,
    tsa_url: str | None,
    as_json: bool,
) -> None:
    """Export the history (JSON Lines: hash-chained, signed evidence; CSV: for spreadsheets).

    By default only the production flag (BREAKGLASS_FLAG_KEY): probe flags and
    others need --flag, or --all for everything. With --all or --new, JSON Lines
    is the store's own chain in the order the store received the records; with
    filters, the matching records ordered by time then id. The store's chain is
    checked first: a broken store is not exported.
    """
    from breakglass.audit.export import export_csv, export_jsonl
    from breakglass.audit.settings import load_audit_settings
    from breakglass.audit.signing import load_signer

    if as_json and out is None:
        raise click.UsageError("--json prints the summary on stdout: give the export --out FILE")
    try:
        settings = ctx.settings()
        if everything and (flags or providers or environments or since or until):
            raise ConfigurationError("--all exports everything: it takes no filter")
        if not (everything or new_only or flags or providers):
            flags = (settings.flag_key,)  # the production flag, not the probe's
        query = _query(providers, flags, environments, since, until)
        audit_settings = load_audit_settings()
        store = open_audit_store(settings, audit_settings)
        try:
            _drain_spool(settings, store)
            if fmt == "csv":
                if new_only:
                    raise ConfigurationError("--new is for JSON Lines exports")
                with _output(out, binary=False) as handle:
                    count = export_csv(store, query, handle)
                if as_json:
                    print_json({"ok": True, "format": "csv", "records": count, "out": str(out)})
                else:
                    click.echo(f"exported {count} records as CSV{_where(out)}", err=True)
                return
            key_path = sign_key or audit_settings.signing_key
            signer = load_signer(key_path) if key_path is not None else None
            if signer is not None and signer.exposed:
                click.echo(
                    f"breakglass: warning: the signing key {safe(key_path)} is readable by other "
                    "users; whoever reads it can sign forgeries (chmod 600)",
                    err=True,
                )
            stamper = _stamper(tsa_url or audit_settings.tsa_url)
            with _output(out, binary=True) as handle:
                manifest = export_jsonl(
                    store, query, handle, signer=signer, new_only=new_only, stamper=stamper
                )
        finally:
            store.close()
    except BreakglassError as exc:
        _fail(exc)
    _report_export(manifest, out, signer, stamped=stamper is not None, as_json=as_json)


def _report_export(
    manifest: Manifest, out: Path | None, signer: Signer | None, *, stamped: bool, as_json: bool
) -> None:
    """What a JSON Lines export wrote: a JSON object on stdout, or lines on stderr."""
    if as_json:
        print_json(
            {
                "ok": True,
                "format": "jsonl",
                "records": manifest.count,
                "out": str(out),
                "export_hash": manifest.export_hash,
                "final_hash": manifest.final_hash,
                "first_occurred_at": manifest.first_occurred_at,
                "last_occurred_at": manifest.last_occurred_at,
                "key_id": signer.key_id if signer is not None else None,
                "timestamped": stamped,  # a failed stamp raised before this
            }
        )
        return
    signed = f"; signed with key {signer.key_id}" if signer is not None else "; not signed"
    click.echo(
        f"exported {manifest.count} records{_where(out)}{signed}\n"
        f"export hash (anchor it, see docs/compliance.md): {manifest.export_hash}",
        err=True,
    )


def _stamper(url: str | None) -> Callable[[str], dict[str, Any]] | None:
    if url is None:
        return None
    from breakglass.audit.timestamp import stamp

    def ask(export_hash: str) -> dict[str, Any]:
        return stamp(url, export_hash)

    return ask


def _where(out: Path | None) -> str:
    return f" to {safe(out)}" if out is not None else ""


class _output:  # noqa: N801 -- used like a function in a with statement
    """Stdout, or a file written beside its final name and moved there only when complete."""

    def __init__(self, out: Path | None, *, binary: bool) -> None:
        self.out = out
        self.binary = binary
        self.tmp: Path | None = None
        self.handle: Any = None

    def __enter__(self) -> Any:
        if self.out is None:
            self.handle = None
            return sys.stdout.buffer if self.binary else sys.stdout
        self.tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        try:
            if self.binary:
                self.handle = self.tmp.open("wb")
            else:
                self.handle = self.tmp.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise ConfigurationError(f"cannot write {self.out}: {exc.strerror}") from None
        return self.handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if self.handle is None:
            (sys.stdout.buffer if self.binary else sys.stdout).flush()
            return
        self.handle.close()
        assert self.tmp is not None  # noqa: S101 -- set in __enter__
        assert self.out is not None  # noqa: S101 -- set in __init__
        if exc_type is None:
            self.tmp.replace(self.out)
        else:
            self.tmp.unlink(missing_ok=True)


@audit.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option("--expect", help="The export hash anchored when the export was made.")
@click.option(
    "--public-key",
    type=_FILE,
    help="The exporter's Ed25519 public key: the export must carry a valid signature by it.",
)
@click.option(
    "--tsa-ca",
    type=_FILE,
    help="The time-stamping authority's CA certificate: the export must carry a time stamp that "
    "`openssl ts -verify` accepts.",
)
@click.option(
    "--store",
    "use_store",
    is_flag=True,
    help="Check the audit store's chain and export log; with FILE, also say when the store "
    "made this export (or that it did not).",
)
@click.option(
    "--latest",
    is_flag=True,
    help="With --store: fail unless FILE is the store's latest export and covers all its records.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Also parse every record line as JSON and re-serialise it. The default checks every "
    "byte against the chain and the UTF-8 encoding; --strict also rejects a record line that is "
    "not canonical JSON (a duplicate key, invalid JSON after the fixed fields) whose hash was "
    "recomputed to match: a line only a forger writes. --public-key rejects such a forgery too.",
)
@click.option(
    "--max-line-bytes",
    type=click.IntRange(min=1024),
    default=MAX_LINE,
    show_default=True,
    help="The longest line read; a longer one is an error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def verify(  # noqa: PLR0913 -- one parameter per option
    ctx: _HasSettings,
    file: str | None,
    expect: str | None,
    public_key: Path | None,
    tsa_ca: Path | None,
    *,
    use_store: bool,
    latest: bool,
    strict: bool,
    max_line_bytes: int,
    as_json: bool,
) -> None:
    """Check an export (exit 0 when intact, 1 naming the first broken line), or the store.

    FILE is a JSON Lines export (- reads standard input). With --store and no
    FILE, only the store's chain and export log are checked.
    """
    from breakglass.audit.signing import load_public_key
    from breakglass.audit.verify import verify_export

    if file is None and not use_store:
        raise click.UsageError("give an export FILE, or --store to check the store")
    if latest and not (use_store and file):
        raise click.UsageError("--latest needs FILE and --store")
    report: dict[str, Any] = {}
    ok = True
    export_hash: str | None = None
    try:
        key = load_public_key(public_key) if public_key is not None else None
    except BreakglassError as exc:
        _fail(exc)
    if file is not None:
        try:
            result = verify_export(
                file,
                expect=expect,
                strict=strict,
                public_key=key,
                tsa_ca=tsa_ca,
                max_line_bytes=max_line_bytes,
            )
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
        report["export"] = result.as_dict()
        if not as_json:
            click.echo(safe(result.summary()))
        ok = result.ok
        export_hash = result.export_hash if result.ok else None
    if use_store:
        lines, store_ok, report["store"] = _check_against_store(
            ctx, export_hash, known=file is not None, latest=latest and ok
        )
        ok = ok and store_ok
        if not as_json:
            for line in lines:
                click.echo(safe(line))
    if as_json:
        click.echo(json.dumps(report if use_store else report["export"]))
    sys.exit(0 if ok else 1)


def _check_against_store(
    ctx: _HasSettings, export_hash: str | None, *, known: bool, latest: bool
) -> tuple[list[str], bool, dict[str, Any]]:
    """Lines to print, whether all holds, and the same as data."""
    from breakglass.audit.integrity import check_store

    try:
        settings = ctx.settings()
    except BreakglassError as exc:
        _fail(exc)  # the settings, not the store: an error, not a verdict on the store
    try:
        store = _store(settings)
        try:
            check = check_store(store)
            exports = store.exports()
        finally:
            store.close()
    except BreakglassError as exc:
        return [f"store BROKEN: {exc}"], False, {"ok": False, "problem": str(exc)}
    lines = [f"store {check.summary()}"]
    data: dict[str, Any] = {"ok": True, "records": check.records, "head_seq": check.head_seq}
    if not known or export_hash is None:
        return lines, True, data
    entry = next((e for e in exports if e.export_hash == export_hash), None)
    if entry is None:
        lines.append(
            "unknown to this store: this export was not made from it (or its export log "
            "lost the entry)"
        )
        data.update(ok=False, known=False)
        return lines, False, data
    later = [e for e in exports if e.seq > entry.seq]
    head = json.loads(entry.manifest).get("store_head") or {}
    lines.append(
        f"this export is the one made on {entry.exported_at} (export {entry.seq} of "
        f"{len(exports)}, store head {head.get('seq')})"
    )
    data.update(known=True, export_seq=entry.seq, exported_at=entry.exported_at)
    newer = check.head_seq - int(head.get("seq") or 0)
    if later or newer:
        lines.append(
            f"not the latest: {len(later)} exports made since"
            + (f" (the latest on {later[-1].exported_at})" if later else "")
            + f"; {newer} records stored after it"
        )
        data.update(latest=False)
        if latest:
            data.update(ok=False)
            return lines, False, data
    return lines, True, data


@audit.command()
@click.option(
    "--private",
    "private_path",
    required=True,
    type=_FILE,
    help="Write the private key here (mode 0600); keep it with the exporting side only.",
)
@click.option(
    "--public",
    "public_path",
    required=True,
    type=_FILE,
    help="Write the public key here; give it to auditors.",
)
@json_flag
def keygen(private_path: Path, public_path: Path, *, as_json: bool) -> None:
    """Make an Ed25519 key pair for signing exports (never overwrites a file)."""
    from breakglass.audit.signing import generate

    try:
        key_id = generate(private_path, public_path)
    except BreakglassError as exc:
        _fail(exc)
    if as_json:
        print_json(
            {"ok": True, "key_id": key_id, "private": str(private_path), "public": str(public_path)}
        )
        return
    click.echo(
        f"key {key_id}: private {safe(private_path)}, public {safe(public_path)}\n"
        "sign exports with BREAKGLASS_AUDIT__SIGNING_KEY or --sign-key; auditors check them "
        "with `breakglass audit verify --public-key`"
    )


@audit.command()
@click.option(
    "--writer",
    "writers",
    multiple=True,
    help="PostgreSQL: grant this role what a writer needs, and no more (repeatable).",
)
@json_flag
@click.pass_obj
def migrate(ctx: _HasSettings, writers: tuple[str, ...], *, as_json: bool) -> None:
    """Create or upgrade the audit store's schema (on PostgreSQL: once, as the owner role)."""
    try:
        store = _store(ctx.settings())
        try:
            version = store.migrate()
            for role in writers:
                grant = getattr(store, "grant_writer", None)
                if grant is None:
                    raise ConfigurationError("--writer is for a PostgreSQL store")
                grant(role)
        finally:
            store.close()
    except BreakglassError as exc:
        _fail(exc)
    if as_json:
        print_json(
            {"ok": True, "store": store.location, "schema_version": version, "writers": writers}
        )
        return
    granted = f"; writers: {', '.join(safe(w) for w in writers)}" if writers else ""
    click.echo(f"audit store {safe(store.location)}: schema version {version}{granted}")


@audit.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(ctx: _HasSettings, *, as_json: bool) -> None:
    """Show the audit store: records per provider and flag, time span, pull cursors."""
    from breakglass.audit.settings import load_audit_settings
    from breakglass.audit.spool import Spool

    try:
        settings = ctx.settings()
        spool = Spool(load_audit_settings().spool(settings))
        store = _store(settings)
        try:
            info = store.status()
        finally:
            store.close()
    except BreakglassError as exc:
        _fail(exc)
    waiting = spool.pending()
    if as_json:
        click.echo(json.dumps({**info.as_dict(), "spooled": waiting}, indent=2))
        return
    click.echo(
        f"audit store {safe(info.location)} (schema {info.schema_version}): {info.records} records"
    )
    rows = [
        (p.provider, p.flag_key, p.records, p.first_occurred_at, p.last_occurred_at, p.cursor)
        for p in info.providers
    ]
    if rows:
        for line in table(("PROVIDER", "FLAG", "RECORDS", "FIRST", "LAST", "CURSOR"), rows):
            click.echo(f"  {line}")
    if info.problems:
        click.echo(f"  {info.problems} problems recorded (malformed or conflicting vendor entries)")
    if waiting:
        click.echo(
            f"  {waiting} of the bridge's own records wait in {safe(spool.path)} "
            "(written to the store by the next export or pull)"
        )
