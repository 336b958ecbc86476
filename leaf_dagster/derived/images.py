"""Property images: one PNG per numeric property, Leaf's red-to-green ramp, georeferenced by .aux.xml.

Pixels are 1 m on a grid in the file's UTM zone; each pixel takes the value of the point whose rectangle
covers it, coloured from the property's minimum (0 %) to its maximum (100 %). Pixels no point covers
and points without a value are transparent (`nv`).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .raster import Grid

RAMP: dict[str, list[int]] = {"0%": [200, 0, 0], "35%": [255, 40, 0], "45%": [255, 150, 0], "55%": [255, 240, 0],
                              "65%": [0, 230, 0], "75%": [0, 190, 0], "100%": [0, 130, 0], "nv": [0, 0, 0, 0]}
_STOPS = np.array([float(k[:-1]) / 100 for k in RAMP if k != "nv"])
_COLOURS = np.array([v for k, v in RAMP.items() if k != "nv"], dtype=float)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def colours(fraction: np.ndarray) -> np.ndarray:
    """RGB (uint8) for fractions in [0, 1], interpolated between the ramp's stops (each channel rounded
    straight into its column of the result: no float image of the three)."""
    rgb = np.empty(np.shape(fraction) + (3,), dtype=np.uint8)
    for c in range(3):
        rgb[..., c] = np.rint(np.interp(fraction, _STOPS, _COLOURS[:, c]))
    return rgb


def covered_pixels(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat positions of the pixels a point covers, and that point's row: what every image of one
    `index` raster shares."""
    positions = np.flatnonzero(index >= 0)
    return positions, index.ravel()[positions]


def render(values: np.ndarray, index: np.ndarray,
           pixels: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, float, float]:
    """RGBA image of `values` (one per point) through the covering-point `index` raster (`pixels`:
    its `covered_pixels`, when already known).

    Each run of one value in point order is coloured once (the sections logged at one instant share the
    machine's values: speed, heading, moisture) and its colour, packed in 32 bits, copied to its points and
    from them to the pixels they cover: a pixel's colour is a function of its point's value only."""
    finite = np.isfinite(values)
    rgba = np.zeros(index.shape + (4,), dtype=np.uint8)
    if not finite.any():
        return rgba, float("nan"), float("nan")
    every = bool(finite.all())
    known = values if every else values[finite]
    low, high = float(known.min()), float(known.max())
    span = high - low
    starts = np.flatnonzero(np.concatenate(([True], known[1:] != known[:-1])))
    run_rgba = np.empty((len(starts), 4), dtype=np.uint8)
    run_rgba[:, :3] = colours((known[starts] - low) / span if span > 0 else np.ones(len(starts)))
    run_rgba[:, 3] = 255
    known_colours = run_rgba.view(np.uint32).reshape(-1)
    if len(starts) < len(known):
        known_colours = np.repeat(known_colours, np.diff(starts, append=len(known)))
    if every:
        point_colours = known_colours
    else:
        point_colours = np.zeros(len(values), dtype=np.uint32)  # transparent where the point has no value
        point_colours[finite] = known_colours
    positions, owners = pixels if pixels is not None else covered_pixels(index)
    rgba.view(np.uint32).reshape(-1)[positions] = point_colours[owners]
    return rgba, low, high


def aux_xml(grid: Grid) -> str:
    """GDAL PAM sidecar placing the PNG: spatial reference and geotransform."""
    t = grid.transform
    wkt = grid.crs.to_wkt().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f"<PAMDataset>\n  <SRS>{wkt}</SRS>\n"
            f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>\n</PAMDataset>\n")


def png_bytes(rgba: np.ndarray) -> bytes:
    """An RGBA image as PNG, encoded here: each row filtered by PNG's Sub filter (a byte less the same byte of
    the pixel to its left, so a run of one colour becomes zeros) and deflated run-length at level 1. Pillow
    tries five filters on every row first, which took longer than the deflating; the pixels are the same."""
    height, width, _ = rgba.shape
    rows = np.empty((height, 1 + width * 4), dtype=np.uint8)
    rows[:, 0] = 1  # the row's filter: Sub
    pixels = rgba.reshape(height, width * 4)
    rows[:, 1:5] = pixels[:, :4]
    np.subtract(pixels[:, 4:], pixels[:, :-4], out=rows[:, 5:])  # modulo 256, as the filter is defined
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(rows.data) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, RGBA, deflate, filters, no interlace
    return b"".join([_PNG_SIGNATURE, _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", data), _png_chunk(b"IEND", b"")])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def with_legend(rgba: np.ndarray, title: str, low: float, high: float, max_side: int = 320) -> bytes:
    """The map scaled to `max_side` above a legend: what it colours (`title`), the ramp from red at `low` to
    green at `high`. A thumbnail without one shows colours a reader cannot read back to values."""
    image = Image.fromarray(rgba, mode="RGBA")
    image.thumbnail((max_side, max_side), Image.Resampling.NEAREST)
    font = ImageFont.load_default()
    width, pad, bar = max(image.width, 160), 4, 10
    line = int(font.getbbox("Ag")[3]) + 2
    canvas = Image.new("RGBA", (width, image.height + 3 * pad + 2 * line + bar), (255, 255, 255, 255))
    canvas.paste(image, ((width - image.width) // 2, 0), image)
    draw = ImageDraw.Draw(canvas)
    top = image.height + pad
    draw.text((pad, top), title, fill=(0, 0, 0), font=font)
    top += line
    ramp = colours(np.linspace(0.0, 1.0, width - 2 * pad))
    for x, rgb in enumerate(ramp):
        draw.line([(pad + x, top), (pad + x, top + bar)], fill=tuple(int(c) for c in rgb))
    top += bar + pad
    low_text, high_text = legend_number(low), legend_number(high)
    draw.text((pad, top), low_text, fill=(0, 0, 0), font=font)
    draw.text((width - pad - draw.textlength(high_text, font=font), top), high_text, fill=(0, 0, 0), font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def legend_number(value: float) -> str:
    """A legend's end value as people read it: 41,829 and 66.3, not 4.183e+04."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def legend_words(legend: dict[str, Any]) -> str:
    """The thumbnail's legend in words (Markdown): the property it colours and the ramp over its value range."""
    unit = f" {legend['unit']}" if legend["unit"] else ""
    return (f"Colour: **{legend['property']}**, red {legend_number(legend['min'])}{unit} (0 %) → yellow (55 %) → "
            f"green {legend_number(legend['max'])}{unit} (100 %); no colour: no value")


def zip_images(paths: list[Path], target: Path) -> None:
    """The zippedPNGs bundle: every PNG with its .aux.xml. PNGs are stored as they are (their pixels are
    already deflated: deflating them again costs time and saves nothing); the sidecars are deflated."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, path.name, compress_type=zipfile.ZIP_STORED)
            sidecar = path.with_name(path.name + ".aux.xml")
            if sidecar.exists():
                zf.write(sidecar, sidecar.name)
