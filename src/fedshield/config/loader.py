"""Build a validated :class:`ExperimentConfig` from TOML files, dicts and ``--set`` overrides.

Validation is driven by the dataclass fields' types and metadata (see
:mod:`fedshield.config.schema`). Every mistake raises :class:`ConfigError` naming the full
dotted key, the offending value and what is allowed, before any data is loaded or any
model is trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedshield.config.schema import ConfigError, ExperimentConfig, check_field, show_value


def _describe_type(tp: Any) -> str:
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    return str(tp)


def _check_scalar(key: str, value: Any, tp: Any) -> Any:
    """Type-check one scalar value; ints are accepted (and converted) for floats."""
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    if not ok:
        raise ConfigError(
            f"{key} = {show_value(value)} has the wrong type ({type(value).__name__}): "
            f"expected {_describe_type(tp)}"
        )
    return value


def _check_tuple(key: str, value: Any, item_tp: Any) -> tuple[Any, ...]:
    """Type-check a list value (TOML array) whose items are scalars of ``item_tp``."""
    if not isinstance(value, list | tuple):
        raise ConfigError(
            f"{key} = {show_value(value)} has the wrong type ({type(value).__name__}): "
            f"expected a list of {_describe_type(item_tp).removeprefix('a ').removeprefix('an ')}s"
        )
    return tuple(_check_scalar(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value))


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Recursively build dataclass ``cls`` from mapping ``raw``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{prefix or 'config'} must be a table (section) of keys, got "
            f"{type(raw).__name__} {raw!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        full = f"{prefix}.{key}" if prefix else key
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown key {full!r}{hint}: allowed keys in "
            f"[{prefix or 'top level'}] are {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        f = fields[name]
        tp = hints[name]
        full = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, full)  # type: ignore[arg-type]
            continue
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if value is None:
                kwargs[name] = None
                continue
            tp = args[0]
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            item = typing.get_args(tp)[0]
            if not isinstance(value, list | tuple):
                raise ConfigError(
                    f"{full} must be a list of tables (in TOML: [[{full}]] entries), got "
                    f"{type(value).__name__}"
                )
            kwargs[name] = tuple(_build(item, v, f"{full}[{i}]") for i, v in enumerate(value))
            continue
        if typing.get_origin(tp) is tuple:
            value = _check_tuple(full, value, typing.get_args(tp)[0])
            check_field(full, value, f.metadata)
            kwargs[name] = value
            continue
        value = _check_scalar(full, value, tp)
        check_field(full, value, f.metadata)
        kwargs[name] = value
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an experiment configuration from nested mappings.

    Args:
        raw: Nested mapping with the sections of :class:`ExperimentConfig`; missing keys
            take their defaults.

    Returns:
        The frozen, validated configuration.

    Raises:
        ConfigError: Unknown key, wrong type, out-of-range or inconsistent value.
    """
    cfg = _build(ExperimentConfig, raw, "")
    assert isinstance(cfg, ExperimentConfig)
    return cfg


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set section.key=value`` override.

    The value is read as a TOML value (``5``, ``0.1``, ``true``, ``"x"``); anything that is
    not valid TOML is taken as a bare string (``--set data.partition=iid``).

    Args:
        item: The ``key=value`` text.

    Returns:
        The key path and the parsed value.

    Raises:
        ConfigError: If there is no ``=`` or the key is empty.
    """
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        try:  # TOML rejects ".5" and "5." that users type on a command line
            value = float(text)
        except ValueError:
            value = text
    return key.split("."), value


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a deep copy of ``raw`` with ``key=value`` overrides applied."""
    out: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = nxt
        node[path[-1]] = value
    return out


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def load_toml(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment TOML file, apply overrides, validate.

    Args:
        path: The experiment file.
        overrides: ``section.key=value`` strings applied after the file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: If the file is missing, not valid TOML, or describes a bad config.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment file {str(p)!r} does not exist")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"experiment file {str(p)!r} is not valid TOML: {exc}") from exc
    return from_dict(apply_overrides(raw, overrides))


def default_config(overrides: Iterable[str] = ()) -> ExperimentConfig:
    """The built-in quickstart experiment (MNIST, 20 Dirichlet(0.5) clients, 2NN).

    Args:
        overrides: ``section.key=value`` strings applied on top.

    Returns:
        The validated configuration.
    """
    return from_dict(apply_overrides(QUICKSTART, overrides))


#: The built-in default experiment run by ``fedshield run`` with no arguments.
QUICKSTART: dict[str, Any] = {
    "name": "quickstart",
    "seed": 0,
    "data": {"dataset": "mnist", "num_clients": 20, "partition": "dirichlet", "alpha": 0.5},
    "model": {"name": "mlp_2nn"},
    "train": {"lr": 0.05, "momentum": 0.9, "batch_size": 32, "local_epochs": 1},
    "server": {"rounds": 30, "clients_per_round": 10, "aggregator": "mean"},
    "eval": {"every": 1},
}
