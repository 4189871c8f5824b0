"""Per-sample quality scores for orbit videos, each in [0, 1] (1 = best), computed batched with torch.

Input: frames uint8 [B, V, H, W, 3] (views in orbit order, white background), optional alpha
uint8 [B, V, H, W]. Without alpha (generated videos) the foreground is estimated from non-white
pixels: ``fg = clamp((d - 10) / 30, 0, 1)`` with ``d = 255 - min over channels``.

Scores and what they mean
-------------------------
consistency
    Does the sample look like one object seen along a smooth circular orbit?
    ``(0.6 order + 0.2 silhouette + 0.2 colour) * motion``. With ``D(i, j) = 1 - SSIM``
    (torchmetrics, grey, area-downsampled to <= 32 px): *order* = 2 p - 1 (clamped) where p is how often, for each
    view v, both ``D(v-1, v)`` and ``D(v, v+1)`` are below ``D(v-1, v+1)`` — true along a smooth
    orbit (also for cube-like symmetric objects), true half the time for shuffled views, false for
    frozen (identical) views; the wrap-around triples make it check loop closure last -> first too.
    *silhouette* = 1 - mean |delta area| / mean area / 0.5 between adjacent views; *colour* = 1 - mean
    total-variation distance of adjacent foreground palette histograms / 0.5; *motion* =
    clamp(D_far / 0.01) with D_far the mean D between views a quarter and half an orbit apart: views
    that do not change (one frozen frame) are not an orbit. Details also report *even* (no single
    jump) and *loop_closure* (last -> first step no larger than the typical step).
framing
    Is the object fully in frame, centred, at a sane size, on a clean white background?
    Mean of *coverage* (per view, 1 for foreground fraction in [0.05, 0.6], linear to 0 at 0.005
    and 0.9), *centred* (1 - foreground-centroid offset / 0.35 of the image size), *unclipped*
    (1 - foreground share of the 2-px border / 0.05) and *clean background* (1 - share of
    background pixels that are not white / 0.15).
sharpness
    Are the views crisp, noise-free and well exposed? ``edge * quiet * exposure`` where *edge* =
    1 - exp(-r / 0.5) with r = E[lap²]/E[|∇|²], a scale-free edge-sharpness ratio (an edge blurred
    by σ px has r ∝ 1/σ²; clean renders r ≈ 2); *quiet* = 1 - clamp(σ_noise / 12) with σ_noise from
    Immerkær's robust (median) estimator in grey levels; *exposure* = 1 - clamp(share of
    foreground pixels clipped at 0 or 255 / 0.3).
prompt_color
    Do the pixels show the colours the prompt names (palette words, see engine.assets.palette)?
    1 when the best-covered prompt colour covers >= 30% of the foreground and every other prompt
    colour >= 5%; each term falls linearly to 0 (min(1, share / 0.3) and min(1, share / 0.05)),
    averaged over the prompt's colour words. ``None`` when the prompt names no colour.
clip
    CLIPScore (torchmetrics) / 100 averaged over views, only when ``quality.clip_model_path`` is
    set; otherwise ``None`` — never a made-up value.
overall
    Weighted mean of the available (non-None) scores; weights from settings or the ``weights``
    argument (missing keys use :data:`DEFAULT_WEIGHTS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.assets.palette import COLOR_NAMES, classify_rgb, colors_in_text

SCORER_VERSION = "quality-v1"
DEFAULT_WEIGHTS: dict[str, float] = {
    "consistency": 0.35, "framing": 0.2, "sharpness": 0.2, "prompt_color": 0.15, "clip": 0.1,
}
SCORE_NAMES = ("consistency", "framing", "sharpness", "prompt_color", "clip")


@dataclass
class SampleScores:
    """Scores of one sample (see the module docstring for each meaning)."""

    consistency: float
    framing: float
    sharpness: float
    prompt_color: float | None
    clip: float | None
    overall: float
    details: dict[str, float] = field(default_factory=dict)
    scorer_version: str = SCORER_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def columns(self) -> dict[str, Any]:
        """The catalog ``samples`` score columns."""
        return {
            "score_consistency": self.consistency, "score_framing": self.framing,
            "score_sharpness": self.sharpness, "score_prompt_color": self.prompt_color,
            "score_clip": self.clip, "score_overall": self.overall, "scorer_version": self.scorer_version,
        }


def _clamp01(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0)


def _prepare(frames: np.ndarray | torch.Tensor, alpha) -> tuple[torch.Tensor, torch.Tensor, bool]:
    f = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if f.ndim == 4:
        f = f[None]
    if f.ndim != 5 or f.shape[-1] not in (3, 4):
        raise ValueError(f"frames must be uint8 [B, V, H, W, 3], got shape {tuple(f.shape)}")
    if f.shape[-1] == 4 and alpha is None:
        alpha = f[..., 3]
    f = f[..., :3].float()
    if alpha is not None:
        a = torch.as_tensor(np.asarray(alpha)) if not isinstance(alpha, torch.Tensor) else alpha
        a = a.reshape(f.shape[:-1]).float() / 255.0
        return f, a, True
    d = 255.0 - f.min(dim=-1).values
    return f, _clamp01((d - 10.0) / 30.0), False


def _grey(f: torch.Tensor) -> torch.Tensor:
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def _resize_grey(g: torch.Tensor, size: int) -> torch.Tensor:
    """[N, H, W] -> [N, 1, s, s] with s = min(H, size)."""
    x = g[:, None]
    if g.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def _pair_d(img: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """1 - SSIM between views i and j of every sample: img [B, V, 1, s, s] -> [B, len(i)]."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    b = img.shape[0]
    a = img[:, i].flatten(0, 1)
    c = img[:, j].flatten(0, 1)
    s = ssim(a, c, data_range=255.0, reduction="none", kernel_size=7, sigma=1.5)
    return (1.0 - s).reshape(b, len(i)).clamp_min(0.0)


