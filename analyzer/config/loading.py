"""Loading canary configs from YAML/JSON files, directories and inline objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from analyzer.config.models import CanaryConfig
from analyzer.errors import InputError


class ConfigError(InputError):
    """A config that cannot be used; the message names the source and the key."""


def _key(part: str | int) -> str:
    """A path part as written, quoted when it would make the path ambiguous: an unknown key
    may hold a newline (breaking one line per problem), a dot or a colon, or be empty."""
    text = str(part)
    if text and text.isprintable() and not any(c in text for c in ".: "):
        return text
    return repr(text)


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem, each naming the key path, so users can fix the file at once."""
    lines = []
    for item in error.errors():
        path = ".".join(_key(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: {path}: unknown key")
        else:
            lines.append(f"{source}: {path}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str) -> CanaryConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a canary config must be a mapping, got {type(data).__name__}")
    try:
        return CanaryConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(path: str | Path) -> CanaryConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{exc}") from None
    return parse_config(data, str(path))


def default_config() -> CanaryConfig:
    text = resources.files("analyzer.config").joinpath("default.yaml").read_text("utf-8")
    return parse_config(yaml.safe_load(text), "builtin:default")


def load_config_dir(directory: str | Path | None) -> dict[str, CanaryConfig]:
    """Every ``*.yaml``/``*.yml``/``*.json`` in the directory, plus the built-in ``default``.

    A config in the directory named ``default`` replaces the built-in one, so operators can
    tune the default without changing every AnalysisTemplate.
    """
    configs = {"default": default_config()}
    if directory is None:
        return configs
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: config directory does not exist")
    seen: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        config = load_config(path)
        if config.name in seen:
            raise ConfigError(f"{path}: name: config {config.name!r} is also defined in "
                              f"{seen[config.name]}")
        seen[config.name] = path
        configs[config.name] = config
    return configs
