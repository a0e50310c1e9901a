"""The SynthActions classes: what each one shows and which reduction or dynamic method it stresses.

The class index is the position in :data:`CLASSES`. Every class has a partner that differs only
in the property the group tests (direction, frequency, a short event, a fine texture), so the
property, not the actor's look, decides the label.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthClass:
    """One SynthActions class: ``name`` (used in paths), its ``group``, what the video shows,
    and what a model must resolve to tell it from its partner."""

    name: str
    group: str
    shows: str
    stresses: str


_DIRECTION = ("temporal order and direction: the partner class is this video played backwards, so "
              "an order-blind model (frame averaging, TSN without shift) is at chance on the pair")
_FRAME_RATE = ("frame rate: the blink/sway period is 6 frames (fast) or 12 frames (slow); sampled at "
               "stride 4 the fast one aliases exactly onto the slow one, so doubling the sampling "
               "stride (PAS epsilon_f) from 2 to 4 makes the pair indistinguishable")
_CLIP_LENGTH = ("clip length: the actor is still except for one 8-frame event at a uniformly random "
                "time, often late; a clip that misses the event cannot tell the pair apart (PAS "
                "epsilon_t, few test views, frame skipping in AR-Net)")
_SPATIAL = ("fine spatial detail: the pair differs only in a 2-pixel texture (at 64 px; cells scale "
            "with the frame) on a still actor; lowering the input resolution (PAS epsilon_s, "
            "AR-Net's low-resolution branch, D-STEP's spatial pruning) erases it")

CLASSES: tuple[SynthClass, ...] = (
    SynthClass("move_left", "direction", "one actor crosses the frame from right to left", _DIRECTION),
    SynthClass("move_right", "direction", "one actor crosses the frame from left to right", _DIRECTION),
    SynthClass("approach", "direction", "two actors start near the sides and move towards each other", _DIRECTION),
    SynthClass("separate", "direction", "two actors start near the middle and move apart", _DIRECTION),
    SynthClass("rotate_cw", "direction", "a clock hand turns clockwise (on screen) about its pivot", _DIRECTION),
    SynthClass("rotate_ccw", "direction", "a clock hand turns counter-clockwise about its pivot", _DIRECTION),
    SynthClass("grow", "direction", "one actor grows from small to large", _DIRECTION),
    SynthClass("shrink", "direction", "one actor shrinks from large to small", _DIRECTION),
    SynthClass("blink_fast", "frame_rate", "a still actor fades in and out every 6 frames", _FRAME_RATE),
    SynthClass("blink_slow", "frame_rate", "a still actor fades in and out every 12 frames", _FRAME_RATE),
    SynthClass("sway_fast", "frame_rate", "an actor sways left and right every 6 frames", _FRAME_RATE),
    SynthClass("sway_slow", "frame_rate", "an actor sways left and right every 12 frames", _FRAME_RATE),
    SynthClass("hop", "clip_length", "a still actor hops up and back once, at a random time", _CLIP_LENGTH),
    SynthClass("dash", "clip_length", "a still actor darts sideways and back once, at a random time", _CLIP_LENGTH),
    SynthClass("striped", "spatial_detail", "a still actor covered in fine stripes", _SPATIAL),
    SynthClass("checkered", "spatial_detail", "a still actor covered in a fine checkerboard", _SPATIAL),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)

REDUNDANCY = ("Every video has a static textured background and an actor covering a small part of "
              "the frame (spatial redundancy for D-STEP's tile masks and AR-Net's low resolutions); "
              "about a quarter have a stretch of 12-25% uninformative frames (blank, noise, heavy "
              "blur or a frozen frame) that AR-Net can skip and VA-RED2 can compute cheaply.")

NUISANCES = ("Nuisances in every class: random actor shape, colour, size and position; a random "
             "background (smooth blobs, a grating or large tiles) and colour; 0-2 smaller "
             "distractor objects, still or drifting slowly in a random direction; camera jitter of "
             "about 1 pixel per frame in half the videos; uniform pixel noise (standard deviation 1.5-5 levels); H.264 compression.")
