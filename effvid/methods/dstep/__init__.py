"""D-STEP (Raviv et al., BMVC 2022): dynamic spatio-temporal pruning of TSN/TSM ResNets.

Read in this order: :mod:`settings` (what a spec configures), :mod:`sparse` (tile-sparse
convolution), :mod:`mask` (the spatial tile mask), :mod:`policy` (skip / reuse / compute per
channel), :mod:`cost` (Eq. 2 and the executed cost), :mod:`block` (BasicBlock and Bottleneck,
the Eq. 1 merge, dense training and sparse inference), :mod:`losses` (Eq. 3), :mod:`model`.

Importing this package registers the method ``dstep``: a spec with ``method: {name: dstep,
settings: {...}}`` builds :class:`~effvid.methods.dstep.model.DStep`.
"""

from effvid.methods.dstep.model import DStep
from effvid.models import register_method
from effvid.spec import ArchSpec

__all__ = ["DStep"]


@register_method("dstep")
def build_dstep(spec: ArchSpec) -> DStep:
    """The D-STEP model of ``spec`` (its settings in ``spec.method.settings``)."""
    return DStep(spec)
