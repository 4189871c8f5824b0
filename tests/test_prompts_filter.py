"""The object-centric filter on a hand-labelled set of captions (tests/data/object_captions_labelled.tsv).

Prints precision/recall of "kept" and every misclassified caption (run with -s to see them).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from engine.prompts.filter import REJECT_REASONS, PromptFilter, filter_version, load_rules
from engine.prompts.normalize import normalize_text

LABELLED = Path(__file__).parent / "data" / "object_captions_labelled.tsv"


@pytest.fixture(scope="module")
def flt():
    return PromptFilter()


def test_precision_and_recall_on_labelled_captions(flt):
    rows = list(csv.DictReader(LABELLED.open(encoding="utf-8"), delimiter="\t"))
    assert len(rows) >= 400
    results = flt.classify([normalize_text(r["caption"]) for r in rows])
    tp = fp = fn = tn = 0
    wrong = []
    for row, res in zip(rows, results):
        kept, obj = res.status == "kept", row["label"] == "object"
        tp += kept and obj
        fp += kept and not obj
        fn += (not kept) and obj
        tn += (not kept) and (not obj)
        if kept != obj:
            wrong.append(f"  {'FALSE KEEP' if kept else 'FALSE REJECT':12s} [{res.reason or res.category}] ({row['kind']}) {row['caption']}")
        if res.status == "rejected":
            assert res.reason in REJECT_REASONS
        else:
            assert res.category and set(res.attributes) == {"colors", "materials", "styles"}
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"\nlabelled captions: {len(rows)} (objects {tp + fn}, not {fp + tn}); filter {flt.version}")
    print(f"precision of kept = {precision:.3f}   recall = {recall:.3f}   misclassified = {len(wrong)}")
    print("\n".join(wrong))
    assert precision >= 0.90
    assert recall >= 0.85


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("a sunset over the mountains", "scene"),
        ("a crowd of people at a concert", "people"),
        ("a dog running through a field", "action"),
        ("love is all you need", "abstract"),
        ("Buy now! 50% off all chairs", "spam"),
        ("a neon sign that says OPEN", "text_render"),
        ("a bloody knife", "blocklist"),
    ],
)
def test_each_reject_reason(flt, caption, reason):
    (res,) = flt.classify([normalize_text(caption)])
    assert (res.status, res.reason) == ("rejected", reason)


def test_category_and_attributes(flt):
    a, b, c = flt.classify(
        ["a DSLR photo of a red wooden chair", "a pair of tan leather cowboy boots", "a low poly golden goblet"]
    )
    assert (a.status, a.category) == ("kept", "chair")
    assert a.attributes == {"colors": ["red"], "materials": ["wood"], "styles": []}
    assert (b.category, b.attributes["materials"]) == ("boot", ["leather"])
    assert c.category == "goblet" and c.attributes["styles"] == ["low poly"]
    assert a.core == "a red wooden chair"  # framing stripped: what near-dup embeds


def test_rules_are_versioned_data(flt):
    rules = load_rules()
    assert filter_version(rules) == flt.version and flt.version
    assert "ner" not in flt.nlp.pipe_names  # only the components the filter needs
    assert {"tagger", "parser", "lemmatizer"} <= set(flt.nlp.pipe_names)
