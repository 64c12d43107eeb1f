"""JSON-friendly dataclass configs: ``to_dict`` and a strict ``from_dict``."""

from __future__ import annotations

import dataclasses
from typing import Any, Self


class JsonConfig:
    """Mixin for dataclass configs saved as JSON; unknown keys are an error that names them."""

    #: What the config is called in error messages.
    config_name = "config"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The config from a dict (as written by :meth:`to_dict` or by hand)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.config_name} keys: {sorted(unknown)}")
        return cls(**data)
