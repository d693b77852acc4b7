"""The parts of the documentation that the code already knows, as Markdown.

docs/configuration.md and docs/cli.md embed these with cog (PyPI ``cogapp``): ``make docs``
rewrites them, ``make lint`` and tests/test_docs.py fail when they are stale. The settings
table reads the dataclasses of config/settings.py (keys and defaults), ``config.KEY_DOCS``
(what each means) and ``config.BOUNDS`` (ranges); the CLI reference is click's own
``--help`` text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import click

from newsletter import config

# Help is laid out for this width whatever the terminal, so the generated text is stable.
HELP_WIDTH = 80


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, int | float):
        return f"`{value:g}`"
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    if value == "":
        return "empty"
    return f'`"{value}"`'


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def setting_keys() -> Iterator[tuple[str, str, Any]]:
    """Every ``(section, key, default)`` of the settings, in the dataclasses' order."""
    settings = config.Settings()
    for section in dataclasses.fields(settings):
        defaults = getattr(settings, section.name)
        for key in dataclasses.fields(defaults):
            yield section.name, key.name, getattr(defaults, key.name)


def config_table() -> str:
    """One table per section: key, default, meaning (and the range of a number)."""
    out: list[str] = []
    current = None
    for section, key, default in setting_keys():
        if section != current:
            current = section
            out += ["", f"### [{section}]", "", "| key | default | meaning |", "|---|---|---|"]
        name = f"{section}.{key}"
        meaning = config.KEY_DOCS[name]
        if name in config.BOUNDS:
            low, high, unit = config.BOUNDS[name]
            meaning += f" Range: {_number(low)} to {_number(high)}{unit}."
        out.append(f"| `{key}` | {_cell(_default(default))} | {_cell(meaning)} |")
    return "\n".join(out[1:]) + "\n"


def source_options_table() -> str:
    """Which option each kind of source takes, and what it means."""
    kinds = list(config.SOURCE_OPTIONS)
    options = list(dict.fromkeys(o for kind in kinds for o in config.SOURCE_OPTIONS[kind]))
    out = [
        "| option | " + " | ".join(f"{kind}s" for kind in kinds) + " | meaning |",
        "|---|" + "---|" * len(kinds) + "---|",
    ]
    for option in options:
        marks = " | ".join("✓" if option in config.SOURCE_OPTIONS[k] else "" for k in kinds)
        out.append(f"| `{option}` | {marks} | {_cell(config.SOURCE_OPTION_DOCS[option])} |")
    return "\n".join(out) + "\n"


class _Recorder(dict[str, str]):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.append(key)
        return default


def secret_variables() -> list[str]:
    """The environment variables that ``Secrets.from_env`` reads, in its order."""
    env = _Recorder()
    config.Secrets.from_env(env)
    return env.asked


def secrets_table() -> str:
    out = ["| variable | meaning |", "|---|---|"]
    out += [f"| `{name}` | {_cell(config.SECRET_DOCS[name])} |" for name in secret_variables()]
    return "\n".join(out) + "\n"


def commands(
    root: click.Command | None = None,
) -> Iterator[tuple[str, click.Command, click.Context]]:
    """Every command and subcommand as ``("newsletter campaign send", command, context)``."""
    from newsletter.cli import cli

    def walk(command: click.Command, ctx: click.Context) -> Iterator[Any]:
        yield ctx.command_path, command, ctx
        if isinstance(command, click.Group):
            for name in sorted(command.commands):
                sub = command.commands[name]
                if not sub.hidden:
                    context = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
                    yield from walk(sub, context)

    top = root or cli
    settings = {"terminal_width": HELP_WIDTH, **top.context_settings}
    yield from walk(top, click.Context(top, info_name="newsletter", **settings))


def cli_overview() -> str:
    """A table of every command with the first line of its help."""
    out = ["| command | what it does |", "|---|---|"]
    for path, command, _ctx in commands():
        if isinstance(command, click.Group) and path != "newsletter":
            continue
        link = path.replace(" ", "-")
        summary = command.get_short_help_str(limit=200)
        out.append(f"| [`{path}`](#{link}) | {_cell(summary)} |")
    return "\n".join(out) + "\n"


def cli_reference() -> str:
    """Every command's ``--help``, exactly as the terminal shows it, under its own heading."""
    out = []
    for path, command, ctx in commands():
        help_text = command.get_help(ctx)
        out += [f"### {path}", "", "```", help_text, "```", ""]
    return "\n".join(out)
