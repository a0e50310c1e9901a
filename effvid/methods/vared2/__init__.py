"""VA-RED2 (Pan et al., ICLR 2021; thesis chapter 3): per clip and per convolution, a soft
modulation gate decides how many output frames and channels to compute; the rest are rebuilt
by cheap operations, and inference really skips the work.

Reading order: :mod:`.settings` (what ``spec.method.settings`` holds), :mod:`.gate` (Eq. 3.4),
:mod:`.cheap` (the rebuild operations), :mod:`.conv` (the dynamic convolution, Eq. 3.5, A.1),
:mod:`.cost` (per-clip GMACs from the decisions), :mod:`.losses` (Eq. 3.6), :mod:`.model`
(the wrapped network). Importing this package registers the method ``vared2``.
"""

from effvid.methods.vared2.conv import DynamicConv3d
from effvid.methods.vared2.gate import GateOutput, SoftModulationGate
from effvid.methods.vared2.losses import efficiency_loss
from effvid.methods.vared2.model import VARed2, vared2
from effvid.methods.vared2.settings import VARed2Settings

__all__ = ["DynamicConv3d", "GateOutput", "SoftModulationGate", "VARed2", "VARed2Settings", "efficiency_loss",
           "vared2"]
