"""What every config section shares, written once: ``replace``, ``to_dict``, ``key_dict``,
the check of a section's values, and the reading of settings from TOML tables or
``--set NAME=VALUE`` text (:func:`coerce_setting`).

A section is a frozen dataclass that also derives from :class:`Settings` and names itself
(``_section``: ``twin``, ``bridge``, …) for its error messages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from fluxscale.errors import ConfigError

__all__ = ["NOT_IN_KEY", "Settings", "coerce_setting", "coerce_value", "parse_toml", "read_text", "read_toml",
           "settings_table"]

S = TypeVar("S", bound="Settings")

NOT_IN_KEY = MappingProxyType({"key": False})
"""Field metadata of a setting that does not change what its stage writes (how the work is
split or retried, not what it computes): ``field(default=…, metadata=NOT_IN_KEY)``. Such
settings are left out of :meth:`Settings.key_dict`, so changing them does not rerun the stage."""


class Settings:
    """The methods of every config section (a frozen dataclass deriving from this)."""

    _section: ClassVar[str] = ""
    """The section's name in error messages: ``unknown train setting(s)``, ``train config: …``."""
    _noun: ClassVar[str] = "setting"
    """What one field is called in ``replace``'s error (the twin's are knobs)."""

    def replace(self: S, **changes: Any) -> S:
        """Return a copy with ``changes`` applied (unknown names raise ConfigError)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown {self._section} {self._noun}(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings declared :data:`NOT_IN_KEY` (field metadata
        ``key=False``): the settings that decide what the section's stage writes, which its
        stage key hashes."""
        skip = {f.name for f in dataclasses.fields(self) if not f.metadata.get("key", True)}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def refuse_invalid(self, checks: dict[str, bool]) -> None:
        """Raise ConfigError naming every setting whose check in ``checks`` (name → valid) is
        False, with its value: ``train config: invalid value for epochs: epochs=0``."""
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"{self._section} config: invalid value for {', '.join(bad)}: "
                              + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))


def read_text(path: Path) -> str:
    """The text of config file ``path`` (ConfigError when it is missing)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None


def parse_toml(path: Path, text: str) -> dict[str, Any]:
    """The tables of ``text``, the TOML read from ``path`` (ConfigError naming it when invalid)."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def read_toml(path: Path) -> dict[str, Any]:
    """The tables of TOML file ``path`` (:func:`read_text`, :func:`parse_toml`)."""
    return parse_toml(path, read_text(path))


def settings_table(cls, values: Any, where: str, strict: bool = False):
    """The settings table ``values`` of config dataclass ``cls``: unknown names refused and,
    with ``strict``, every value checked against its field's type (:func:`coerce_setting`)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    return {k: coerce_setting(cls, k, v, where) for k, v in values.items()} if strict else values


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def coerce_setting(cls, name: str, value: Any, where: str) -> Any:
    """``value`` as field ``name`` of config dataclass ``cls``, following the field's type
    exactly: a TOML value, or the text of ``--set NAME=VALUE``.

    ``bool`` from true/false/1/0 only; ``int`` from whole numbers (not true/false, not 2.5);
    ``float`` from numbers; ``X | None`` from ``none`` (any case) or an ``X``; tuples from
    TOML arrays or comma-separated text, item by item. The error names ``where``, the
    setting, the value and the expected type."""
    import typing

    typ = typing.get_type_hints(cls)[name]
    return coerce_value(typ, value, f"{where}: {name} = {value!r}")


def _type_name(typ) -> str:
    import typing

    args = typing.get_args(typ)
    if typing.get_origin(typ) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
            return f"a list of {plural.get(args[0]) or _type_name(args[0]).replace('a list', 'lists')}"
        return "a list [" + ", ".join(_type_name(a).removeprefix("a ").removeprefix("an ") for a in args) + "]"
    if args and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or none"
    if args:
        return " or ".join(_type_name(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(typ, getattr(typ, "__name__", str(typ)))


def coerce_value(typ, value: Any, what: str) -> Any:
    """``value`` as type ``typ`` (the rules of :func:`coerce_setting`); the error begins
    with ``what``."""
    import typing

    origin, args = typing.get_origin(typ), typing.get_args(typ)
    bad = ConfigError(f"{what}: expected {_type_name(typ)}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        out = []
        for v in value:
            try:
                out.append(coerce_value(args[0], v, what))
            except ConfigError:
                raise ConfigError(f"{what}: expected {_type_name(typ)} (item {v!r} is not "
                                  f"{_type_name(args[0])})") from None
        return tuple(out)
    if origin is tuple:  # fixed length, e.g. (region, weight)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(coerce_value(a, v, what) for a, v in zip(args, value))
    if args:  # a union: X | None, str | tuple[...]
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce_value(a, value, what)
            except ConfigError:
                continue
        raise bad
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if typ in (int, float):  # not bool (an int subclass); int not from 2.5
        ok = (int,) if typ is int else (int, float)
        if isinstance(value, ok) and not isinstance(value, bool):
            return typ(value)
        if isinstance(value, str):
            try:
                return typ(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if typ is str:
        if isinstance(value, str):
            return value
        raise bad
    if typ is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{what}: expected a table (set it in the TOML config, not with --set)")
    return value
