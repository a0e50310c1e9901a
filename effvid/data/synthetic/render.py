"""Procedural rendering of one SynthActions video: numpy, vectorised over frames.

A video is a static textured background, 0-2 distractors and the class's actor layers, each a
soft-edged shape whose position, size, angle and opacity are per-frame arrays; then camera
jitter, an optional stretch of uninformative frames, and pixel noise. Every random choice is
drawn from the generator passed in, so one ``(seed, split, index)`` always gives the same video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from effvid.data.synthetic.classes import CLASS_NAMES

SHAPES = ("disc", "square", "diamond", "triangle")
EVENT_FRAMES = 8  # length of the hop / dash event
FAST_PERIOD, SLOW_PERIOD = 6, 12  # frames per blink / sway cycle
STRETCH_PROBABILITY = 0.25
STRETCH_KINDS = ("blank", "noise", "blur", "freeze")


@dataclass(frozen=True)
class Stretch:
    """A video's uninformative frames ``start <= t < end``, of one of :data:`STRETCH_KINDS` (a
    ``freeze`` repeats frame ``start``, so that frame itself is still the real one)."""

    start: int
    end: int
    kind: str
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Geometry:
    """Frame size, frame count and the jitter margin ``pad`` around the visible frame."""

    frames: int
    height: int
    width: int
    pad: int

    def x(self, fraction: np.ndarray | float) -> np.ndarray:
        """Canvas column for a fraction of the visible width."""
        return self.pad + np.asarray(fraction, dtype=np.float32) * self.width

    def y(self, fraction: np.ndarray | float) -> np.ndarray:
        return self.pad + np.asarray(fraction, dtype=np.float32) * self.height


@dataclass
class Layer:
    """A shape with per-frame centre ``x``/``y``, ``radius``, ``angle`` and ``alpha`` (all ``(T,)``)."""

    shape: str
    colour: np.ndarray
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray
    texture: str | None = None
    cell: int = 2
    colour2: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))

    def reversed(self) -> Layer:
        """The same layer played backwards in time."""
        return replace(self, x=self.x[::-1], y=self.y[::-1], radius=self.radius[::-1],
                       angle=self.angle[::-1], alpha=self.alpha[::-1])


def render_video(label: int, rng: np.random.Generator, *, frames: int, size: int) -> tuple[np.ndarray, Stretch | None]:
    """Render the video of class ``label``: ``(frames, size, size, 3)`` uint8 RGB, and its stretch
    of uninformative frames (``None`` for the videos without one)."""
    geo = Geometry(frames, size, size, pad=max(1, round(size / 48)))
    hc, wc = geo.height + 2 * geo.pad, geo.width + 2 * geo.pad
    base = rng.uniform(50, 200, 3).astype(np.float32)
    background = _background(rng, hc, wc, size, base)
    layers = _distractors(rng, geo)
    actor_layers, event = _PROGRAMS[CLASS_NAMES[label]](rng, geo, _contrasting(rng, base))
    layers += actor_layers
    canvas = np.repeat(background[None], geo.frames, axis=0)
    ys = np.arange(hc, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(wc, dtype=np.float32)[None, :] + 0.5
    for layer in layers:
        _paint(canvas, layer, ys, xs)
    video = _jitter_crop(rng, canvas, geo)
    stretch = _uninformative_stretch(rng, video, event)
    _add_noise(rng, video, sigma=rng.uniform(1.5, 5.0))
    return np.clip(video + 0.5, 0, 255).astype(np.uint8), stretch


# ---------------------------------------------------------------- drawing


def _paint(canvas: np.ndarray, layer: Layer, ys: np.ndarray, xs: np.ndarray) -> None:
    """Alpha-composite ``layer`` onto ``canvas`` ``(T, H, W, 3)`` in place, inside its bounding box."""
    reach = float(layer.radius.max()) * 1.5 + 2
    y0, y1 = _span(layer.y, reach, canvas.shape[1])
    x0, x1 = _span(layer.x, reach, canvas.shape[2])
    if y0 >= y1 or x0 >= x1:
        return
    dy = ys[None, y0:y1] - layer.y[:, None, None]
    dx = xs[None, :, x0:x1] - layer.x[:, None, None]
    cos, sin = np.cos(layer.angle)[:, None, None], np.sin(layer.angle)[:, None, None]
    u, v = dx * cos + dy * sin, dy * cos - dx * sin
    cover = np.clip(0.5 - _distance(layer.shape, u, v, layer.radius[:, None, None]), 0, 1)
    cover *= layer.alpha[:, None, None]
    region = canvas[:, y0:y1, x0:x1]
    if layer.texture is None:
        colour = layer.colour
    else:
        colour = layer.colour + _pattern(layer, dy, dx)[..., None] * (layer.colour2 - layer.colour)
    region += cover[..., None] * (colour - region)


def _span(centre: np.ndarray, reach: float, limit: int) -> tuple[int, int]:
    return max(0, int(centre.min() - reach)), min(limit, int(np.ceil(centre.max() + reach)))


def _distance(shape: str, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Approximate signed distance in pixels to the outline (negative inside)."""
    if shape == "disc":
        return np.sqrt(u * u + v * v) - r
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - 1.2 * r) * np.float32(0.7071)
    if shape == "triangle":
        return np.maximum(np.abs(u) * np.float32(0.866) + v * 0.5, -v) - 0.6 * r
    if shape == "hand":  # a bar from the pivot to the radius along +u, with a hub at the pivot
        bar = np.maximum(np.abs(v) - 0.2 * r, np.abs(u - 0.5 * r) - 0.5 * r)
        return np.minimum(bar, np.sqrt(u * u + v * v) - 0.3 * r)
    raise ValueError(f"unknown shape {shape!r}")


