"""The curator HTML report: histograms, best/worst samples with playable media, run figures."""

from __future__ import annotations

import base64
import json
import re

import numpy as np

from catalog import media
from catalog.ducklake import Catalog
from catalog.records import SampleRecord, sample_id
from catalog.settings import load_settings
from serve.report import build_report


def _sample(i: int, overall: float) -> SampleRecord:
    v = 4
    frames = np.full((v, 16, 16, 3), 255, np.uint8)
    frames[:, 4:12, 4:12] = (200, 20 * i % 255, 20)
    ext = np.tile(np.eye(4, dtype=np.float32), (v, 1, 1))
    intr = np.tile(np.eye(3, dtype=np.float32), (v, 1, 1))
    sid = sample_id(f"p{i}", 0, i, "ckpt")
    return SampleRecord(
        sample_id=sid, prompt_id=f"p{i}", prompt_text=f"a red thing <{i}>", category="thing", n_views=v,
        resolution=16, seed=i, score_consistency=overall, score_framing=overall, score_sharpness=overall,
        score_prompt_color=overall, score_overall=overall, status="kept" if overall >= 0.5 else "rejected",
        media=media.sample_media(frames, ext, intr),
    )


def test_report_shows_best_and_worst_with_media(tmp_path):
    settings = load_settings(root=tmp_path / "vf3d")
    with Catalog.open(settings) as cat:
        cat.commit_batch("b1", [_sample(i, i / 9) for i in range(10)])
        cat.conn.execute(
            "INSERT INTO runs (run_id, kind, status, metrics) VALUES ('r1', 'fleet', 'finished', ?)",
            [json.dumps({"samples": 10, "samples_per_s": 1.5})],
        )
        out = build_report(cat, tmp_path / "report.html", n_examples=3, threshold=0.5)
    page = out.read_text()
    assert "10 samples · 5 kept · 5 rejected" in page
    # prompts are escaped, not injected
    assert "a red thing &lt;9&gt;" in page and "<9>" not in page
    best = page.split("<h2>Best samples</h2>")[1].split("<h2>Worst samples</h2>")[0]
    worst = page.split("<h2>Worst samples</h2>")[1].split("<h2>Quality by category</h2>")[0]
    assert best.count("class=\"card\"") == 3 and worst.count("class=\"card\"") == 3
    assert "&lt;9&gt;" in best and "&lt;0&gt;" in worst and "&lt;0&gt;" not in best
    videos = re.findall(r'<video src="data:video/mp4;base64,([^"]+)"', page)
    assert len(videos) == 6
    assert media.decode_video(base64.b64decode(videos[0])).shape[1:] == (16, 16, 3)
    assert "samples_per_s" in page and "1.5" in page
    hist = re.search(r"src='data:image/png;base64,([^']+)' alt='score histograms'", page)
    assert hist and base64.b64decode(hist.group(1)).startswith(b"\x89PNG")
