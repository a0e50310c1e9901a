"""effvid: efficient video action recognition.

Shared backbones, data pipeline, cost accounting, training and evaluation, and four methods
that make video classifiers cheaper: PAS (static shrinking) and VA-RED2, D-STEP, AR-Net
(dynamic, per-input computation).
"""

__version__ = "0.1.0"
