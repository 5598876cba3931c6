"""What the README, docs/ and examples/ tell a user to type, checked against the real CLI and settings.

Three claims that drift silently when a command or a setting is renamed: every ``breakglass ...``
line in a shell block parses against the real command tree (a file it names need not exist here);
every ``breakglass ...`` named anywhere (inline code, examples) names real commands and options;
every ``BREAKGLASS_*`` variable named is a setting, or one of the few variables read beside them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from breakglass import settings
from breakglass.audit.settings import AuditSettings
from breakglass.cli import main as cli
from breakglass.killswitch import KillswitchSettings
from breakglass.relay.settings import RelaySettings
from breakglass.reports.settings import ReportSettings
from breakglass.serve.settings import ServeSettings
from breakglass_flagsmith.settings import FlagsmithSettings
from breakglass_killswitch.cli import main as killswitch_cli
from breakglass_launchdarkly.settings import LaunchDarklySettings
from breakglass_unleash.settings import UnleashSettings

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "providers").glob("*/README.md")),
]
EXAMPLES = sorted(path for path in (ROOT / "examples").rglob("*") if path.is_file())
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL = {"bash", "sh", "shell", "console", ""}
INLINE = re.compile(r"(?<![`\w])`((?:[A-Z_]+=\S+ )*(?:\S*/)?breakglass [^`]+)`")
ASSIGNMENT = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")
COMMAND = re.compile(r"^(?:\$ )?(?:\S*/)?breakglass (.*)")
KILLSWITCH_COMMAND = re.compile(r"^(?:\$ )?breakglass-killswitch (.*)")
# Where a shell line stops being breakglass's arguments.
CONTINUATION = re.compile(r"\s*\\\n\s*")  # a backslash-continued line, its indentation dropped
SHELL_END = re.compile(r"\s+(?:#.*|\|.*|&&.*|;.*|[12]?>.*)$|\s{2,}\S.*$")
SECTIONS: dict[str, type[BaseModel]] = {
    "audit": AuditSettings,
    "serve": ServeSettings,
    "relay": RelaySettings,
    "report": ReportSettings,
    "killswitch": KillswitchSettings,
    "unleash": UnleashSettings,
    "launchdarkly": LaunchDarklySettings,
    "flagsmith": FlagsmithSettings,
}


def _shell_commands(text: str, command_line: re.Pattern[str] = COMMAND) -> list[str]:
    """The arguments of every ``breakglass`` line in the text's shell blocks."""
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) not in SHELL:
            continue
        for line in CONTINUATION.sub(" ", match.group(2)).splitlines():
            command = command_line.match(ASSIGNMENT.sub("", line.strip()))
            if command:
                found.append(SHELL_END.sub("", command.group(1)))
    return found


def _named_commands(text: str) -> list[str]:
    """The arguments of every ``breakglass ...`` in inline code outside the blocks, and in synopses."""
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) == "text":  # a synopsis: breakglass drill run [--policy FILE] [--json]
            lines = CONTINUATION.sub(" ", match.group(2)).splitlines()
            found += [SHELL_END.sub("", m.group(1)) for m in map(COMMAND.match, lines) if m]
    for match in INLINE.finditer(FENCE.sub("", text)):
        command = COMMAND.match(ASSIGNMENT.sub("", match.group(1)))
        if command:
            found.append(SHELL_END.sub("", command.group(1)))
    return found


def _example_commands(text: str) -> list[str]:
    """``breakglass <command> ...`` run in an example file (a unit, a workflow, a docstring).

    A command is a line's first word, an indented one in a comment, or a path ending ``bin/breakglass``;
    ``# breakglass serve on Kubernetes`` is a title.
    """
    names = "|".join(cli.list_commands(click.Context(cli)))
    pattern = re.compile(
        rf"^(?:\s*|\s*#\s{{2,}}|.*bin/)breakglass ((?:--?[\w-]+(?: \S+)? )*(?:{names})\b[^\n\"#]*)",
        re.MULTILINE,
    )
    return [SHELL_END.sub("", m.group(1)) for m in pattern.finditer(CONTINUATION.sub(" ", text))]


def _options(command: click.Command) -> dict[str, click.Parameter]:
    return {name: param for param in command.params for name in param.opts + param.secondary_opts}


