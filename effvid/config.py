"""Typed configs: YAML files validated into trees of dataclasses, with ``key=value`` overrides.

A config schema is an ordinary (possibly frozen) dataclass whose fields may be ``bool``,
``int``, ``float`` (ints accepted), ``str``, :class:`pathlib.Path`, ``Literal[...]``,
``X | None``, ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[str, X]``, ``Any`` or a
nested dataclass. :func:`load_config` reads a file, applies overrides such as
``optim.lr=0.01`` or ``stages.1.epochs=3`` (values parsed as YAML), and returns the schema
instance. An unknown key, a missing required key or a wrong type raises
:class:`~effvid.errors.ConfigError` naming the key path and the file (or the override).

Inheritance: a top-level ``base: other.yaml`` (a path relative to the file, or a list of them)
names the configs this one extends. They are read first (recursively), merged in order, then
this file on top: mappings merge key by key, anything else (lists included) is replaced. The
overrides come last. (A ``base:`` that is a mapping is an ordinary key, e.g. PAS's base
network.)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from effvid.errors import ConfigError

T = TypeVar("T")


def load_config(path: str | Path, cls: type[T], overrides: Iterable[str] = ()) -> T:
    """Read YAML ``path`` (and the configs it extends) into an instance of dataclass ``cls``,
    after applying ``overrides``."""
    path = Path(path)
    data = _read_with_bases(path, ())
    data = apply_overrides(data, cls, overrides, source=str(path))
    return from_dict(cls, data, source=str(path))


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The mapping in ``path`` merged on top of its ``base`` configs (module docstring)."""
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{path}: the configs extend each other in a circle ({cycle})")
    data = _read_mapping(path)
    bases = data.get("base")
    if not isinstance(bases, (str, list)):
        return data
    names = [bases] if isinstance(bases, str) else bases
    if not all(isinstance(name, str) for name in names):
        raise ConfigError(f"{path}: key 'base' must be a config path or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    for name in names:
        merged = deep_merge(merged, _read_with_bases(path.parent / name, (*chain, path.resolve())))
    return deep_merge(merged, {k: v for k, v in data.items() if k != "base"})


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` on top: mappings merge key by key, any other value (lists too) replaces."""
    out = dict(base)
    for key, value in top.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``; a missing, unreadable or non-mapping file is a :class:`ConfigError`."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "<config>") -> T:
    """Validate the plain mapping ``data`` into dataclass ``cls``; errors name ``source``."""
    return _convert(data, cls, "", source)


def apply_overrides(data: dict[str, Any], cls: type, overrides: Iterable[str], *,
                    source: str = "<config>") -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.key=value`` override set, each checked against ``cls``.

    Numeric path segments index lists (``stages.0.lr=0.1``). A key that ``cls`` does not
    define or a value of the wrong type raises :class:`ConfigError` quoting the override.
    """
    result = _deep_copy(data)
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {text!r}: expected key=value (e.g. optim.lr=0.01)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override {text!r}: value is not valid YAML") from None
        parts = key.split(".")
        try:
            field_type = _type_at(cls, parts)
            _convert(value, field_type, key, source)
        except ConfigError as exc:
            raise ConfigError(f"override {text!r} (config {source}): {_strip_source(exc, source)}") from None
        _set_path(result, parts, value, f"{text!r} (config {source})")
    return result


def to_dict(cfg: Any) -> Any:
    """The plain YAML/JSON-ready form of a config: dataclasses to dicts, tuples to lists, paths to str."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping (e.g. :func:`to_dict` of a config) as ``{"dotted.key": value}``; tuples become lists."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(data) if isinstance(data, tuple) else data}


def dump_yaml(cfg: Any, path: str | Path) -> None:
    """Write the resolved config to ``path`` as YAML that :func:`load_config` reads back."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None))


def _strip_source(exc: ConfigError, source: str) -> str:
    message = str(exc)
    prefix = f"{source}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _set_path(data: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    """Set ``value`` at ``parts`` in ``data``; ``text`` describes the override for messages."""
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            index = int(part)
            if not 0 <= index < len(node):
                raise ConfigError(f"override {text}: index {index} is out of range (the list has {len(node)} items)")
            node = node[index]
            continue
        if node.get(part) is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        index = int(last)
        if not 0 <= index < len(node):
            raise ConfigError(f"override {text}: index {index} is out of range (the list has {len(node)} items)")
        node[index] = value
    else:
        node[last] = value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_at(cls: type, parts: list[str]) -> Any:
    """The declared type at dotted path ``parts`` inside schema ``cls``."""
    tp: Any = cls
    for depth, part in enumerate(parts):
        tp = _unwrap_optional(tp)
        here = ".".join(parts[: depth + 1])
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            if part not in hints:
                known = ", ".join(f.name for f in dataclasses.fields(tp))
                raise ConfigError(f"unknown key {here!r} (known keys here: {known})")
            tp = hints[part]
        elif origin in (list, tuple):
            if not part.isdigit():
                raise ConfigError(f"key {here!r}: {'.'.join(parts[:depth]) or 'value'} is a list; use a number")
            args = typing.get_args(tp)
            if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
                index = int(part)
                if index >= len(args):
                    raise ConfigError(f"key {here!r}: index out of range for a {len(args)}-tuple")
                tp = args[index]
            else:
                tp = args[0] if args else Any
        elif origin is dict or tp is dict:
            args = typing.get_args(tp)
            tp = args[1] if args else Any
        elif tp is Any:
            return Any
        else:
            raise ConfigError(f"unknown key {here!r}: {'.'.join(parts[:depth])!r} is a plain value")
    return tp


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` checked and converted to type ``tp``; ``key`` is its dotted path for messages."""
    where = f"{source}: key {key!r}" if key else source

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {_describe(value)}")

    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise fail(_type_name(tp))
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise fail(" or ".join(_type_name(a) for a in args))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise fail("one of " + ", ".join(repr(c) for c in choices))
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, key, source)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(tp)})")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(tp)})")
        args = typing.get_args(tp)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item_tp = args[0] if args else Any
            return tuple(_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail(f"a list of {len(args)} items ({_type_name(tp)})")
        return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise fail("a mapping")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(k, key_tp, f"{key}.{k}" if key else str(k), source):
                _convert(v, val_tp, f"{key}.{k}" if key else str(k), source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("an integer")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise fail("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise fail("a path (string)")
        return Path(value)
    raise TypeError(f"config type {tp!r} at {key!r} is not supported by effvid.config")


def _convert_dataclass(value: Any, cls: type, key: str, source: str) -> Any:
    where = f"{source}: key {key!r}" if key else source
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping ({cls.__name__}), got {_describe(value)}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown:
        path = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise ConfigError(f"{source}: unknown key {path!r} (known keys here: {', '.join(fields)})")
    kwargs = {}
    for name, field in fields.items():
        path = f"{key}.{name}" if key else name
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], path, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key {path!r}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
