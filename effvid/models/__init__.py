"""Backbones: registered families built from an :class:`~effvid.models.spec.ArchSpec`.

Importing this package registers every family. Public API: :func:`create`,
:func:`create_from_spec`, :func:`list_models`, :func:`default_spec`, :class:`ArchSpec`.
"""

from effvid.models.registry import create, create_from_spec, default_spec, get_entry, list_models
from effvid.models.spec import ArchSpec, round_channels, round_depth

# Family modules register their models on import (one line each).

__all__ = [
    "ArchSpec",
    "create",
    "create_from_spec",
    "default_spec",
    "get_entry",
    "list_models",
    "round_channels",
    "round_depth",
]
