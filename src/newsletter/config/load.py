"""Reading ``newsletter.toml`` and the ``NEWSLETTER_*`` overrides into ``Settings``."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from newsletter.config.checks import validate
from newsletter.config.settings import (
    CONFIG_FILE,
    ENV_PREFIX,
    SECRET_WORDS,
    Secrets,
    Settings,
)
from newsletter.errors import ConfigError


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Convert a TOML or environment value to the type a setting declares."""
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind_name == "SourceList":
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str | dict) for v in value):
            return value
        raise ConfigError(
            f"{where}: expected a list of addresses or of tables such as "
            f'{{ url = "https://…", full_text = true }}, got {value!r}'
        )
    if kind_name.startswith("list"):
        if isinstance(value, str):
            # Environment values: a comma-separated list.
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    if kind_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind_name == "int":
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if kind_name == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def _read_file(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: Windows Notepad starts a UTF-8 file with a BOM, which TOML
        # itself does not allow; the file is meant all the same.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no configuration file; run `newsletter init` to create a workspace"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def collect(
    raw: Mapping[str, Any], env: Mapping[str, str], origin: str
) -> tuple[Settings, list[str]]:
    """Build settings from parsed TOML and the environment; return them with every problem found.

    Problems are collected rather than raised one at a time so that
    ``config check`` can show them all at once.
    """
    problems: list[str] = []
    sections: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(Settings)}
    for name in raw:
        if name not in known:
            problems.append(f"{origin}: unknown section [{name}]")
    defaults = Settings()
    for section_name in known:
        section_cls: type[Any] = type(getattr(defaults, section_name))
        raw_section = raw.get(section_name, {})
        if not isinstance(raw_section, dict):
            problems.append(f"{origin}: [{section_name}] must be a table")
            raw_section = {}
        key_fields = {f.name: f for f in dataclasses.fields(section_cls)}
        values: dict[str, Any] = {}
        for key, value in raw_section.items():
            where = f"{origin}: {section_name}.{key}"
            if any(word in key.lower() for word in SECRET_WORDS) and not key.endswith("_file"):
                problems.append(
                    f"{where}: secrets must not be stored in the file; "
                    f"set the environment variable instead"
                )
                continue
            if key not in key_fields:
                problems.append(f"{where}: unknown key")
                continue
            try:
                values[key] = _coerce(value, key_fields[key].type, where)
            except ConfigError as exc:
                problems.append(str(exc))
        for key, key_field in key_fields.items():
            env_name = f"{ENV_PREFIX}{section_name.upper()}__{key.upper()}"
            if env_name in env:
                try:
                    values[key] = _coerce(env[env_name], key_field.type, env_name)
                except ConfigError as exc:
                    problems.append(str(exc))
        sections[section_name] = section_cls(**values)
    problems.extend(unknown_overrides(env))
    settings = Settings(**sections)
    problems.extend(validate(settings))
    return settings, problems


def unknown_overrides(env: Mapping[str, str]) -> list[str]:
    """``NEWSLETTER_<SECTION>__<KEY>`` variables that name no setting, as the file's are named.

    A typo in an override would otherwise be ignored without a word, and the
    setting left as it was. The value is never shown (it may be a secret).
    """
    sections = {
        f.name: {k.name for k in dataclasses.fields(f.default_factory)}  # type: ignore[arg-type]
        for f in dataclasses.fields(Settings)
    }
    secrets = {f"{ENV_PREFIX}{f.name.upper()}" for f in dataclasses.fields(Secrets)}
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if name == f"{ENV_PREFIX}{section.upper()}__{key.upper()}" and key in sections.get(
            section, ()
        ):
            continue
        if section not in sections:
            problems.append(f"{name}: unknown section [{section}]")
            continue
        hint, upper = "", name.upper()
        if key in sections[section]:
            hint = f"; environment variable names are upper case: {upper}"
        elif upper.replace("__", "_") in secrets:
            hint = f"; secrets are read from {upper.replace('__', '_')}"
        problems.append(f"{name}: {section}.{key}: unknown key{hint}")
    return problems


def load(workspace: Path, env: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Read ``newsletter.toml`` from the workspace; return settings and problems."""
    env = os.environ if env is None else env
    path = workspace / CONFIG_FILE
    return collect(_read_file(path), env, str(path))
