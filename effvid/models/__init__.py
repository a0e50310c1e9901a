"""Backbones: registered families built from an :class:`~effvid.spec.ArchSpec`.

Importing this package (or any module in it) registers every family. Public API:
:func:`create`, :func:`create_from_spec`, :func:`list_models`, :func:`default_spec`,
:func:`register_method`, :func:`get_method`, :func:`list_methods`, :class:`ArchSpec`,
:class:`MethodSpec`, the model contract (:class:`VideoModel`, :class:`ModelBase`,
:class:`ModelOutput`, :func:`model_output`, :func:`replace_modules`), :func:`load_pretrained`,
:func:`prepare_for_inference`.
"""

# Family modules register their models on import (one line each).
from effvid.models import (
    efficientnet,  # noqa: F401
    i3d,  # noqa: F401
    i3d_inception,  # noqa: F401
    mobilenet_v2,  # noqa: F401
    resnet2d,  # noqa: F401
    slowfast,  # noqa: F401
    temporal,  # noqa: F401
    video_resnet,  # noqa: F401
    x3d,  # noqa: F401
)
from effvid.models.base import ModelBase, ModelOutput, VideoModel, is_dynamic, model_output, replace_modules
from effvid.models.inference import prepare_for_inference  # noqa: E402
from effvid.models.pretrained import LoadReport, load_pretrained  # noqa: E402
from effvid.models.registry import (
    create,
    create_from_spec,
    default_spec,
    get_entry,
    get_method,
    list_methods,
    list_models,
    register_method,
)
from effvid.spec import ArchSpec, MethodSpec, round_channels, round_depth

__all__ = [
    "ArchSpec",
    "MethodSpec",
    "ModelBase",
    "ModelOutput",
    "VideoModel",
    "get_method",
    "is_dynamic",
    "list_methods",
    "model_output",
    "register_method",
    "replace_modules",
    "create",
    "create_from_spec",
    "default_spec",
    "get_entry",
    "list_models",
    "load_pretrained",
    "LoadReport",
    "prepare_for_inference",
    "round_channels",
    "round_depth",
]