def _check_names(
    argv: list[str], root: click.Group = cli, program: str = "breakglass"
) -> str | None:
    """Whether the words name real (sub)commands, every ``--option`` exists where it is given,
    and the command takes as many arguments as it is given.

    A synopsis reads the same: ``[--json]`` is an option, ``create|revoke|list`` three commands.
    """
    command: click.Command = root
    path = [program]
    options = _options(root)
    words = iter(word.strip("[]") for word in argv)
    positional: list[str] = []
    for word in words:
        if word.startswith("--"):
            name, has_value, _ = word.partition("=")
            param = options.get(name)
            if param is None:
                return f"{' '.join(path)} has no option {name}"
            if not has_value and not getattr(param, "is_flag", False) and param.nargs == 1:
                next(words, None)
        elif isinstance(command, click.Group) and not word.startswith("-"):
            names = word.split("|")
            if not all(re.fullmatch(r"[a-z][a-z-]*", name) for name in names):
                return None  # a placeholder such as <dir> or …: the rest is prose
            found = [command.get_command(click.Context(command), name) for name in names]
            if None in found:
                return f"no command {' '.join([*path, word])!r}"
            command = found[0]  # type: ignore[assignment]
            path.append(names[0])
            options |= _options(command)
        elif not isinstance(command, click.Group) and not word.startswith("-"):
            positional.append(word)
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if any(p.nargs == -1 for p in arguments) or len(positional) <= sum(p.nargs for p in arguments):
        return None
    return f"{' '.join(path)} takes {len(arguments)} argument(s), given {positional}"


def _parse(argv: list[str]) -> None:
    """Parse as the CLI would, down to the last subcommand, without running anything."""
    ctx = cli.make_context("breakglass", list(argv))
    command: click.Command = cli
    while isinstance(command, click.Group) and ctx.protected_args + ctx.args:
        name, found, rest = command.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        assert found is not None, name
        ctx = found.make_context(name or "", rest, parent=ctx)
        command = found


def _everything() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        where = str(page.relative_to(ROOT))
        found += [(where, line) for line in _shell_commands(text) + _named_commands(text)]
    for example in EXAMPLES:
        where = str(example.relative_to(ROOT))
        found += [(where, line) for line in _example_commands(example.read_text(encoding="utf-8"))]
    return found


def test_the_docs_name_commands_at_all() -> None:
    """The extraction finds what it should (an empty list would make the checks below vacuous)."""
    lines = _everything()
    assert len(lines) > 80, len(lines)
    assert any(line.startswith("halt ") for _, line in lines)
    assert any(line.startswith("probe ") for where, line in lines if where.endswith("probe.yml"))
    assert any(where.startswith("examples/") for where, _ in lines)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # click's protected_args, read on purpose
def test_every_shell_line_parses() -> None:
    wrong = []
    for page in PAGES:
        for line in _shell_commands(page.read_text(encoding="utf-8")):
            try:
                _parse(shlex.split(line))
            except click.exceptions.Exit:
                pass  # --help, --version
            except click.BadParameter as exc:
                if "does not exist" not in exc.format_message():  # the reader's own file
                    wrong.append(f"{page.name}: breakglass {line}: {exc.format_message()}")
            except click.ClickException as exc:
                wrong.append(f"{page.name}: breakglass {line}: {exc.format_message()}")
    assert not wrong, "\n".join(wrong)


def test_every_named_command_and_option_exists() -> None:
    wrong = []
    for where, line in _everything():
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        problem = _check_names(words)
        if problem:
            wrong.append(f"{where}: `breakglass {line}`: {problem}")
    assert not wrong, "\n".join(wrong)


def _known_variables() -> set[str]:
    known = settings._env_names(settings.Settings, settings.ENV_PREFIX)
    for section, model in SECTIONS.items():
        known |= settings._env_names(model, f"{settings.ENV_PREFIX}{section.upper()}__")
    return known


def _in_a_table_of_entries(name: str) -> bool:
    """``BREAKGLASS_AUDIT__FEEDS__KILLSWITCH__URL``: a field of one entry of ``[audit.feeds.<name>]``."""
    return any(
        settings._in_dict_field(model, f"{settings.ENV_PREFIX}{section.upper()}__", name)
        for section, model in SECTIONS.items()
    )


def test_every_section_is_checked() -> None:
    assert set(SECTIONS) == settings.known_sections()


