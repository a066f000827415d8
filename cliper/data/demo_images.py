"""Product images of the demo catalog: one coloured, patterned shape on a pale background.

The image shows the item's colour, shape and pattern (latent attributes that users may have a
taste for) plus nuisance variation (background tint, size, position, rotation), drawn with PIL
at twice the size and downsampled for anti-aliasing, then encoded as JPEG. Rendering depends
only on ``rng`` draws, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from cliper.data.demo_vocab import COLOURS

SUPERSAMPLE = 2
SIZE_FRACTION = {"small": 0.5, "medium": 0.66, "large": 0.82}
JPEG_QUALITY = 90


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners, radii, offset = 4, [r * 0.95], math.pi / 4
    elif shape == "triangle":
        corners, radii, offset = 3, [r * 1.05], -math.pi / 2
    elif shape == "diamond":
        corners, radii, offset = 4, [r, r * 0.62], -math.pi / 2
    else:  # star
        corners, radii, offset = 10, [r, r * 0.45], -math.pi / 2
    pts = []
    for k in range(corners):
        rad = radii[k % len(radii)]
        theta = offset + angle + 2 * math.pi * k / corners
        pts.append((cx + rad * math.cos(theta), cy + rad * math.sin(theta)))
    return pts


def _pattern_layer(
    side: int, colour: tuple[int, int, int], pattern: str, rng: np.random.Generator
) -> Image.Image:
    """The object's fill: its colour plus the pattern in a lighter (or darker) tone."""
    layer = Image.new("RGB", (side, side), colour)
    if pattern == "plain":
        return layer
    light = sum(colour) / 3 > 150
    darker, lighter = (tuple(int(c * 0.45) for c in colour), tuple(int(c + (255 - c) * 0.7) for c in colour))
    accent = darker if light else lighter
    draw = ImageDraw.Draw(layer)
    period = side / float(rng.uniform(5.0, 7.0))
    if pattern == "stripes":
        width = period * 0.45
        horizontal = rng.random() < 0.5
        for k in range(int(side / period) + 2):
            a = k * period
            box = [0, a, side, a + width] if horizontal else [a, 0, a + width, side]
            draw.rectangle(box, fill=accent)
    elif pattern == "dots":
        rad = period * 0.22
        for i in range(int(side / period) + 2):
            for j in range(int(side / period) + 2):
                x, y = (i + 0.5 * (j % 2)) * period, j * period
                draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=accent)
    else:  # checks
        cell = period / 2
        for i in range(int(side / cell) + 1):
            for j in range(int(side / cell) + 1):
                if (i + j) % 2:
                    draw.rectangle([i * cell, j * cell, (i + 1) * cell, (j + 1) * cell], fill=accent)
    return layer


def render_image(item: dict, image_size: int, rng: np.random.Generator) -> bytes:
    """JPEG bytes of ``item``'s picture (``image_size`` pixels square)."""
    side = image_size * SUPERSAMPLE
    hue, sat, val = float(rng.random()), float(rng.uniform(0.04, 0.18)), float(rng.uniform(0.9, 1.0))
    background = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))
    base = COLOURS[item["colour"]][0]
    colour = tuple(int(np.clip(c + rng.integers(-18, 19), 0, 255)) for c in base)
    r = side * SIZE_FRACTION[item["size"]] / 2 * float(rng.uniform(0.92, 1.05))
    slack = max(side / 2 - r, 0.0)
    cx = side / 2 + float(rng.uniform(-0.6, 0.6)) * slack
    cy = side / 2 + float(rng.uniform(-0.6, 0.6)) * slack
    angle = float(rng.uniform(-0.3, 0.3))
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if item["shape"] == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_polygon(item["shape"], cx, cy, r, angle), fill=255)
    canvas = Image.new("RGB", (side, side), background)
    canvas.paste(_pattern_layer(side, colour, item["pattern"], rng), (0, 0), mask)
    canvas = canvas.reduce(SUPERSAMPLE)  # box filter: anti-aliased edges
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def corrupt(jpeg: bytes, severe: bool) -> bytes:
    """A broken file: an HTML error page saved as ``.jpg`` (``severe``: PIL cannot even identify
    it) or the first 40% of the JPEG (opens, fails to decode: "image file is truncated")."""
    if severe:
        return b"<html><head><title>503 Service Unavailable</title></head><body>try again</body></html>\n"
    return jpeg[: max(len(jpeg) * 2 // 5, 200)]
