"""The HTTP API (serve/api.py) over a small real local catalog: DuckLake + local object store + SQLite queue."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from catalog.ducklake import Catalog
from catalog.media import sample_media
from catalog.records import SampleRecord, sample_id
from catalog.settings import load_settings
from serve.api import create_app

V = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    settings = load_settings(root=root)
    rng = np.random.default_rng(0)
    extr = np.tile(np.eye(4, dtype=np.float32), (V, 1, 1))
    intr = np.tile(np.eye(3, dtype=np.float32), (V, 1, 1))
    records = []
    for i in range(3):
        frames = rng.integers(0, 256, size=(V, 16, 16, 3), dtype=np.uint8)
        sid = sample_id(f"p{i}", 0, i, "ckpt-api")
        records.append(SampleRecord(
            sample_id=sid, prompt_id=f"p{i}", prompt_text=f"a red thing {i}", category="thing", n_views=V,
            resolution=16, elevation_deg=20.0, azimuths_deg=[90.0 * v for v in range(V)], radius=2.0, fov_deg=40.0,
            extrinsics=extr, intrinsics=intr, checkpoint_id="ckpt-api", seed=i, sampler="euler", steps=4,
            guidance_scale=3.0, score_overall=0.5, scorer_version="test", media=sample_media(frames, extr, intr),
        ))
    with Catalog.open(settings, create_bucket=True) as cat:
        cat.commit_batch("api-batch-1", records)
    client = TestClient(create_app(settings))
    return client, records


def _count(client) -> int:
    r = client.post("/sql", json={"sql": "SELECT count(*) AS n FROM samples"})
    assert r.status_code == 200, r.text
    return r.json()["rows"][0][0]


def test_health(setup):
    client, _ = setup
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert isinstance(body["schema_version"], int) and body["schema_version"] >= 1
    assert isinstance(body["snapshot"], int)


def test_sql_select_and_json_safe_values(setup):
    client, records = setup
    assert _count(client) == 3
    r = client.post("/sql", json={"sql": "SELECT sample_id, created_at, azimuths_deg FROM samples_latest ORDER BY sample_id",
                                  "limit": 2})
    body = r.json()
    assert body["columns"] == ["sample_id", "created_at", "azimuths_deg"]
    assert len(body["rows"]) == 2 and body["truncated"] is True
    assert isinstance(body["rows"][0][1], str) and "T" in body["rows"][0][1]  # datetime -> isoformat
    assert body["rows"][0][2] == [0.0, 90.0, 180.0, 270.0]
    assert body["rows"][0][0] == min(r.sample_id for r in records)


@pytest.mark.parametrize("statement", ["DROP TABLE samples", "SELECT 1; DROP TABLE samples",
                                       "DELETE FROM samples", "ATTACH ':memory:' AS x"])
def test_sql_refuses_writes(setup, statement):
    client, _ = setup
    r = client.post("/sql", json={"sql": statement})
    assert r.status_code == 400
    assert "refused" in r.json()["error"]
    assert _count(client) == 3


def test_sql_syntax_error_is_400(setup):
    client, _ = setup
    r = client.post("/sql", json={"sql": "SELEC nonsense"})
    assert r.status_code == 400 and r.json()["error"]


def test_sample_fetch(setup):
    client, records = setup
    sid = records[1].sample_id
    r = client.get(f"/samples/{sid}")
    assert r.status_code == 200
    body = r.json()
    assert body["sample_id"] == sid and body["prompt_text"] == "a red thing 1" and body["n_views"] == V
    assert "extrinsics" not in body and "intrinsics" not in body
    assert client.get(f"/samples/{'0' * 64}").status_code == 404
    for bad in ["ZZ", "..%2F..%2Fetc%2Fpasswd", sid.upper(), sid[:-1] + "'", sid + "00"]:
        r = client.get(f"/samples/{bad}")
        assert r.status_code in (400, 404), bad  # an encoded '/' may not route at all
        assert r.status_code != 200
    assert client.get("/samples/ZZ").status_code == 400
    assert client.get(f"/samples/{sid.upper()}").status_code == 400


def test_media_stream(setup):
    client, records = setup
    rec = records[2]
    for name, ctype in [("views.npz", "application/octet-stream"), ("orbit.mp4", "video/mp4"), ("sheet.png", "image/png")]:
        r = client.get(f"/samples/{rec.sample_id}/media/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith(ctype)
        assert r.content == rec.media[name]
    assert client.get(f"/samples/{rec.sample_id}/media/meta.json").status_code == 404
    assert client.get(f"/samples/{rec.sample_id}/media/..%2F..%2Fcatalog.sqlite").status_code == 404
    assert client.get(f"/samples/{'1' * 64}/media/sheet.png").status_code == 404
    assert client.get("/samples/ZZ/media/sheet.png").status_code == 400


def test_queue_stats(setup):
    client, _ = setup
    r = client.get("/queue/stats")
    assert r.status_code == 200
    body = r.json()
    assert {"pending", "leased", "done", "dead"} <= set(body)
    assert all(isinstance(v, int) for v in body.values())


def test_cli_registers_api():
    from typer.testing import CliRunner

    from serve.cli import app

    out = CliRunner().invoke(app, ["api", "--help"])
    assert out.exit_code == 0 and "--port" in out.output and "--host" in out.output
