"""Photograph-like test images, made here instead of fetched from the internet.

Each image is a landscape drawn from a seed: a sky gradient, a sun, several mountain ridges
with aerial perspective, a lake with a reflection, a tree line, sensor grain and a soft
blur, encoded as JPEG. They look enough like photographs for the edge detector to find
ridges, tree tops and the horizon (and not the grain), and they weigh what a photograph
of that size weighs (a few hundred KB), so downloading them takes what it takes.

Deterministic: the same (index, size, quality) gives the same bytes on the same Pillow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_SIZE = (1920, 1080)
DEFAULT_QUALITY = 95

_PALETTES = [
    # (sky top, sky horizon, ridge near, ridge far, sun)
    ((28, 70, 140), (250, 190, 140), (30, 42, 38), (120, 120, 150), (255, 230, 180)),
    ((10, 30, 80), (240, 120, 90), (25, 20, 35), (130, 80, 110), (255, 200, 120)),
    ((60, 130, 200), (200, 225, 245), (40, 70, 40), (140, 160, 185), (255, 255, 235)),
    ((90, 90, 120), (225, 215, 200), (55, 50, 45), (150, 150, 160), (250, 245, 230)),
    ((20, 60, 100), (120, 200, 210), (20, 50, 45), (90, 140, 150), (240, 250, 255)),
    ((70, 40, 110), (255, 160, 100), (35, 25, 40), (150, 100, 120), (255, 215, 150)),
]


def _ridge(rng, width, base, amplitude, roughness):
    """A mountain ridge line: summed sines of random phase plus a small random walk."""
    x = np.linspace(0.0, 1.0, width)
    y = np.zeros(width)
    for octave in range(7):
        freq = rng.uniform(0.7, 1.3) * 2.0**octave
        y += np.sin(2 * np.pi * (freq * x + rng.uniform())) * amplitude / 2.0 ** (octave * roughness)
    walk = np.cumsum(rng.normal(0.0, amplitude * 0.004, width))
    walk -= np.linspace(walk[0], walk[-1], width)
    return (base + y + walk).astype(np.float32)


def _texture(rng, height, width, cell):
    """Smooth 2-D value noise in [-1, 1]: a coarse random grid, upsampled bicubically."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8), "L")
    big = grid.resize((gw * cell, gh * cell), Image.BICUBIC)
    return np.asarray(big, np.float32)[:height, :width] / 127.5 - 1.0


