"""Configs built from their ``params.yaml`` sections in one call.

Each section of ``params.yaml`` that configures a method (``training``, ``decompose``, ``qstar``,
``ais``, ...) maps one-to-one onto a config dataclass. :meth:`FromSection.from_section` builds the
dataclass from that mapping: nested sections become nested configs (``decompose.ais`` an
:class:`~amortgap.ais.AISConfig`), YAML lists become the tuples the dataclass declares, and a key the
dataclass lacks is an error that names the keys it has (a typo in ``params.yaml`` never falls back
silently to a default).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound="FromSection")


class FromSection:
    """Mixin for config dataclasses: ``Config.from_section(params["stage"]["section"])``."""

    @classmethod
    def from_section(cls: type[C], section: Mapping[str, Any]) -> C:
        """The config whose fields are ``section``'s keys (the others keep their defaults)."""
        if not isinstance(section, Mapping):
            raise TypeError(f"{cls.__name__} is built from a mapping of its settings, not {section!r}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(section) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__} has no setting(s) {unknown}; it has {names}")
        return cls(**{name: _convert(hints[name], value) for name, value in section.items()})


def _convert(hint: Any, value: Any) -> Any:
    """``value`` (parsed YAML) as the field type ``hint`` wants it: a mapping as its config class, a
    list as a tuple (items converted too)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        if isinstance(option, type) and issubclass(option, FromSection) and isinstance(value, Mapping):
            return option.from_section(value)
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            items = typing.get_args(option)
            item = items[0] if items else Any
            return tuple(_convert(item, v) for v in value)
    return value


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
