"""Caption readers (every format, .gz), bad input (binary, missing column/field, malformed JSONL,
1 MB line, invalid UTF-8), and the whole ingest into a real DuckLake catalog + queue."""

from __future__ import annotations

import csv
import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.settings import load_settings
from engine.prompts.dedup import EmbeddingStore
from engine.prompts.ingest import BadInputError, check_source, iter_records
from engine.prompts.pipeline import demo_captions_path, ingest
from engine.queue import PromptQueue

CAPTIONS = ["a red wooden chair", "a ceramic teapot", "a sunset over the ocean", "Buy now! 50% off", "a blue glass vase"]


def write_all_formats(d):
    (d / "c.txt").write_text("\n".join(CAPTIONS) + "\n")
    (d / "c.jsonl").write_text("".join(json.dumps({"caption": c, "id": i}) + "\n" for i, c in enumerate(CAPTIONS)))
    (d / "c.json").write_text(json.dumps({"prompts": CAPTIONS}))
    with open(d / "c.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["url", "caption"])
        w.writerows([[f"http://x/{i}.jpg", c] for i, c in enumerate(CAPTIONS)])
    (d / "c.tsv").write_text("text\tn\n" + "".join(f"{c}\t{i}\n" for i, c in enumerate(CAPTIONS)))
    pq.write_table(pa.table({"caption": CAPTIONS, "n": list(range(5))}), d / "c.parquet", row_group_size=2)
    for name in ("c.txt", "c.jsonl", "c.csv", "c.parquet"):
        with open(d / name, "rb") as src, gzip.open(d / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    return sorted(p for p in d.iterdir())


def test_every_format_reads_the_same_captions(tmp_path):
    for path in write_all_formats(tmp_path):
        src = check_source(path)
        got = [r.text for r in iter_records(src)]
        assert got == CAPTIONS, path.name
        assert [r.line for r in iter_records(src)][:2] in ([1, 2], [2, 3]), path.name  # csv/tsv count the header


def test_file_level_problems_are_clear_errors(tmp_path):
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(BadInputError, match="looks binary"):
        check_source(tmp_path / "bin.txt")
    (tmp_path / "x.csv").write_text("url,width\nhttp://a,3\n")
    with pytest.raises(BadInputError, match=r"no caption column.*'url', 'width'.*--column"):
        check_source(tmp_path / "x.csv")
    with pytest.raises(BadInputError, match="no column 'nope'"):
        check_source(tmp_path / "x.csv", column="nope")
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(BadInputError, match="--field"):
        check_source(tmp_path / "x.jsonl")
    (tmp_path / "x.docx").write_text("x")
    with pytest.raises(BadInputError, match="unknown caption format"):
        check_source(tmp_path / "x.docx")
    with pytest.raises(BadInputError, match="no such file"):
        check_source(tmp_path / "missing.txt")
    (tmp_path / "p.parquet").write_text("not parquet")
    with pytest.raises(BadInputError, match="PAR1"):
        check_source(tmp_path / "p.parquet")
    (tmp_path / "t.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(BadInputError, match="gzip"):
        check_source(tmp_path / "t.txt.gz")


def bad_jsonl(path):
    lines = [
        json.dumps({"caption": "a brass telescope"}).encode(),
        b'{"caption": "a broken line',  # malformed JSON
        json.dumps({"other": "no caption"}).encode(),  # missing field
        json.dumps({"caption": "x" * 1_100_000}).encode(),  # a 1 MB line
        b'{"caption": "a caf\xe9 chair"}',  # invalid UTF-8 (latin-1 byte)
        json.dumps({"caption": 42}).encode(),  # not text
        json.dumps({"caption": "a green ceramic frog"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_lines_are_rejected_with_line_numbers(tmp_path):
    recs = list(iter_records(check_source(bad_jsonl(tmp_path / "bad.jsonl"))))
    assert [(r.line, r.error or r.text) for r in recs] == [
        (1, "a brass telescope"), (2, "malformed_json"), (3, "missing_field"), (4, "line_too_long"),
        (5, "invalid_utf8"), (6, "not_text"), (7, "a green ceramic frog"),
    ]


@pytest.fixture
def engine_settings(tmp_path):
    return load_settings(root=tmp_path / "root")


def test_ingest_end_to_end_into_catalog_and_queue(tmp_path, engine_settings):
    from catalog.ducklake import Catalog

    catalog = Catalog.open(engine_settings)
    queue = PromptQueue.from_settings(engine_settings)
    store = EmbeddingStore.from_settings(engine_settings)
    good = tmp_path / "good.txt"
    good.write_text("a red wooden chair\nA Red Wooden Chair!\na crowd of people at a concert\na ceramic teapot\n")
    s1 = ingest([good], sink=catalog.write_prompts, queue=queue, embeddings=store, source="web", samples_per_prompt=3, priority=5)
    assert (s1.read, s1.kept, s1.duplicates_exact, dict(s1.rejected), s1.enqueued) == (4, 2, 1, {"people": 1}, 2)
    assert queue.stats()["pending"] == 2

    # a binary file anywhere in the list: clear error before any work, nothing already enqueued lost
    (tmp_path / "bin.jsonl").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(BadInputError, match="looks binary"):
        ingest([bad_jsonl(tmp_path / "bad.jsonl"), tmp_path / "bin.jsonl"], sink=catalog.write_prompts, queue=queue, embeddings=store)
    assert queue.stats()["pending"] == 2

    # bad lines: counted per reason with file:line, good lines still land
    s2 = ingest([tmp_path / "bad.jsonl"], sink=catalog.write_prompts, queue=queue, embeddings=store, source="bad")
    assert dict(s2.bad_lines) == {"malformed_json": 1, "missing_field": 1, "line_too_long": 1, "invalid_utf8": 1, "not_text": 1}
    assert s2.read == 7 and s2.kept == 2 and s2.enqueued == 2
    assert any(e.startswith("bad:2: malformed_json") for e in s2.bad_examples)
    assert any(e.startswith("bad:5: invalid_utf8") for e in s2.bad_examples)
    assert queue.stats()["pending"] == 4
    (lease,) = [lease for lease in queue.lease(4) if lease.text == "a red wooden chair"]
    assert lease.samples_per_prompt == 3 and lease.priority == 5 and lease.category == "chair"

    rows = catalog.read(
        "SELECT text, source, source_line, status, reject_reason, category, attributes, filter_version "
        "FROM prompts ORDER BY source, source_line"
    ).to_pylist()
    assert [(r["source"], r["source_line"], r["status"]) for r in rows] == [
        ("bad", 1, "kept"), ("bad", 7, "kept"), ("web", 1, "kept"), ("web", 3, "rejected"), ("web", 4, "kept"),
    ]
    assert rows[3]["reject_reason"] == "people"
    assert json.loads(rows[2]["attributes"]) == {"colors": ["red"], "materials": ["wood"], "styles": []}
    assert rows[0]["filter_version"] == s1.filter_version
    queue.close()
    catalog.close()


def test_demo_captions_are_bundled_and_mixed():
    path = demo_captions_path()
    assert path.exists() and path.stat().st_size < 1_000_000
    caps = [json.loads(line)["caption"] for line in path.open()]
    assert len(caps) >= 3000
    assert any("DSLR" in c for c in caps) and any("stock photo" in c for c in caps)
