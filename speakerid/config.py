"""One config + override mechanism for every command that takes settings (train.py, benchmarks, data_prep).

A config is a dataclass; its fields are the settings, with their defaults and one comment each. Command lines
override them with ``--key value`` or ``--key=value`` (dashes in keys read as underscores)::

    cfg = override(get_config("fsdd-default"), ["--lr", "3e-3", "--hidden=64,64"])
    print(show(cfg))                       # the resolved config as JSON (what --show-config prints)

Unknown keys raise :class:`ConfigError` naming the closest valid keys; values that do not parse as the field's
type raise it too (``--epochs expects int, got 'ten'``). The library raises; the CLIs print the message and exit.

Supported field types: ``int``, ``float``, ``str``, ``bool`` (1/0, true/false, yes/no, on/off), ``list[int]``,
``list[float]``, ``list[str]`` (comma-separated: ``1,2,4``), and ``X | None`` of those (``none`` on the command
line). A config can expose extra keys that are not fields (e.g. a task's own options) with a method
``extra_options() -> {key: current value}`` and must then accept them in ``replace(**changes)``; a class
attribute ``renamed_options`` ({old: new}) turns an old key into a "now called" error.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing

__all__ = [
    "ConfigError",
    "key_value_pairs",
    "options",
    "parse_value",
    "check_value",
    "override",
    "show",
    "to_dict",
]


class ConfigError(ValueError):
    """A bad command-line setting; the message names the key and what was wrong."""


def key_value_pairs(tokens: list[str]) -> list[tuple[str, str]]:
    """``--key value`` / ``--key=value`` tokens -> [(key, value)], dashes in keys read as underscores."""
    pairs, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise ConfigError(f"expected --key value, got {tok!r}")
        key, eq, val = tok[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 >= len(tokens):
                raise ConfigError(f"--{key} needs a value")
            val, i = tokens[i + 1], i + 1
        pairs.append((key, val))
        i += 1
    return pairs


def options(cfg) -> dict[str, tuple[typing.Any, typing.Any]]:
    """The keys a config accepts: {key: (type hint, current value)}.

    Fields with ``metadata={"fixed": True}`` (e.g. a name that identifies a table entry) are not overridable.
    """
    hints = typing.get_type_hints(type(cfg))
    out = {
        f.name: (hints[f.name], getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if f.init and not f.metadata.get("fixed")
    }
    extra = getattr(cfg, "extra_options", None)
    if extra is not None:
        out.update({k: (type(v), v) for k, v in extra().items()})
    return out


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _type_name(hint) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _optional_inner(hint):
    """``X | None`` -> X; anything else -> None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and type(None) in typing.get_args(hint):
            return args[0]
    return None


def parse_value(key: str, text: str, hint):
    """A command-line string as a value of type ``hint``; raises ConfigError naming ``--key``."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if text.strip().lower() in ("none", "") else parse_value(key, text, inner)
    try:
        if hint is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if hint in (int, float, str):
            return hint(text)
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint) or (str,)
            return [item(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--{key} expects {_type_name(hint)}, got {text!r}") from None
    raise ConfigError(f"--{key} cannot be set from the command line (type {_type_name(hint)})")


def check_value(key: str, val, hint):
    """A Python value (not a string) checked against ``hint``; ints are accepted for floats."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if val is None else check_value(key, val, inner)
    if hint is float and isinstance(val, int) and not isinstance(val, bool):
        return float(val)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (object,)
        if isinstance(val, (list, tuple)) and all(
            item is object or type(v) is item or (item is float and type(v) is int) for v in val
        ):
            return [item(v) if item is float else v for v in val]
    elif isinstance(hint, type) and type(val) is hint:
        return val
    elif hint is typing.Any:
        return val
    raise ConfigError(f"--{key} expects {_type_name(hint)}, got {val!r}")


def _unknown(key: str, valid, renamed: dict) -> ConfigError:
    if renamed.get(key) in valid:
        return ConfigError(f"option --{key} is now called --{renamed[key]}")
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
    return ConfigError(f"unknown option --{key}{hint}; valid: {', '.join('--' + v for v in sorted(valid))}")


def override(cfg, changes: list[str] | dict):
    """A copy of dataclass ``cfg`` with ``changes`` applied.

    ``changes`` is a list of command-line tokens (``["--lr", "0.01", "--hidden=20,20"]``), strings parsed as the
    field's type, or a dict {key: value} of Python values, type-checked. Raises ConfigError for an unknown key
    (naming the closest valid ones) or a value of the wrong type.
    """
    opts = options(cfg)
    pairs = key_value_pairs(changes) if isinstance(changes, list) else list(changes.items())
    parsed = {}
    for key, val in pairs:
        key = key.replace("-", "_")
        if key not in opts:
            raise _unknown(key, opts, getattr(cfg, "renamed_options", {}))
        hint = opts[key][0]
        parsed[key] = parse_value(key, val, hint) if isinstance(val, str) and hint is not str else val
        parsed[key] = check_value(key, parsed[key], hint)
    if not parsed:
        return cfg
    replace = getattr(cfg, "replace", None)
    return replace(**parsed) if callable(replace) else dataclasses.replace(cfg, **parsed)


def to_dict(cfg) -> dict:
    """The config as plain JSON-able data (``dataclasses.asdict``)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def show(cfg, **extra) -> str:
    """The resolved config as indented JSON (``--show-config``); ``extra`` keys are added after the fields."""
    return json.dumps({**to_dict(cfg), **extra}, indent=2)
