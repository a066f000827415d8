"""Product images of the demo catalog: one coloured, patterned shape on a pale background.

The image shows the item's colour, shape and pattern, its material as a surface texture and
its brand as a logo badge in the top-right corner, as real product photos show packaging
logos and materials (latent attributes that users may have a taste for), plus nuisance
variation (background tint, size, position, rotation). Drawn with PIL at twice the size and
downsampled for anti-aliasing, then encoded as JPEG. Rendering depends only on ``rng`` draws,
so the same seed gives byte-identical files.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from cliper.demo.vocab import BRANDS, COLOURS

SUPERSAMPLE = 2
SIZE_FRACTION = {"small": 0.5, "medium": 0.66, "large": 0.82}
JPEG_QUALITY = 90
# Brand logo: a glyph (3 shapes) in one of 5 ink colours on a white tile -> 15 distinct badges.
BADGE_FRACTION = 0.26  # badge side / image side
BADGE_INKS = ((20, 30, 110), (190, 20, 40), (225, 170, 0), (0, 130, 120), (120, 40, 150))
BADGE_GLYPHS = ("disc", "bar", "wedge")
TEXTURE_ALPHA = 0.45  # how strongly the material texture shows over the fill


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


def _texture_layer(side: int, fill: Image.Image, material: str, rng: np.random.Generator) -> Image.Image:
    """The fill with the material's surface drawn over it (blended at :data:`TEXTURE_ALPHA`)."""
    tex = fill.copy()
    draw = ImageDraw.Draw(tex)
    step = side / 16.0
    if material == "cotton":  # soft speckle
        grain = rng.integers(0, 2, size=(side // 2, side // 2)).astype(np.uint8) * 255
        noise = Image.fromarray(grain).resize((side, side), Image.Resampling.NEAREST)
        tex = Image.composite(Image.new("RGB", (side, side), (255, 255, 255)), tex, noise)
    elif material == "wood":  # thin brown horizontal grain
        for k in range(17):
            y = k * step + float(rng.uniform(-1, 1))
            draw.line([(0, y), (side, y + step * 0.4)], fill=(160, 110, 60), width=max(1, side // 32))
    elif material == "bamboo":  # vertical stalks with nodes
        for k in range(0, 17, 3):
            x = k * step
            draw.rectangle([x, 0, x + step * 0.5, side], fill=(200, 210, 140))
            for y in range(0, side, int(step * 4)):
                draw.rectangle([x - step * 0.3, y, x + step * 0.8, y + step * 0.4], fill=(120, 140, 60))
    elif material == "silicone":  # glossy highlight
        draw.ellipse([side * 0.15, side * 0.12, side * 0.6, side * 0.4], fill=(255, 255, 255))
    else:  # plastic: hard dark rim lines
        for k in range(1, 8, 2):
            inset = k * side / 16.0
            draw.rectangle([inset, inset, side - inset, side - inset], outline=(20, 20, 20), width=2)
    return Image.blend(fill, tex, TEXTURE_ALPHA)


def _brand_badge(canvas: Image.Image, brand: str) -> None:
    """Draw the brand's logo badge in the top-right corner of ``canvas`` (in place)."""
    if brand not in BRANDS:
        return
    code = BRANDS.index(brand)
    ink, glyph = BADGE_INKS[code % len(BADGE_INKS)], BADGE_GLYPHS[code // len(BADGE_INKS) % len(BADGE_GLYPHS)]
    side = canvas.size[0]
    b = side * BADGE_FRACTION
    x0, y0 = side - b - side * 0.03, side * 0.03
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([x0, y0, x0 + b, y0 + b], fill=(255, 255, 255), outline=(200, 200, 200))
    m = b * 0.18
    if glyph == "disc":
        draw.ellipse([x0 + m, y0 + m, x0 + b - m, y0 + b - m], fill=ink)
    elif glyph == "bar":
        draw.rectangle([x0 + m, y0 + b * 0.35, x0 + b - m, y0 + b * 0.65], fill=ink)
    else:
        draw.polygon([(x0 + m, y0 + b - m), (x0 + b - m, y0 + b - m), (x0 + b / 2, y0 + m)], fill=ink)


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
    fill = _pattern_layer(side, colour, item["pattern"], rng)
    canvas.paste(_texture_layer(side, fill, item.get("material", ""), rng), (0, 0), mask)
    _brand_badge(canvas, item.get("brand", ""))
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
