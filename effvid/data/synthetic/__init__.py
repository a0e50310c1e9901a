"""SynthActions: a procedural action-recognition benchmark of real H.264 MP4 files.

Each class is designed so that one reduction (frame rate, clip length, input size) or one
dynamic method (frame skipping, spatial pruning) has something real to find; see
:mod:`effvid.data.synthetic.classes` and the README.md written into every generated folder.
"""

from effvid.data.synthetic.classes import CLASS_NAMES, CLASSES, SynthClass
from effvid.data.synthetic.generate import (
    PRESETS,
    SPLITS,
    SynthManifest,
    SynthPreset,
    ensure_synthactions,
    generate,
    job_stretch,
    load_manifest,
    render_job,
)
from effvid.data.synthetic.render import Stretch

__all__ = ["CLASSES", "CLASS_NAMES", "PRESETS", "SPLITS", "Stretch", "SynthClass", "SynthManifest", "SynthPreset",
           "ensure_synthactions", "generate", "job_stretch", "load_manifest", "render_job"]