def photo_array(index: int, size=DEFAULT_SIZE) -> np.ndarray:
    """The RGB pixels (uint8, H x W x 3) of landscape number `index`."""
    width, height = size
    rng = np.random.default_rng(1_000_003 * (index + 1))
    f32 = np.float32
    top, horizon_col, near, far, sun_col = (np.array(c, f32) for c in _PALETTES[index % len(_PALETTES)])
    shift = rng.normal(0, 12, 3).astype(f32)  # vary the palette a little
    top, horizon_col = np.clip(top + shift, 0, 255), np.clip(horizon_col + shift, 0, 255)

    yy = np.arange(height, dtype=f32)[:, None]
    xx = np.arange(width, dtype=f32)[None, :]
    horizon = int(height * rng.uniform(0.55, 0.7))

    # Sky: a vertical gradient.
    t = (np.clip(yy / horizon, 0, 1) ** 1.6)[..., None]
    img = np.broadcast_to(top * (1 - t) + horizon_col * t, (height, width, 3)).astype(f32)

    # Sun with a glow (computed in a box around it).
    sx, sy = width * rng.uniform(0.15, 0.85), horizon * rng.uniform(0.25, 0.75)
    radius = height * rng.uniform(0.03, 0.06)
    box = int(radius * 12)
    y0, y1 = max(0, int(sy) - box), min(height, int(sy) + box)
    x0, x1 = max(0, int(sx) - box), min(width, int(sx) + box)
    r = np.sqrt((xx[:, x0:x1] - sx) ** 2 + (yy[y0:y1] - sy) ** 2)
    glow = (np.exp(-r / (radius * 3)) * 0.4)[..., None]
    disc = np.clip((radius - r) / 2.0, 0, 1)[..., None]
    patch = img[y0:y1, x0:x1]
    patch = patch * (1 - glow) + sun_col * glow
    img[y0:y1, x0:x1] = patch * (1 - disc) + sun_col * disc

    # Clouds: soft, streaky ellipses (computed in their boxes).
    white = np.array([245, 240, 235], f32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = width * rng.uniform(0, 1), horizon * rng.uniform(0.08, 0.55)
        a, b = width * rng.uniform(0.05, 0.15), height * rng.uniform(0.01, 0.03)
        y0, y1 = max(0, int(cy - 3 * b)), min(horizon, int(cy + 3 * b))
        x0, x1 = max(0, int(cx - 3 * a)), min(width, int(cx + 3 * a))
        if y1 <= y0 or x1 <= x0:
            continue
        streak = 0.75 + 0.25 * _texture(rng, y1 - y0, x1 - x0, 24)
        c = (np.exp(-(((xx[:, x0:x1] - cx) / a) ** 2 + ((yy[y0:y1] - cy) / b) ** 2)) * 0.6 * streak)[
            ..., None
        ]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - c) + white * c

    # Mountain ridges, far (hazy) to near (dark), rocky, shaded from the crest down.
    rock = _texture(rng, horizon, width, 9) * 0.6 + _texture(rng, horizon, width, 3) * 0.4
    layers = int(rng.integers(3, 6))
    for k in range(layers):
        depth = k / max(1, layers - 1)  # 0 far .. 1 near
        base = horizon - height * (0.2 - 0.14 * depth) * rng.uniform(0.8, 1.2)
        ridge = _ridge(rng, width, base, height * (0.03 + 0.04 * depth), rng.uniform(0.55, 0.8))
        colour = far * (1 - depth) + near * depth
        colour = colour * 0.7 + horizon_col * 0.3 * (1 - depth)
        below = np.clip((yy[:horizon] - ridge[None, :]) / (height * 0.2), 0, 1)
        mask = (yy[:horizon] >= ridge[None, :])[..., None]
        layer = colour * (1 - 0.4 * below[..., None]) + (rock * (6 + 22 * depth))[..., None]
        img[:horizon] = np.where(mask, layer, img[:horizon])

    # Lake below the horizon: everything above, mirrored, darker, with ripples.
    rows = height - horizon
    src = np.clip(2 * horizon - 1 - np.arange(horizon, height), 0, horizon - 1)
    ripple = (
        np.sin(np.arange(rows)[:, None] * 0.7 + np.arange(width)[None, :] * 0.015)
        * (2 + np.arange(rows)[:, None] * 0.02)
    ).astype(int)
    cols = np.clip(np.arange(width)[None, :] + ripple, 0, width - 1)
    img[horizon:] = img[src[:, None], cols] * 0.7 + np.array([10, 25, 35], f32) * 0.3

    # A tree line on the near shore: a jagged band of dark spikes.
    shore = horizon + int(height * rng.uniform(0.005, 0.02))
    heights = np.repeat(rng.uniform(15, 70, width // 7 + 2) * (height / 1080), 7)[:width]
    tops = heights * np.abs(np.sin(np.arange(width) * np.pi / 7)) ** 0.6
    y0 = max(0, int(shore - heights.max()) - 1)
    trees = (yy[y0:shore] >= shore - tops[None, :])[..., None]
    img[y0:shore] = np.where(trees, near * 0.55, img[y0:shore])

    # Grain, then a slight blur (a lens is not perfect).
    img += rng.standard_normal(img.shape, dtype=f32) * 2.5
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(0.7)))


def photo_jpeg(index: int, size=DEFAULT_SIZE, quality: int = DEFAULT_QUALITY) -> bytes:
    """Landscape number `index` as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(photo_array(index, size), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
