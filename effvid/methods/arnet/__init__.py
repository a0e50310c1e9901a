"""AR-Net (Meng et al., ECCV 2020): a per-frame policy picks a resolution and backbone, or a skip.

Read in this order: :mod:`settings` (what a spec configures), :mod:`actions` (the action space
and the skip counter), :mod:`policy` (extractor, LSTM, Gumbel decisions), :mod:`cost` (the
lookup table and the cost of decisions), :mod:`losses` (Eq. 10-11), :mod:`model` (dense
training, routed inference), :mod:`report` (decision strips, usage per class).

Importing this package registers the method ``arnet``: a spec with ``method: {name: arnet,
settings: {...}}`` builds :class:`~effvid.methods.arnet.model.ARNet`.
"""

from effvid.methods.arnet.model import ARNet
from effvid.models import register_method
from effvid.spec import ArchSpec

__all__ = ["ARNet"]


@register_method("arnet")
def build_arnet(spec: ArchSpec) -> ARNet:
    """The AR-Net model of ``spec`` (its settings in ``spec.method.settings``)."""
    return ARNet(spec)