def _pattern(layer: Layer, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """0/1 texture in pixel cells anchored to the layer's rounded position (crisp, axis-aligned)."""
    cy = np.floor((dy + (layer.y - np.round(layer.y))[:, None, None]) / layer.cell)
    cx = np.floor((dx + (layer.x - np.round(layer.x))[:, None, None]) / layer.cell)
    if layer.texture == "stripes":  # vertical or horizontal, following the layer's angle (0 or pi/2)
        return (cx if layer.angle[0] > 0 else cy) % 2
    return (cx + cy) % 2


def _background(rng: np.random.Generator, hc: int, wc: int, size: int, base: np.ndarray) -> np.ndarray:
    """A static textured background: smooth blobs, a grating or large tiles, plus fine grain."""
    kind = rng.integers(3)
    amplitude = np.float32(rng.uniform(15, 35))
    y = np.arange(hc, dtype=np.float32)[:, None]
    x = np.arange(wc, dtype=np.float32)[None, :]
    if kind == 0:
        k = int(rng.integers(3, 7))
        texture = _upsample(rng.uniform(-1, 1, (k, k, 3)).astype(np.float32), hc, wc)
    else:
        tint = rng.uniform(-1, 1, 3).astype(np.float32)
        if kind == 1:
            theta, period = rng.uniform(0, np.pi), rng.uniform(0.1, 0.25) * size
            wave = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
        else:
            cell = int(rng.integers(max(2, size // 8), max(3, size // 4)))
            wave = ((y // cell + x // cell) % 2) * 2 - 1
        texture = wave.astype(np.float32)[..., None] * tint
    grain = rng.standard_normal((hc, wc, 3), dtype=np.float32) * np.float32(3)
    return base + amplitude * texture + grain


def _upsample(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a ``(k, k, C)`` grid to ``(height, width, C)``."""
    def axis(n_low: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.linspace(0, n_low - 1, n, dtype=np.float32)
        i0 = np.minimum(pos.astype(int), n_low - 2)
        return i0, pos - i0

    iy, fy = axis(low.shape[0], height)
    ix, fx = axis(low.shape[1], width)
    rows = low[iy] * (1 - fy)[:, None, None] + low[iy + 1] * fy[:, None, None]
    return rows[:, ix] * (1 - fx)[None, :, None] + rows[:, ix + 1] * fx[None, :, None]


def _contrasting(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A random colour whose luminance differs from the background's by at least 70 levels."""
    for _ in range(32):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if abs(float(colour @ _LUMA) - float(base @ _LUMA)) > 70:
            return colour
    return np.full(3, 0.0 if float(base @ _LUMA) > 127 else 255.0, np.float32)


def _jitter_crop(rng: np.random.Generator, canvas: np.ndarray, geo: Geometry) -> np.ndarray:
    """The visible frames; in half the videos each frame is shifted by up to ``pad`` pixels."""
    if rng.random() < 0.5:
        offsets = geo.pad + rng.integers(-geo.pad, geo.pad + 1, (geo.frames, 2))
    else:
        offsets = np.full((geo.frames, 2), geo.pad)
    return np.stack([frame[oy:oy + geo.height, ox:ox + geo.width] for frame, (oy, ox) in zip(canvas, offsets)])


def _add_noise(rng: np.random.Generator, video: np.ndarray, sigma: float) -> None:
    """Add zero-mean uniform pixel noise of standard deviation ``sigma`` in place (fast: raw bytes)."""
    noise = np.frombuffer(rng.bytes(video.size), dtype=np.uint8).reshape(video.shape).astype(np.float32)
    video += (noise - np.float32(127.5)) * np.float32(sigma * np.sqrt(3) / 127.5)


def _uninformative_stretch(rng: np.random.Generator, video: np.ndarray,
                           event: tuple[int, int] | None) -> Stretch | None:
    """In some videos, overwrite 12-25% of the frames (away from the deciding event) in place;
    returns the stretch written, if any."""
    if rng.random() >= STRETCH_PROBABILITY:
        return None
    t, h, w, _ = video.shape
    length = max(1, round(rng.uniform(0.12, 0.25) * t))
    starts = np.arange(t - length + 1)
    if event is not None:
        starts = starts[(starts + length <= event[0]) | (starts >= event[1])]
    if starts.size == 0:
        return None
    s = int(rng.choice(starts))
    e = s + length
    kind = STRETCH_KINDS[rng.integers(len(STRETCH_KINDS))]
    if kind == "blank":
        video[s:e] = rng.uniform(0, 255, 3).astype(np.float32)
    elif kind == "noise":
        video[s:e] = rng.uniform(0, 255, (length, h, w, 3)).astype(np.float32)
    elif kind == "blur":
        k = 4
        blocks = video[s:e].reshape(length, h // k, k, w // k, k, 3).mean(axis=(2, 4))
        video[s:e] = np.repeat(np.repeat(blocks, k, axis=1), k, axis=2)
    else:
        video[s:e] = video[s]
    return Stretch(s, e, kind)


# ---------------------------------------------------------------- class programs


def _layer(geo: Geometry, shape: str, colour: np.ndarray, x, y, radius, angle=0.0, alpha=1.0, **kw) -> Layer:
    """A layer with scalar or per-frame parameters broadcast to ``(T,)`` float32 arrays."""
    def per_frame(value) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=np.float32), (geo.frames,)).copy()

    return Layer(shape, colour, per_frame(x), per_frame(y), per_frame(radius), per_frame(angle),
                 per_frame(alpha), **kw)


def _still(rng: np.random.Generator, geo: Geometry, low: float = 0.3, high: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """Centre of an actor that stays put, drifting at most ~0.1 px per frame."""
    t = np.arange(geo.frames, dtype=np.float32)
    drift = rng.uniform(-0.1, 0.1, 2) * _px64(geo)
    return geo.x(rng.uniform(low, high)) + drift[0] * t, geo.y(rng.uniform(low, high)) + drift[1] * t


def _px64(geo: Geometry) -> float:
    """Pixels per pixel-at-64: motion amounts are stated for 64-pixel frames."""
    return geo.height / 64


def _shape(rng: np.random.Generator, shapes: tuple[str, ...] = SHAPES) -> str:
    return shapes[rng.integers(len(shapes))]


def _distractors(rng: np.random.Generator, geo: Geometry) -> list[Layer]:
    """0-2 small objects of any colour, still or drifting slowly in a random direction."""
    layers = []
    t = np.linspace(0, 1, geo.frames, dtype=np.float32)
    for _ in range(rng.choice(3, p=[0.3, 0.4, 0.3])):
        shape, colour = _shape(rng), rng.uniform(0, 255, 3).astype(np.float32)
        radius = rng.uniform(0.04, 0.07) * geo.height
        fx, fy = rng.uniform(0.1, 0.9, 2)
        heading, travel = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.15) * (rng.random() < 0.5)
        layers.append(_layer(geo, shape, colour, geo.x(fx + travel * np.cos(heading) * t),
                             geo.y(fy + travel * np.sin(heading) * t), radius, rng.uniform(0, np.pi)))
    return layers


Program = Callable[[np.random.Generator, Geometry, np.ndarray], tuple[list[Layer], tuple[int, int] | None]]


def _move(rng, geo, colour):
    t = np.linspace(0, 1, geo.frames, dtype=np.float32)
    x0, x1 = rng.uniform(0.12, 0.25), rng.uniform(0.75, 0.88)
    y0, dy = rng.uniform(0.25, 0.75), rng.uniform(-0.05, 0.05)
    layer = _layer(geo, _shape(rng), colour, geo.x(x0 + (x1 - x0) * t), geo.y(y0 + dy * t),
                   rng.uniform(0.11, 0.15) * geo.height, rng.uniform(0, np.pi))
    return [layer], None


def _approach(rng, geo, colour):
    t = np.linspace(0, 1, geo.frames, dtype=np.float32)
    shape, radius = _shape(rng), rng.uniform(0.09, 0.12) * geo.height
    layers = []
    for side in (0, 1):
        start, end = rng.uniform(0.08, 0.14), rng.uniform(0.34, 0.40)
        x = start + (end - start) * t
        layers.append(_layer(geo, shape, colour, geo.x(1 - x if side else x), geo.y(rng.uniform(0.3, 0.7)),
                             radius, rng.uniform(0, np.pi)))
    return layers, None


def _rotate(rng, geo, colour):
    x, y = _still(rng, geo, 0.38, 0.62)
    omega = np.deg2rad(rng.uniform(5, 9))
    angle = rng.uniform(0, 2 * np.pi) + omega * np.arange(geo.frames, dtype=np.float32)
    return [_layer(geo, "hand", colour, x, y, rng.uniform(0.26, 0.32) * geo.height, angle)], None


def _grow(rng, geo, colour):
    t = np.linspace(0, 1, geo.frames, dtype=np.float32)
    x, y = _still(rng, geo)
    radius = (0.06 + (rng.uniform(0.2, 0.24) - 0.06) * t) * geo.height
    return [_layer(geo, _shape(rng), colour, x, y, radius, rng.uniform(0, np.pi))], None


def _reversed(program: Program) -> Program:
    def play_backwards(rng, geo, colour):
        layers, event = program(rng, geo, colour)
        return [layer.reversed() for layer in layers], event

    return play_backwards


def _blink(period: int) -> Program:
    def program(rng, geo, colour):
        x, y = _still(rng, geo)
        phase = 2 * np.pi * np.arange(geo.frames, dtype=np.float32) / period + rng.uniform(0, 2 * np.pi)
        alpha = 0.1 + 0.9 * (0.5 + 0.5 * np.cos(phase))
        return [_layer(geo, _shape(rng), colour, x, y, rng.uniform(0.12, 0.16) * geo.height,
                       rng.uniform(0, np.pi), alpha)], None

    return program


def _sway(period: int) -> Program:
    def program(rng, geo, colour):
        x, y = _still(rng, geo, 0.35, 0.65)
        phase = 2 * np.pi * np.arange(geo.frames, dtype=np.float32) / period + rng.uniform(0, 2 * np.pi)
        x = x + rng.uniform(0.10, 0.14) * geo.width * np.sin(phase)
        return [_layer(geo, _shape(rng), colour, x, y, rng.uniform(0.11, 0.15) * geo.height,
                       rng.uniform(0, np.pi))], None

    return program


def _event(axis: str) -> Program:
    def program(rng, geo, colour):
        x, y = _still(rng, geo, 0.35, 0.65)
        margin = max(1, round(0.05 * geo.frames))
        start = int(rng.integers(margin, max(margin + 1, geo.frames - EVENT_FRAMES - margin + 1)))
        k = np.arange(geo.frames) - start
        bump = np.where((k >= 0) & (k <= EVENT_FRAMES), np.sin(np.pi * np.clip(k, 0, EVENT_FRAMES) / EVENT_FRAMES), 0)
        amount = rng.uniform(0.2, 0.28) * geo.height * bump.astype(np.float32)
        if axis == "y":
            y = y - amount
        else:
            x = x + amount * (1 if rng.random() < 0.5 else -1)
        layer = _layer(geo, _shape(rng), colour, x, y, rng.uniform(0.11, 0.15) * geo.height, rng.uniform(0, np.pi))
        return [layer], (start, start + EVENT_FRAMES + 1)

    return program


def _textured(texture: str) -> Program:
    def program(rng, geo, colour):
        x, y = _still(rng, geo)
        dark = float(colour @ _LUMA) > 127
        colour2 = colour * 0.25 if dark else colour + (255 - colour) * 0.75
        layer = _layer(geo, _shape(rng, SHAPES[:3]), colour, x, y, rng.uniform(0.15, 0.19) * geo.height,
                       rng.choice([0.0, np.pi / 2]), texture=texture, cell=max(2, geo.height // 32),
                       colour2=colour2.astype(np.float32))
        return [layer], None

    return program


_PROGRAMS: dict[str, Program] = {
    "move_left": _reversed(_move),
    "move_right": _move,
    "approach": _approach,
    "separate": _reversed(_approach),
    "rotate_cw": _rotate,
    "rotate_ccw": _reversed(_rotate),
    "grow": _grow,
    "shrink": _reversed(_grow),
    "blink_fast": _blink(FAST_PERIOD),
    "blink_slow": _blink(SLOW_PERIOD),
    "sway_fast": _sway(FAST_PERIOD),
    "sway_slow": _sway(SLOW_PERIOD),
    "hop": _event("y"),
    "dash": _event("x"),
    "striped": _textured("stripes"),
    "checkered": _textured("checker"),
}
assert tuple(_PROGRAMS) == CLASS_NAMES
