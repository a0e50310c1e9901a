"""Cost accounting: static GMACs on the meta device, multiply-accumulates actually executed, latency.

* :mod:`effvid.cost.static` counts a model's GMACs per view at an explicit input shape without
  running it (meta device);
* :mod:`effvid.cost.executed` counts, on a real forward, the multiply-accumulates of the conv,
  linear and matmul calls that ran, per sample, so a dynamic model's reported cost can be
  checked against the work it did;
* :mod:`effvid.cost.latency` times a forward the way users run a model.
"""

from effvid.cost.static import CostReport, count_cost, count_spec, format_shape, spec_input_shape

__all__ = ["CostReport", "count_cost", "count_spec", "format_shape", "spec_input_shape"]
