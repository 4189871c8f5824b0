"""Quality scores rank a clean orbit above degraded versions, monotonically in degradation strength."""

from __future__ import annotations

import numpy as np
import pytest

from engine.assets import sample_assets
from engine.quality import DEFAULT_WEIGHTS, SCORER_VERSION, QualityConfigError, QualityScorer, overall_score, score_batch
from engine.quality import degrade as D
from engine.render import render_orbits

SCORES = ("consistency", "framing", "sharpness", "overall")


@pytest.fixture(scope="module")
def orbits():
    assets = sample_assets(12, seed=3)
    renders = render_orbits(assets, views=16, resolution=64)
    frames = np.stack([r.rgb for r in renders])
    return frames, np.stack([r.alpha for r in renders]), [a.caption for a in assets]


def _mean(scores, name):
    vals = [getattr(s, name) for s in scores]
    return float(np.mean([v for v in vals if v is not None]))


def _levels(frames, prompts, fn, strengths):
    scorer = QualityScorer()
    return [scorer.score(fn(frames, s), prompts) for s in strengths]


def _assert_decreasing(levels, names, label):
    for name in names:
        means = [_mean(lv, name) for lv in levels]
        assert all(a > b for a, b in zip(means, means[1:])), (label, name, np.round(means, 4))


def test_clean_orbits_score_well_and_in_range(orbits):
    frames, alpha, prompts = orbits
    scores = score_batch(frames, prompts)
    assert len(scores) == len(prompts)
    for s in scores:
        for name in ("consistency", "framing", "sharpness", "overall"):
            assert 0.0 <= getattr(s, name) <= 1.0
        assert s.clip is None  # no CLIP model configured: NULL, never a made-up number
        assert s.scorer_version == SCORER_VERSION
    assert _mean(scores, "overall") > 0.85 and _mean(scores, "framing") > 0.85 and _mean(scores, "sharpness") > 0.9
    assert _mean(scores, "prompt_color") > 0.95  # captions are true of the renders
    with_alpha = score_batch(frames, prompts, alpha=alpha)
    assert abs(_mean(with_alpha, "overall") - _mean(scores, "overall")) < 0.02  # estimated fg ≈ true alpha


def test_blur_lowers_sharpness_and_overall_monotonically(orbits):
    frames, _, prompts = orbits
    levels = _levels(frames, prompts, D.blur, (0.0, 0.7, 1.4, 2.5))
    _assert_decreasing(levels, ("sharpness", "overall"), "blur")
    clean, worst = levels[0], levels[-1]
    assert all(c.sharpness > w.sharpness for c, w in zip(clean, worst))  # per sample too


def test_noise_lowers_sharpness_framing_and_overall_monotonically(orbits):
    frames, _, prompts = orbits
    levels = _levels(frames, prompts, D.noise, (0.0, 4.0, 10.0, 24.0))
    _assert_decreasing(levels, ("sharpness", "overall"), "noise")
    assert _mean(levels[0], "framing") > _mean(levels[1], "framing")  # speckled background
    assert all(c.overall > w.overall for c, w in zip(levels[0], levels[-1]))


def test_crop_lowers_framing_and_overall_monotonically(orbits):
    frames, _, prompts = orbits
    levels = _levels(frames, prompts, D.crop, (0.0, 0.12, 0.25, 0.4))
    _assert_decreasing(levels, ("framing", "overall"), "crop")
    assert all(c.framing > w.framing for c, w in zip(levels[0], levels[-1]))


@pytest.mark.slow
def test_shuffled_view_order_lowers_consistency_monotonically(orbits):
    frames, _, prompts = orbits
    scorer = QualityScorer()
    means = {}
    for strength in (0.0, 0.25, 0.5, 1.0):
        # average over independent permutations (each sample gets its own; 3 draws per level)
        draws = 1 if strength == 0.0 else 3
        runs = [scorer.score(D.shuffle_views(frames, strength, seed=100 * k), prompts) for k in range(draws)]
        means[strength] = {n: np.mean([_mean(r, n) for r in runs]) for n in ("consistency", "overall")}
    for name in ("consistency", "overall"):
        seq = [means[s][name] for s in (0.0, 0.25, 0.5, 1.0)]
        assert all(a > b for a, b in zip(seq, seq[1:])), (name, np.round(seq, 4))
    assert means[0.0]["consistency"] - means[1.0]["consistency"] > 0.3


def test_frozen_views_lower_consistency_monotonically(orbits):
    frames, _, prompts = orbits
    levels = _levels(frames, prompts, D.freeze_views, (0.0, 0.3, 0.6, 1.0))
    _assert_decreasing(levels, ("consistency", "overall"), "freeze")
    assert all(s.consistency < 0.1 for s in levels[-1])  # one frozen frame is not an orbit
    assert all(c.consistency > w.consistency for c, w in zip(levels[0], levels[-1]))


def test_prompt_colour_agreement(orbits):
    frames, _, prompts = orbits
    right = score_batch(frames[:4], prompts[:4])
    wrong_words = []
    for p in prompts[:4]:
        from engine.assets import colors_in_text

        present = set(colors_in_text(p))
        other = next(c for c in ("green", "purple", "orange", "pink", "blue") if c not in present)
        wrong_words.append(f"a {other} object")
    wrong = score_batch(frames[:4], wrong_words)
    for r, w in zip(right, wrong):
        assert r.prompt_color > 0.9 and w.prompt_color < r.prompt_color
    assert score_batch(frames[:1], ["a wooden chair"])[0].prompt_color is None  # no colour word: nothing to check


def test_weights_and_overall():
    assert overall_score({"consistency": 1.0, "framing": 0.0, "sharpness": 0.5, "prompt_color": None, "clip": None},
                         {"consistency": 1.0, "framing": 1.0, "sharpness": 2.0}) == pytest.approx(0.5)
    assert set(DEFAULT_WEIGHTS) == {"consistency", "framing", "sharpness", "prompt_color", "clip"}
    with pytest.raises(ValueError, match="unknown score weight"):
        overall_score({"consistency": 1.0}, {"beauty": 1.0})


def test_settings_weights_and_bad_clip_path(orbits, tmp_path):
    from catalog.settings import load_settings

    frames, _, prompts = orbits
    only_framing = load_settings(quality={"weights": {"consistency": 0, "framing": 1, "sharpness": 0,
                                                      "prompt_color": 0, "clip": 0}})
    s = score_batch(frames[:2], prompts[:2], settings=only_framing)
    assert s[0].overall == pytest.approx(s[0].framing)
    bad = load_settings(quality={"clip_model_path": str(tmp_path)})
    with pytest.raises(QualityConfigError, match="CLIP_MODEL_PATH"):
        score_batch(frames[:1], prompts[:1], settings=bad)


def test_batch_shape_errors():
    with pytest.raises(ValueError, match="one prompt per sample"):
        score_batch(np.full((2, 4, 16, 16, 3), 255, np.uint8), ["a"])
    with pytest.raises(ValueError, match=r"\[B, V, H, W, 3\]"):
        score_batch(np.zeros((16, 16, 3), np.uint8), ["a"])


def test_empty_batch_scores_to_empty_list():
    import numpy as np

    from engine.quality import score_batch

    assert score_batch(np.zeros((0, 8, 32, 32, 3), np.uint8), []) == []