def consistency_scores(f: torch.Tensor, fg: torch.Tensor, hist: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    b, v = f.shape[:2]
    if v < 3:
        one = torch.ones(b)
        return {"consistency": one, "smooth": one, "even": one, "silhouette": one, "colour_stability": one,
                "motion": one, "loop_closure": one}
    g = _resize_grey(_grey(f).flatten(0, 1), 32)
    img = g.reshape(b, v, *g.shape[1:])
    idx = torch.arange(v)
    d_adj = _pair_d(img, idx, (idx + 1) % v)  # includes the loop closure pair (V-1 -> 0)
    offsets = sorted({k for k in (v // 4, v // 2) if 2 <= k <= v - 2}) or [v // 2]
    d_far = torch.stack([_pair_d(img, idx, (idx + k) % v) for k in offsets], 2).mean(dim=(1, 2))
    denom = d_far + 1e-4
    # order: along a smooth orbit each view is closer to its neighbours than its neighbours are to
    # each other (d(v-1, v) and d(v, v+1) both below d(v-1, v+1)); a shuffled orbit is right half
    # the time (-> 0), frozen views tie (-> 0); robust to 90-degree symmetric objects like cubes
    d_skip = _pair_d(img, (idx - 1) % v, (idx + 1) % v)  # d(v-1, v+1)
    d_prev = d_adj.roll(1, 1)  # d(v-1, v)
    closer = torch.stack([(d_adj < d_skip).float(), (d_prev < d_skip).float()], 2)
    order = _clamp01(2.0 * closer.mean(dim=(1, 2)) - 1.0)
    even = _clamp01(1.0 - (d_adj.max(1).values - d_adj.median(1).values) / denom)
    loop = _clamp01(1.0 - (d_adj[:, -1] - d_adj[:, :-1].median(1).values).clamp_min(0) / denom)
    motion = _clamp01(d_far / 0.01)
    area = fg.mean(dim=(2, 3))  # [B, V]
    d_area = (area - area.roll(-1, 1)).abs().mean(1) / (area.mean(1) + 1e-4)
    sil = _clamp01(1.0 - d_area / 0.5)
    hist = _palette_hist(f, fg) if hist is None else hist  # [B, V, C]
    tv = 0.5 * (hist - hist.roll(-1, 1)).abs().sum(-1).mean(1)
    col = _clamp01(1.0 - tv / 0.5)
    cons = (0.6 * order + 0.2 * sil + 0.2 * col) * motion
    return {"consistency": cons, "order": order, "even": even, "silhouette": sil, "colour_stability": col,
            "motion": motion, "loop_closure": loop}


def _palette_hist(f: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Foreground-weighted palette histogram per view: [B, V, C], rows sum to 1 (or 0)."""
    b, v, h, w, _ = f.shape
    step = max(1, h // 64)
    cls = torch.from_numpy(classify_rgb(f[:, :, ::step, ::step].numpy() / 255.0))
    wts = fg[:, :, ::step, ::step]
    onehot = F.one_hot(cls, len(COLOR_NAMES)).float() * wts[..., None]
    hist = onehot.sum(dim=(2, 3))
    return hist / hist.sum(-1, keepdim=True).clamp_min(1e-6)


def framing_scores(f: torch.Tensor, fg: torch.Tensor, has_alpha: bool) -> dict[str, torch.Tensor]:
    b, v, h, w = fg.shape
    cov = fg.mean(dim=(2, 3))  # [B, V]
    lo = _clamp01((cov - 0.005) / (0.05 - 0.005))
    hi = _clamp01((0.9 - cov) / (0.9 - 0.6))
    coverage = torch.minimum(lo, hi).mean(1)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5
    mass = fg.sum(dim=(2, 3)).clamp_min(1e-6)
    cy = (fg.sum(3) * ys).sum(2) / mass
    cx = (fg.sum(2) * xs).sum(2) / mass
    off = torch.sqrt(cx**2 + cy**2)
    centred = torch.where(cov > 1e-3, _clamp01(1.0 - off / 0.35), torch.zeros_like(off)).mean(1)
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[2:-2, 2:-2] = False
    border = fg[:, :, ring].mean(2)
    unclipped = _clamp01(1.0 - border / 0.05).mean(1)
    d = 255.0 - f.min(dim=-1).values
    if has_alpha:
        bg = fg < 0.02
    else:
        bg = d < 40.0  # not clearly object: background, anti-aliased rims and background speckle
    dirty = ((d > 6.0) & bg).float().sum(dim=(2, 3)) / bg.float().sum(dim=(2, 3)).clamp_min(1.0)
    clean = _clamp01(1.0 - dirty / 0.15).mean(1)
    framing = (coverage + centred + unclipped + clean) / 4.0
    return {"framing": framing, "coverage": coverage, "centred": centred, "unclipped": unclipped, "clean_background": clean}


def sharpness_scores(f: torch.Tensor, fg: torch.Tensor) -> dict[str, torch.Tensor]:
    b, v, h, w, _ = f.shape
    g = _grey(f).flatten(0, 1)[:, None]  # [N, 1, H, W]
    lap_k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    gp = F.pad(g, (1, 1, 1, 1), mode="replicate")
    lap = F.conv2d(gp, lap_k)
    gx = gp[..., 1:-1, 2:] - gp[..., 1:-1, 1:-1]
    gy = gp[..., 2:, 1:-1] - gp[..., 1:-1, 1:-1]
    ratio = (lap**2).mean(dim=(1, 2, 3)) / ((gx**2 + gy**2).mean(dim=(1, 2, 3)) + 1e-6)
    edge = (1.0 - torch.exp(-ratio / 0.5)).reshape(b, v).mean(1)
    n_k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)
    resp = F.conv2d(g, n_k).abs().flatten(1)
    sigma = resp.median(1).values / (0.6745 * 6.0)
    quiet = _clamp01(1.0 - sigma / 12.0).reshape(b, v).mean(1)
    clipped = ((f.max(-1).values >= 254.5) & (f.min(-1).values >= 254.5)) | (f.max(-1).values <= 0.5)
    clip_share = (clipped.float() * fg).sum(dim=(2, 3)) / fg.sum(dim=(2, 3)).clamp_min(1e-6)
    exposure = _clamp01(1.0 - clip_share / 0.3).mean(1)
    return {"sharpness": edge * quiet * exposure, "edge": edge, "quiet": quiet, "exposure": exposure,
            "noise_sigma": sigma.reshape(b, v).mean(1), "edge_ratio": ratio.reshape(b, v).mean(1)}


def prompt_color_scores(f: torch.Tensor, fg: torch.Tensor, prompts: Sequence[str],
                        hist: torch.Tensor | None = None) -> list[float | None]:
    hist = _palette_hist(f, fg) if hist is None else hist  # [B, V, C]
    weights = fg.mean(dim=(2, 3))  # views weighted by foreground size
    agg = (hist * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-6)
    out: list[float | None] = []
    for i, prompt in enumerate(prompts):
        words = colors_in_text(prompt)
        if not words:
            out.append(None)
            continue
        shares = sorted((float(agg[i, COLOR_NAMES.index(wd)]) for wd in words), reverse=True)
        vals = [min(1.0, shares[0] / 0.3)] + [min(1.0, m / 0.05) for m in shares[1:]]
        out.append(float(np.mean(vals)))
    return out


def overall_score(scores: Mapping[str, float | None], weights: Mapping[str, float] | None = None) -> float:
    """Weighted mean of the available (non-None) scores."""
    w = dict(DEFAULT_WEIGHTS)
    if weights:
        unknown = set(weights) - set(SCORE_NAMES)
        if unknown:
            raise ValueError(f"unknown score weight(s) {sorted(unknown)}; use {', '.join(SCORE_NAMES)}")
        w.update({k: float(v) for k, v in weights.items()})
    num = den = 0.0
    for name in SCORE_NAMES:
        val = scores.get(name)
        if val is None or w[name] <= 0:
            continue
        num += w[name] * float(val)
        den += w[name]
    return num / den if den > 0 else 0.0


class QualityScorer:
    """Holds the optional CLIP model between calls; :func:`score_batch` uses a shared instance."""

    def __init__(self, clip_model_path: str | None = None, weights: Mapping[str, float] | None = None) -> None:
        self.clip_model_path = clip_model_path or None
        self.weights = dict(weights or {})
        self._clip = None

    @classmethod
    def from_settings(cls, settings: Any | None = None) -> QualityScorer:
        if settings is None:
            from catalog.settings import load_settings

            settings = load_settings()
        q = getattr(settings, "quality", None)
        if q is None:
            return cls()
        return cls(q.clip_model_path or None, dict(q.weights))

    def _clip_metric(self):
        if self._clip is None:
            from pathlib import Path

            from engine.quality import QualityConfigError

            path = Path(self.clip_model_path)  # type: ignore[arg-type]
            if not (path / "config.json").is_file():
                raise QualityConfigError(
                    f"quality.clip_model_path={self.clip_model_path!r} is not a CLIP model folder (no config.json); "
                    "point VF3D_QUALITY__CLIP_MODEL_PATH at a saved transformers CLIP model or unset it"
                )
            from torchmetrics.multimodal.clip_score import CLIPScore

            self._clip = CLIPScore(model_name_or_path=str(path))
        return self._clip

    def clip_scores(self, f: torch.Tensor, prompts: Sequence[str]) -> list[float | None]:
        if not self.clip_model_path:
            return [None] * len(prompts)
        from torchmetrics.functional.multimodal.clip_score import _clip_score_update

        metric = self._clip_metric()
        out: list[float | None] = []
        for i, prompt in enumerate(prompts):
            imgs = f[i].permute(0, 3, 1, 2).to(torch.uint8)
            scores, _ = _clip_score_update(list(imgs), [prompt] * imgs.shape[0], metric.model, metric.processor)
            out.append(float((scores.clamp_min(0) / 100.0).mean().clamp(0, 1)))
        return out

    @torch.no_grad()
    def score(self, frames, prompts: Sequence[str], alpha=None, weights: Mapping[str, float] | None = None,
              ) -> list[SampleScores]:
        f, fg, has_alpha = _prepare(frames, alpha)
        prompts = list(prompts)
        if len(prompts) != f.shape[0]:
            raise ValueError(f"score_batch needs one prompt per sample: {f.shape[0]} samples, {len(prompts)} prompts")
        if f.shape[0] == 0:
            return []
        w = {**self.weights, **(weights or {})}
        hist = _palette_hist(f, fg)
        parts = {**consistency_scores(f, fg, hist), **framing_scores(f, fg, has_alpha), **sharpness_scores(f, fg)}
        colour = prompt_color_scores(f, fg, prompts, hist)
        clip = self.clip_scores(f, prompts)
        out = []
        for i in range(f.shape[0]):
            vals = {
                "consistency": float(parts["consistency"][i]), "framing": float(parts["framing"][i]),
                "sharpness": float(parts["sharpness"][i]), "prompt_color": colour[i], "clip": clip[i],
            }
            details = {k: float(t[i]) for k, t in parts.items() if k not in vals}
            out.append(SampleScores(**vals, overall=overall_score(vals, w), details=details))
        return out


_DEFAULT: QualityScorer | None = None


def score_batch(frames, prompts: Sequence[str], alpha=None, weights: Mapping[str, float] | None = None,
                settings: Any | None = None) -> list[SampleScores]:
    """Score B samples: frames uint8 [B, V, H, W, 3] (views in orbit order), one prompt each.

    ``alpha`` uint8 [B, V, H, W] when known (renders); otherwise the foreground is estimated from
    non-white pixels. CLIP model path and default weights come from ``settings.quality``.
    """
    global _DEFAULT
    if settings is not None:
        scorer = QualityScorer.from_settings(settings)
    else:
        if _DEFAULT is None:
            _DEFAULT = QualityScorer.from_settings()
        scorer = _DEFAULT
    return scorer.score(frames, prompts, alpha=alpha, weights=weights)
