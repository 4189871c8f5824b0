"""Controlled degradations of an orbit, each with a strength knob (0 = untouched).

Used by the score-ranking tests and benchmarks: a good scorer ranks a clean orbit above every
degraded one, monotonically in strength. All take/return uint8 [V, H, W, 3] (or [B, V, H, W, 3]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _to_t(frames: np.ndarray) -> tuple[torch.Tensor, tuple[int, ...]]:
    arr = np.asarray(frames)
    shape = arr.shape
    t = torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, *shape[-3:]))).permute(0, 3, 1, 2).float()
    return t, shape


def _from_t(t: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy().reshape(shape)


def blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (white padding)."""
    if sigma <= 0:
        return np.array(frames, copy=True)
    t, shape = _to_t(frames)
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    t = F.pad(t - 255.0, (radius, radius, radius, radius)) + 255.0
    t = F.conv2d(t, k, groups=3)
    t = F.conv2d(t, k.transpose(2, 3), groups=3)
    return _from_t(t, shape)


def noise(frames: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian pixel noise of ``std`` grey levels (clipped to [0, 255])."""
    g = np.random.default_rng(seed)
    out = np.asarray(frames, np.float32) + g.normal(0.0, std, size=np.shape(frames)).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def crop(frames: np.ndarray, fraction: float) -> np.ndarray:
    """Zoom into a window (1 - fraction) wide anchored at the top-left corner, resized back:
    the object grows, drifts off-centre and gets clipped by the border as ``fraction`` grows."""
    if fraction <= 0:
        return np.array(frames, copy=True)
    t, shape = _to_t(frames)
    h, w = t.shape[-2:]
    ch, cw = max(2, int(round(h * (1 - fraction)))), max(2, int(round(w * (1 - fraction))))
    t = F.interpolate(t[..., :ch, :cw], size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return _from_t(t, shape)


def _view_axis(frames: np.ndarray) -> int:
    return np.asarray(frames).ndim - 4


def shuffle_views(frames: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Move ``round(fraction * V)`` views out of order: the chosen positions (the first m of a
    random permutation) are cyclically rotated. A batch [B, V, ...] uses seed + b for sample b,
    so its samples get independent permutations."""
    arr = np.asarray(frames)
    if arr.ndim == 5:
        return np.stack([shuffle_views(x, fraction, seed + b) for b, x in enumerate(arr)])
    v = arr.shape[0]
    m = int(round(fraction * v))
    if m < 2:
        return arr.copy()
    pos = np.random.default_rng(seed).permutation(v)[:m]
    order = np.arange(v)
    order[pos] = pos[np.r_[1:m, 0]]
    return arr[order]


def freeze_views(frames: np.ndarray, fraction: float) -> np.ndarray:
    """Replace views 1..m (m = round(fraction * (V - 1))) by view 0: at fraction 1 the orbit is one frozen frame."""
    arr = np.asarray(frames).copy()
    ax = _view_axis(arr)
    v = arr.shape[ax]
    m = int(round(fraction * (v - 1)))
    idx = [slice(None)] * arr.ndim
    src = list(idx)
    src[ax] = slice(0, 1)
    idx[ax] = slice(1, 1 + m)
    arr[tuple(idx)] = arr[tuple(src)]
    return arr