def test_every_variable_named_is_read() -> None:
    known = _known_variables()
    wrong = []
    for path in [*PAGES, *EXAMPLES]:
        text = path.read_text(encoding="utf-8")
        # BREAKGLASS_SERVE__* names a section; _BREAKGLASS_COMPLETE is click's completion switch.
        for name in sorted(
            set(re.findall(r"(?<![\w])BREAKGLASS_[A-Z0-9_]*[A-Z0-9]\b(?!__)", text))
        ):
            if (
                name in known
                or _in_a_table_of_entries(name)
                or name in settings.NOT_SETTINGS
                or name.startswith(settings.TEST_VARIABLE_PREFIX)
            ):
                continue
            wrong.append(f"{path.relative_to(ROOT)}: {name}")
    assert not wrong, "\n".join(wrong)


def _setting(model: type[BaseModel], parts: list[str]) -> FieldInfo | None:
    """The field ``parts`` (``["OIDC", "ISSUER"]``) names in ``model``, nested models followed."""
    *outer, last = parts
    for part in outer:
        info = model.model_fields.get(part.lower())
        nested = info.annotation if info is not None else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return None
        model = nested
    return model.model_fields.get(last.lower())


def _table_rows(page: Path) -> list[tuple[int, list[str], str, str]]:
    """Rows of every settings table: (line, names in the first cell, the default cell, the section)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    rows = []
    for start, line in enumerate(lines):
        if not re.match(r"^\| *(setting|variable)\b", line):
            continue
        # A table of bare names says its section just above it or in its header: BREAKGLASS_SERVE__*.
        context = "\n".join(lines[max(0, start - 8) : start + 1])
        sections = re.findall(r"BREAKGLASS_([A-Z]+)__", context)
        at = start + 2
        while at < len(lines) and lines[at].startswith("|"):
            cells = [cell.strip() for cell in lines[at].strip("|").split("|")]
            default = cells[1] if len(cells) > 2 else ""
            section = sections[-1].lower() if sections else ""
            rows.append((at + 1, re.findall(r"`([^`]+)`", cells[0]), default, section))
            at += 1
    return rows


def _resolve(name: str, section: str) -> FieldInfo | None:
    if not name.startswith(settings.ENV_PREFIX):
        return _setting(SECTIONS[section], name.split("__")) if section in SECTIONS else None
    parts = name.removeprefix(settings.ENV_PREFIX).split("__")
    if len(parts) > 1 and parts[0].lower() in SECTIONS:
        return _setting(SECTIONS[parts[0].lower()], parts[1:])
    return _setting(settings.Settings, parts)


def _same(written: str, real: object) -> bool:
    if isinstance(real, bool):
        return written == str(real).lower()
    if isinstance(real, int | float):
        try:
            return float(written) == real
        except ValueError:
            return False
    return written == real


def test_every_settings_table_names_real_settings_with_their_defaults() -> None:
    """Each name in a settings table is a field; a default written as literals is the field's default."""
    wrong = []
    checked = 0
    for page in PAGES:
        for line, names, default, section in _table_rows(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            found = [
                (name, _resolve(name, section))
                for name in names
                if name not in settings.NOT_SETTINGS
            ]
            wrong += [f"{where}: {name} is not a setting" for name, info in found if info is None]
            literals = re.findall(r"`([^`]+)`", default)
            if len(literals) != len(found):
                continue  # a default in words ("the request's `Host`")
            for (name, info), literal in zip(found, literals, strict=True):
                # None: derived elsewhere (`<state_dir>/audit.db`), which the words describe
                if info is not None and info.default_factory is None and info.default is not None:
                    checked += 1
                    if not _same(literal, info.default):
                        wrong.append(f"{where}: {name} defaults to {info.default!r}, not {literal}")
    assert not wrong, "\n".join(wrong)
    assert checked > 40, checked


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.live  # the CLI and openssl as processes
def test_the_auditors_own_check_passes_an_export_and_fails_an_edited_one(tmp_path: Path) -> None:
    """docs/compliance.md's standalone checker, as written, on a real signed export and an edited copy."""
    text = (ROOT / "docs" / "compliance.md").read_text(encoding="utf-8")
    (script,) = [body for lang, body in FENCE.findall(text) if lang == "python"]
    (tmp_path / "check.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env["BREAKGLASS_STATE_DIR"] = str(tmp_path / "state")
    breakglass = str(Path(sys.executable).parent / "breakglass")
    for args in (
        ["resume", "--reason", "go live"],
        ["halt", "--actor", "alice", "--reason", "audit drill"],
        ["audit", "keygen", "--private", "signing.key", "--public", "audit-signing.pub"],
        ["audit", "export", "--all", "--sign-key", "signing.key", "--out", "2026-08.jsonl"],
    ):
        done = _run([breakglass, *args], tmp_path, env)
        assert done.returncode == 0, done.stderr
    checked = _run(
        [sys.executable, "check.py", "2026-08.jsonl", "audit-signing.pub"], tmp_path, env
    )
    assert checked.returncode == 0, checked.stderr
    assert "Signature Verified Successfully" in checked.stdout
    assert checked.stdout.splitlines()[-1].startswith("intact and signed; export hash ")

    lines = (tmp_path / "2026-08.jsonl").read_text().splitlines(keepends=True)
    edited = next(at for at, line in enumerate(lines) if "audit drill" in line)
    lines[edited] = lines[edited].replace("audit drill", "audit-drill")  # a reason quietly reworded
    (tmp_path / "edited.jsonl").write_text("".join(lines))
    refused = _run([sys.executable, "check.py", "edited.jsonl", "audit-signing.pub"], tmp_path, env)
    assert refused.returncode != 0
    assert "changed" in refused.stderr or "not canonical" in refused.stderr, refused.stderr


def test_the_probe_option_table_is_the_probe_s_options() -> None:
    """docs/probe.md's option table names every option of `breakglass probe`, and only those."""
    text = (ROOT / "docs" / "probe.md").read_text(encoding="utf-8")
    table = text.split("## Options", 1)[1].split("\n\n", 2)[1]
    named = {
        word
        for row in table.splitlines()[2:]
        for cell in [row.strip("|").split("|")[0]]
        for word in re.findall(r"`(-[^` ]+)", cell)
    }
    probe = cli.get_command(click.Context(cli), "probe")
    assert probe is not None
    real = set(_options(probe)) - {"-h", "--help"}
    assert named == real


def test_the_kill_switch_readme_names_its_own_commands_and_options() -> None:
    """``breakglass-killswitch ...`` in its README (blocks, the synopsis, inline) against its own CLI."""
    text = (ROOT / "providers" / "breakglass-killswitch" / "README.md").read_text(encoding="utf-8")
    named = [
        SHELL_END.sub("", m.group(1))
        for m in re.finditer(r"`breakglass-killswitch ([^`]+)`", FENCE.sub("", text))
    ]
    every = [*_shell_commands(text, KILLSWITCH_COMMAND), *named]
    assert len(every) > 10, every
    wrong = []
    for line in every:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        problem = _check_names(words, killswitch_cli, "breakglass-killswitch")
        if problem:
            wrong.append(f"`breakglass-killswitch {line}`: {problem}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.live  # the CLI as a process
def test_the_policy_error_sample_is_what_notify_check_prints(tmp_path: Path) -> None:
    """docs/notifications.md's sample error, from a policy with exactly those two mistakes: one line."""
    text = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")
    (sample,) = [
        body for lang, body in FENCE.findall(text) if body.startswith("breakglass: error: invalid")
    ]
    (tmp_path / "breakglass-policy.toml").write_text(
        "[notify.groups.on-call]\n"
        'kind = "on-call"\ntimeframe = "immediate"\nchannels = [{ type = "pagerduty" }]\n'
        "[notify.groups.governance-lead]\n"
        'kind = "governance-lead"\nwithn = "1h"\n'
        'channels = [{ type = "slack", webhook_url = "https://hooks.slack.example/x" }]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    breakglass = str(Path(sys.executable).parent / "breakglass")
    done = _run([breakglass, "notify", "check"], tmp_path, env)
    assert done.returncode == 1
    assert done.stderr == sample


def test_every_test_and_path_the_docs_cite_exists() -> None:
    """ "Pinned by `test_x`" and "`tests/test_y.py`" stay true when a test or a file is renamed.

    A path is looked up from the repository, from ``src/``, and from each provider's directory
    (a provider's page names its own ``tests/...``).
    """
    tests = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("providers/*/tests/**/*.py")]
    defined = {
        name for path in tests for name in re.findall(r"def (test_\w+)", path.read_text("utf-8"))
    }
    bases = [ROOT, ROOT / "src", *sorted((ROOT / "providers").iterdir())]
    wrong = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(ROOT)
        cited = set(re.findall(r"`(test_\w+)`", text))
        wrong += [f"{where}: no test {name}" for name in sorted(cited - defined)]
        paths = re.findall(
            r"`((?:tests|src|examples|benchmarks|providers|breakglass|docs)/[\w./-]+)`", text
        )
        wrong += [
            f"{where}: no file {path}"
            for path in sorted(set(paths))
            if not any((base / path).exists() for base in bases)
        ]
    assert not wrong, "\n".join(wrong)
