"""``breakglass probe``: measure toggle -> halt across readers, gate CI on it, show it.

Exit codes: 0 every bound held and the flag was restored; 1 a bound was
breached, a round timed out, or the probe could not run or restore (named on
stderr); 2 a usage error; 130 / 143 interrupted by SIGINT / SIGTERM (after
the flag was restored and the reports were written).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import click

from breakglass.cli_errors import fail
from breakglass.errors import BreakglassError, ProbeError
from breakglass.safe_text import safe
from breakglass.settings import DEFAULT_PROBE_FLAG_KEY

if TYPE_CHECKING:
    from breakglass.probe.result import ProbeResult
    from breakglass.probe.runner import ProbeOptions
    from breakglass.settings import Settings

_EXIT_SIGNAL_BASE = 128


class _Overrides(Protocol):
    overrides: dict[str, Any]


def _actor() -> str:
    from breakglass.cli import default_actor  # here, not at the top: breakglass.cli imports us

    return f"breakglass-probe ({default_actor()})"


def _write_reports(
    result: ProbeResult, json_path: Path | None, junit_path: Path | None, plot_path: Path | None
) -> str | None:
    """Write the reports asked for; returns why one could not be written, if so."""
    try:
        _write_each(result, json_path, junit_path, plot_path)
    except (BreakglassError, OSError) as exc:
        return f"cannot write a report: {exc}"
    return None


def _write_each(
    result: ProbeResult, json_path: Path | None, junit_path: Path | None, plot_path: Path | None
) -> None:
    from breakglass.probe.report import to_json, write_json, write_junit

    if json_path == _STDOUT:
        click.echo(json.dumps(to_json(result), indent=2))
    elif json_path is not None:
        write_json(result, json_path)
        click.echo(f"wrote {safe(json_path)}", err=True)
    if junit_path is not None:
        write_junit(result, junit_path)
        click.echo(f"wrote {safe(junit_path)}", err=True)
    if plot_path is not None:
        from breakglass.probe.plot import render_plot

        render_plot([to_json(result)], plot_path)
        click.echo(f"wrote {safe(plot_path)}", err=True)


_path = click.Path(dir_okay=False, writable=True, path_type=Path)
_STDOUT = Path("-")
_positive = click.FloatRange(min=0, min_open=True)


@click.command()
@click.option("--provider", help="The provider to probe (overrides BREAKGLASS_PROVIDER).")
@click.option(
    "--rounds", default=50, show_default=True, type=click.IntRange(min=1), help="Toggles to time."
)
@click.option(
    "--readers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Reader processes (fleet size).",
)
@click.option(
    "--timeout",
    type=_positive,
    help="Seconds a reader has to observe a toggle; later is a timed-out round "
    "[default: twice the provider's declared propagation bound, at least 5].",
)
@click.option(
    "--max-p95", type=click.FloatRange(min=0), help="Fail when p95 propagation exceeds this (ms)."
)
@click.option(
    "--max-p99", type=click.FloatRange(min=0), help="Fail when p99 propagation exceeds this (ms)."
)
@click.option(
    "--max-halt-p95",
    type=click.FloatRange(min=0),
    help="Fail when p95 propagation of the halts alone exceeds this (ms).",
)
@click.option(
    "--max-halt-p99",
    type=click.FloatRange(min=0),
    help="Fail when p99 propagation of the halts alone exceeds this (ms).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path),
    help="Write the JSON report here ('-': stdout, and the table goes to stderr).",
)
@click.option("--junit", "junit_path", type=_path, help="Write the JUnit XML report here.")
@click.option("--plot", "plot_path", type=_path, help="Write a PNG plot here (needs matplotlib).")
@click.option(
    "--probe-flag",
    default=DEFAULT_PROBE_FLAG_KEY,
    show_default=True,
    help="The flag the probe toggles.",
)
@click.option(
    "--allow-production-flag",
    is_flag=True,
    help="Permit --probe-flag to be the production flag (every service on it halts each round).",
)
@click.option(
    "--spacing",
    type=click.FloatRange(min=0),
    help="Width of the random pause before each round, in seconds "
    "[default: one poll period of the provider, at least 0.1].",
)
@click.option(
    "--ready-timeout",
    default=60.0,
    show_default=True,
    type=_positive,
    help="Seconds the readers have to start and read the flag once.",
)
@click.option("--seed", type=int, help="Seed the random pauses (reported in the JSON).")
@click.option(
    "--actor",
    default=_actor,
    show_default="breakglass-probe (user@host)",
    help="Who the changes are recorded as in the audit trail.",
)
@click.option(
    "--via",
    type=click.Choice(["relay"]),
    help="Readers read through one `breakglass relay` that reads the provider.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or step messages.")
@click.pass_context
def probe(  # noqa: PLR0913 -- one parameter per option
    ctx: click.Context,
    *,
    provider: str | None,
    rounds: int,
    readers: int,
    timeout: float | None,
    max_p95: float | None,
    max_p99: float | None,
    max_halt_p95: float | None,
    max_halt_p99: float | None,
    json_path: Path | None,
    junit_path: Path | None,
    plot_path: Path | None,
    probe_flag: str,
    allow_production_flag: bool,
    spacing: float | None,
    ready_timeout: float,
    seed: int | None,
    actor: str,
    via: str | None,
    quiet: bool,
) -> None:
    """Measure how long a toggle takes to halt (and resume) every reader.

    Toggles --probe-flag through the provider's admin API, alternating halt and
    resume, and times when each of --readers reader processes starts refusing
    (or admitting). Prints a table; writes JSON, JUnit XML and a plot on
    request; exits 1 when a bound is breached or a round timed out. The flag is
    restored to its value from before the run, also on Ctrl-C.
    """
    from breakglass.probe.report import render_table
    from breakglass.probe.result import Bounds
    from breakglass.probe.runner import ProbeOptions
    from breakglass.settings import load_settings

    root: _Overrides | None = ctx.find_root().obj
    overrides = dict(root.overrides) if root is not None else {}
    if provider:
        overrides["provider"] = provider
    try:
        if plot_path is not None:
            _require_matplotlib()
        settings = load_settings(**overrides)
        options = ProbeOptions(
            rounds=rounds,
            readers=readers,
            timeout=timeout,
            flag_key=probe_flag,
            allow_production_flag=allow_production_flag,
            spacing=spacing,
            ready_timeout=ready_timeout,
            seed=seed,
            actor=actor,
            bounds=Bounds(
                max_p95_ms=max_p95,
                max_p99_ms=max_p99,
                max_halt_p95_ms=max_halt_p95,
                max_halt_p99_ms=max_halt_p99,
            ),
            via=via,
        )
    except BreakglassError as exc:
        _fail(exc)
    result, failure = _run(settings, options, quiet=quiet)
    if result.interrupted and not result.rounds and failure is None and result.restored:
        # Stopped while starting: nothing was measured, so a table of empty rows and a FAIL per
        # reader would only bury the one fact.
        click.echo(
            f"breakglass probe: interrupted by {result.interrupted} before the first round; "
            "nothing measured, the flag is as it was",
            err=True,
        )
        sys.exit(_EXIT_SIGNAL_BASE + signal.Signals[result.interrupted].value)
    click.echo(render_table(result), err=json_path == _STDOUT)  # stdout is then the JSON alone
    failure = failure or _write_reports(result, json_path, junit_path, plot_path)
    if failure:
        _fail(failure)
    if result.interrupted:
        sys.exit(_EXIT_SIGNAL_BASE + signal.Signals[result.interrupted].value)
    sys.exit(0 if result.passed else 1)


def _fail(message: BaseException | str) -> NoReturn:
    fail(message)


def _run(
    settings: Settings, options: ProbeOptions, *, quiet: bool
) -> tuple[ProbeResult, str | None]:
    """Run the probe with a progress bar; a failed restore still yields the result."""
    from breakglass.probe.progress import ProgressBar
    from breakglass.probe.runner import ProbeRestoreError, run_probe

    bar = None if quiet else ProgressBar(options.rounds)

    def say(line: str) -> None:
        if bar is not None:
            bar.close()  # end the bar's line first; it redraws on the next round
            click.echo(f"probe: {safe(line)}", err=True)

    try:
        return run_probe(settings, options, on_round=bar, say=say), None
    except ProbeRestoreError as exc:
        return exc.result, str(exc)
    except BreakglassError as exc:
        _fail(exc)
    finally:
        if bar is not None:
            bar.close()


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401 -- only checks that it is installed
    except ImportError:
        raise ProbeError(
            "--plot needs matplotlib: install it with pip install 'breakglass[plot]'"
        ) from None
