"""A one-file HTML report of the catalog, for curators who would rather look than read.

Score histograms, the best and worst samples (contact sheet + playable orbit), per-category
quality, and the throughput of fleet runs. Everything is embedded (base64), so the file can
be mailed or attached to an issue as it is.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from catalog.records import media_key
from catalog.schema import SCORE_COLUMNS

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2rem}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem;font-size:.85rem}
.card img,.card video{width:100%;image-rendering:pixelated}
.kept{color:#18794e}.rejected{color:#c62828}
"""


def _b64(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _table(rows: list[dict], columns: list[str], floats: str = "{:.3f}") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            text = floats.format(value) if isinstance(value, float) else ("" if value is None else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def score_histograms_png(samples: list[dict], threshold: float | None = None) -> bytes:
    """One PNG: a histogram per score column (kept vs rejected stacked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for ax, col in zip(axes.flat, SCORE_COLUMNS):
        kept = [s[col] for s in samples if s[col] is not None and s["status"] == "kept"]
        rejected = [s[col] for s in samples if s[col] is not None and s["status"] != "kept"]
        if kept or rejected:
            ax.hist([kept, rejected], bins=20, range=(0, 1), stacked=True, color=["#2e7d32", "#c62828"], label=["kept", "rejected"])
        else:
            ax.text(0.5, 0.5, "no values (scorer not configured)", ha="center", va="center", transform=ax.transAxes)
        if threshold is not None and col == "score_overall":
            ax.axvline(threshold, color="k", linestyle="--", linewidth=1)
        ax.set_title(col.removeprefix("score_"))
        ax.set_xlim(0, 1)
    axes.flat[0].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _card(sample: dict, store) -> str:
    sid = sample["sample_id"]
    try:
        sheet = _b64(store.get(media_key(sid, "sheet.png")), "image/png")
        video = _b64(store.get(media_key(sid, "orbit.mp4")), "video/mp4")
        media = f'<video src="{video}" autoplay loop muted playsinline></video><img src="{sheet}" alt="contact sheet">'
    except Exception as exc:  # a missing object must not hide the rest of the report
        media = f"<p>media unavailable: {html.escape(str(exc))}</p>"
    scores = " · ".join(
        f"{c.removeprefix('score_')} {sample[c]:.2f}" for c in SCORE_COLUMNS if sample.get(c) is not None
    )
    return (
        f'<div class="card">{media}<div><b>{html.escape(sample["prompt_text"] or "")}</b> '
        f'<span class="{html.escape(sample["status"] or "")}">{html.escape(sample["status"] or "")}</span></div>'
        f"<div>{scores}</div><div><code>{sid[:12]}</code> seed {sample['seed']}</div></div>"
    )


def build_report(catalog, out_path: Path, n_examples: int = 6, threshold: float | None = None) -> Path:
    """Write the HTML report of ``catalog`` (an open ``Catalog``) to ``out_path`` and return it."""
    samples = catalog.read("SELECT * EXCLUDE (extrinsics, intrinsics, azimuths_deg) FROM samples_latest").to_pylist()
    summary = catalog.read(
        "SELECT category, n, n_kept, round(overall_mean, 3) AS overall_mean, round(consistency_mean, 3) AS consistency_mean, "
        "round(framing_mean, 3) AS framing_mean, round(prompt_color_mean, 3) AS prompt_color_mean "
        "FROM quality_summary ORDER BY n DESC LIMIT 20"
    ).to_pylist()
    runs = catalog.read("SELECT run_id, kind, status, started_at, finished_at, metrics FROM runs ORDER BY started_at").to_pylist()
    scored = sorted((s for s in samples if s["score_overall"] is not None), key=lambda s: s["score_overall"])
    best = scored[::-1][:n_examples]
    worst = scored[: max(0, min(n_examples, len(scored) - len(best)))]  # never repeat a best sample
    n_kept = sum(s["status"] == "kept" for s in samples)

    run_rows = []
    for run in runs:
        metrics = json.loads(run["metrics"]) if isinstance(run["metrics"], str) else (run["metrics"] or {})
        run_rows.append({
            "run": (run["run_id"] or "")[:12], "kind": run["kind"], "status": run["status"],
            **{k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        })
    run_cols = list(dict.fromkeys(k for r in run_rows for k in r)) if run_rows else []

    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>vf3d catalog report</title><style>{_CSS}</style></head><body>",
        "<h1>vf3d catalog report</h1>",
        f"<p class='sub'>{len(samples)} samples · {n_kept} kept · {len(samples) - n_kept} rejected"
        f" · accept rate {n_kept / max(1, len(samples)):.0%} · snapshot {catalog.current_snapshot()}</p>",
        "<h2>Score distributions</h2>",
        f"<img src='{_b64(score_histograms_png(samples, threshold), 'image/png')}' alt='score histograms'>",
        "<h2>Best samples</h2><div class='grid'>" + "".join(_card(s, catalog.store) for s in best) + "</div>",
        "<h2>Worst samples</h2><div class='grid'>" + "".join(_card(s, catalog.store) for s in worst) + "</div>",
        "<h2>Quality by category</h2>",
        _table(summary, list(summary[0]) if summary else ["category"]),
        "<h2>Fleet runs</h2>",
        _table(run_rows, run_cols) if run_rows else "<p>no fleet runs recorded</p>",
        "</body></html>",
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(parts), encoding="utf-8")
    return out_path
