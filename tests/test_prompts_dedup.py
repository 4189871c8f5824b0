"""Near-duplicate removal with the real all-MiniLM-L6-v2: variants and paraphrases collapse at the
default threshold, different objects survive, the survivor is deterministic, and dedup works
across runs through the stored embeddings. Also: the Ray Data path gives identical results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catalog.settings import load_settings
from engine.prompts.dedup import DEFAULT_THRESHOLD, EmbeddingStore, embed_texts, near_dedup
from engine.prompts.filter import PromptFilter
from engine.prompts.ingest import check_source
from engine.prompts.normalize import normalize_text, prompt_id
from engine.prompts.pipeline import ingest, run_local, run_ray


def dedup(captions, **kw):
    flt = PromptFilter()
    texts = [normalize_text(c) for c in captions]
    res = flt.classify(texts)
    assert all(r.status == "kept" for r in res), [(c, r.reason) for c, r in zip(captions, res)]
    ids = [prompt_id(t) for t in texts]
    emb = embed_texts([r.core for r in res])
    return ids, near_dedup(ids, [r.category for r in res], emb, **kw)


def test_variants_and_paraphrases_collapse_different_objects_survive():
    captions = [
        "a red chair",            # 0 survivor
        "A Red, Chair?",           # 1 case/punctuation variant -> same id
        "  a   red chair. ",      # 2 whitespace variant -> same id
        "a chair that is red",    # 3 paraphrase
        "a DSLR photo of a red chair",  # 4 framing only
        "a red table",            # 5 different object
        "a blue chair",           # 6 different colour: a different object to generate
        "a ceramic teapot",       # 7
        "a teapot made of ceramic",  # 8 paraphrase of 7
        "an old brass telescope",  # 9
        "a vintage brass telescope",  # 10 paraphrase of 9
    ]
    ids, res = dedup(captions)
    assert res.exact[1] and res.exact[2] and res.duplicate_of[1] == ids[0]
    assert res.duplicate_of[3] == ids[0] and not res.exact[3]
    assert res.duplicate_of[4] == ids[0]
    assert res.duplicate_of[8] == ids[7] and res.duplicate_of[10] == ids[9]
    survivors = [c for c, d in zip(captions, res.duplicate_of) if not d]
    assert survivors == ["a red chair", "a red table", "a blue chair", "a ceramic teapot", "an old brass telescope"]


def test_survivor_is_deterministic_whatever_the_input_order():
    caps = ["a chair that is red", "a red chair", "a DSLR photo of a red chair"]
    ids, res = dedup(caps, order=[2, 0, 1])  # survivor = smallest order key, not the input position
    assert [bool(d) for d in res.duplicate_of] == [True, False, True]
    ids2, res2 = dedup(caps[::-1], order=[1, 0, 2])
    assert {ids2[i] for i, d in enumerate(res2.duplicate_of) if not d} == {ids[1]}


def test_blocks_and_chunks_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 384)).astype(np.float32)
    emb = np.concatenate([base, base[:15] + 0.05 * rng.normal(size=(15, 384)).astype(np.float32)])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [f"id{i:03d}" for i in range(len(emb))]
    cats = ["a" if i % 2 else "b" for i in range(40)] + ["a" if i % 2 else "b" for i in range(15)]
    small = near_dedup(ids, cats, emb, chunk=4)
    big = near_dedup(ids, cats, emb, chunk=10_000)
    assert small.duplicate_of == big.duplicate_of
    assert sum(bool(d) for d in big.duplicate_of) == 15
    assert all(big.duplicate_of[40 + i] == ids[i] for i in range(15))


def test_dedup_across_runs_uses_stored_embeddings(tmp_path):
    settings = load_settings(root=tmp_path / "root")
    store = EmbeddingStore.from_settings(settings)
    rows: list[dict] = []
    first = tmp_path / "one.txt"
    first.write_text("a red chair\na ceramic teapot\n")
    s1 = ingest([first], sink=rows.extend, embeddings=store)
    assert s1.kept == 2
    second = tmp_path / "two.jsonl"
    second.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["A red chair.", "a chair that is red", "a red table"]))
    rows.clear()
    s2 = ingest([second], sink=rows.extend, embeddings=store)
    assert (s2.duplicates_exact, s2.duplicates_near, s2.kept) == (1, 1, 1)
    by_text = {r["text"]: r for r in rows}
    assert by_text["a chair that is red"]["duplicate_of"] == prompt_id("a red chair")
    assert by_text["a red table"]["status"] == "kept"


@pytest.mark.slow
def test_ray_data_path_matches_local_path(tmp_path):
    import ray

    path = tmp_path / "mix.jsonl"
    lines = [json.dumps({"caption": c}) for c in [
        "a red wooden chair", "a sunset over the ocean", "Buy now! 50% off", "a ceramic teapot", "a chair that is red",
        "a DSLR photo of a corgi wearing a top hat", "a man riding a horse", "a neon sign that says OPEN",
    ]] + ["{malformed"]
    path.write_text("\n".join(lines) + "\n")
    path2 = tmp_path / "more.txt"
    path2.write_text("a blue glass vase\nlove is all you need\na red chair\n")
    srcs = [check_source(path), check_source(path2)]
    local = list(run_local(srcs, ["a", "b"], chunk=4))
    pooled = list(run_local(srcs, ["a", "b"], chunk=4, n_process=2))  # spaCy in 2 worker processes
    try:
        remote = list(run_ray(srcs, ["a", "b"], chunk=4))
    finally:
        ray.shutdown()

    def col(batches, k):
        return [x.item() if hasattr(x, "item") else x for b in batches for x in list(b[k])]

    for key in ("prompt_id", "text", "status", "reason", "category", "attributes", "source", "source_line", "filter_version"):
        assert col(local, key) == col(remote, key), key
        assert col(local, key) == col(pooled, key), key
    assert col(local, "reason").count("bad:malformed_json") == 1
    np.testing.assert_allclose(np.concatenate([b["embedding"] for b in local]),
                               np.concatenate([b["embedding"] for b in remote]), atol=1e-5)
    assert DEFAULT_THRESHOLD == 0.9
