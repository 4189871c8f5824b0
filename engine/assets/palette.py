"""The named colour palette shared by procedural assets (what captions say) and the
prompt-colour quality score (what the pixels say).

Every colour word an asset caption can contain is a key of :data:`PALETTE`; the RGB values
are chosen so that, under the renderer's lighting (shading factor roughly 0.5 to 1.0), each
colour is still classified as itself by :func:`classify_rgb`.

Classification is hue-based (HSV), with achromatic colours decided first:

* value < 0.16 -> black
* saturation < 0.2 (or < 0.28 when dim): value >= 0.56 -> white, else grey (a lit white surface
  keeps v >= 0.56 under the renderer's lights, a grey one stays below)
* otherwise by hue (degrees): red [345, 12), orange [12, 42), yellow [42, 70),
  green [70, 170), blue [170, 258), purple [258, 290), pink [290, 345);
  a red/purple-hued pixel with saturation < 0.55 and value > 0.6 is pink;
  an orange/yellow-hued pixel with value < 0.47 is brown.
"""

from __future__ import annotations

import re

import numpy as np

COLOR_NAMES: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "brown", "grey",
)
"""Colour words, in class-index order (index = the value :func:`classify_rgb` returns)."""

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "yellow": (0.98, 0.86, 0.12),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.32, 0.90),
    "purple": (0.55, 0.20, 0.80),
    "pink": (1.00, 0.55, 0.75),
    "white": (0.97, 0.97, 0.97),
    "black": (0.09, 0.09, 0.09),
    "brown": (0.44, 0.25, 0.10),
    "grey": (0.50, 0.50, 0.50),
}

CHROMATIC = ("red", "orange", "yellow", "green", "blue", "purple", "pink")

_SYNONYMS = {"gray": "grey", "golden": "yellow", "violet": "purple", "crimson": "red", "scarlet": "red"}
_WORD = re.compile(r"[a-z]+")


def color_index(name: str) -> int:
    return COLOR_NAMES.index(name)


def colors_in_text(text: str) -> list[str]:
    """Palette colour words in ``text`` (lower-cased, synonyms mapped, first-seen order, unique)."""
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        word = _SYNONYMS.get(word, word)
        if word in PALETTE and word not in found:
            found.append(word)
    return found


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1], [..., 3] -> HSV with hue in degrees [0, 360), s and v in [0, 1]."""
    rgb = np.asarray(rgb, np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = rgb.max(-1)
    mn = rgb.min(-1)
    d = mx - mn
    safe = np.where(d > 1e-6, d, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(d > 1e-6, h * 60.0, 0.0)
    s = np.where(mx > 1e-6, d / np.where(mx > 1e-6, mx, 1.0), 0.0)
    return np.stack([h % 360.0, s, mx], -1)


def classify_rgb(rgb: np.ndarray) -> np.ndarray:
    """Palette class index (see :data:`COLOR_NAMES`) per pixel for RGB uint8 or float [..., 3]."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) / 255.0
    hsv = rgb_to_hsv(rgb)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    out = np.full(h.shape, color_index("blue"), np.int64)
    bins = [(345.0, 360.0, "red"), (0.0, 12.0, "red"), (12.0, 42.0, "orange"), (42.0, 70.0, "yellow"),
            (70.0, 170.0, "green"), (170.0, 258.0, "blue"), (258.0, 290.0, "purple"), (290.0, 345.0, "pink")]
    for lo, hi, name in bins:
        out = np.where((h >= lo) & (h < hi), color_index(name), out)
    redish = (out == color_index("red")) | (out == color_index("pink")) | (out == color_index("purple"))
    out = np.where(redish & (out != color_index("purple")) & (s < 0.55) & (v > 0.6), color_index("pink"), out)
    out = np.where((out == color_index("pink")) & (s >= 0.55) & (h >= 330.0), color_index("red"), out)
    warm = (out == color_index("orange")) | ((out == color_index("yellow")) & (h < 50.0))
    out = np.where(warm & (v < 0.47), color_index("brown"), out)
    achrom = (s < 0.2) | ((s < 0.28) & (v < 0.5))
    out = np.where(achrom, np.where(v >= 0.56, color_index("white"), color_index("grey")), out)
    out = np.where(v < 0.16, color_index("black"), out)
    return out


def color_histogram(rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Fraction of (masked) pixels per palette colour, float64 [len(COLOR_NAMES)] summing to 1 (or 0s)."""
    cls = classify_rgb(rgb)
    weights = None if mask is None else np.asarray(mask, np.float64).reshape(cls.shape)
    hist = np.bincount(cls.reshape(-1), weights=None if weights is None else weights.reshape(-1), minlength=len(COLOR_NAMES))
    total = hist.sum()
    return hist / total if total > 0 else hist.astype(np.float64)


def dominant_color(rgb: np.ndarray, mask: np.ndarray | None = None) -> str:
    """The palette word covering most (masked) pixels."""
    return COLOR_NAMES[int(np.argmax(color_histogram(rgb, mask)))]
