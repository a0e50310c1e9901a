"""The four methods, one folder each, on the shared engine.

``pas`` (Progressive Architecture Shrinkage, static); ``vared2``, ``dstep`` and ``arnet``
(dynamic networks) as they land. ``common`` holds what several methods share. A method folder
never imports another method's folder (only ``common``); the engine imports none of them: a
method reaches it through the model contract (:mod:`effvid.models.base`), loss terms and
trainer stages, and the model registry finds a method's models by its name
(:func:`effvid.models.registry.get_method`).
"""
