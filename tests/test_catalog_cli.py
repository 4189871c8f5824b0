"""`vf3d catalog ...` and `vf3d sql ...` through typer's CliRunner on a local catalog."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from catalog.ducklake import Catalog
from catalog.errors import Vf3dError
from catalog_helpers import settings_for, setup_env, synthetic_batch
from serve.cli import app

runner = CliRunner()


def text(result) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def lake(tmp_path, monkeypatch):
    setup_env(monkeypatch, tmp_path / "root")
    settings = settings_for(tmp_path / "root")
    result = runner.invoke(app, ["catalog", "init"])
    assert result.exit_code == 0, result.output
    assert "schema version 2" in text(result)
    with Catalog.open(settings) as cat:
        for b in range(3):
            cat.commit_batch(f"b{b}", synthetic_batch(b, n=20))
    return settings


def test_info_and_snapshots(lake):
    out = runner.invoke(app, ["catalog", "info"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "samples" in text(out) and "60" in text(out) and "last snapshot" in text(out)
    out = runner.invoke(app, ["catalog", "snapshots"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "batch b2: 20 samples" in text(out)


def test_compact_merges_files(lake):
    with Catalog.open(lake) as cat:
        files = {t.name: t.files for t in cat.info()["tables"]}
    assert files["samples"] == 3
    out = runner.invoke(app, ["catalog", "compact"])
    assert out.exit_code == 0, out.output
    with Catalog.open(lake) as cat:
        after = {t.name: t for t in cat.info()["tables"]}
        assert after["samples"].files == 1 and after["samples"].rows == 60


def test_gc_dry_run_then_real(lake):
    with Catalog.open(lake) as cat:
        with pytest.raises(RuntimeError):
            cat.commit_batch("doomed", synthetic_batch(7, n=4), _fault=lambda: (_ for _ in ()).throw(RuntimeError("x")))
    out = runner.invoke(app, ["catalog", "gc", "--grace", "0", "--dry-run"])
    assert out.exit_code == 0 and "would remove 12 orphan objects" in text(out)
    out = runner.invoke(app, ["catalog", "gc", "--grace", "0"])
    assert "removed 12 orphan objects" in text(out)
    out = runner.invoke(app, ["catalog", "gc", "--grace", "0"])
    assert "removed 0 orphan objects" in text(out)


def test_sql_formats(lake, tmp_path):
    q = "SELECT category, count(*) AS n FROM samples GROUP BY category ORDER BY category"
    out = runner.invoke(app, ["sql", q, "--format", "csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sum(int(r["n"]) for r in rows) == 60
    out = runner.invoke(app, ["sql", "SELECT sample_id, azimuths_deg FROM samples ORDER BY sample_id", "-f", "json", "--limit", "5"])
    data = json.loads(out.stdout)
    assert len(data) == 5 and data[0]["azimuths_deg"] == [0.0, 90.0, 180.0, 270.0]
    assert "cut at 5 rows" in out.stderr
    target = tmp_path / "r.parquet"
    out = runner.invoke(app, ["sql", "SELECT * FROM samples", "-f", "parquet", "-o", str(target)])
    assert out.exit_code == 0, out.output
    import pyarrow.parquet as pq

    assert pq.read_table(target).num_rows == 60
    out = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM samples", "--snapshot", "3", "-f", "json"])
    assert json.loads(out.stdout) == [{"n": 20}]
    out = runner.invoke(app, ["sql", "SELECT category, n, overall_p50 FROM quality_summary"])
    assert out.exit_code == 0 and "overall_p50" in text(out)


def test_sql_refusal_is_a_vf3d_error(lake):
    out = runner.invoke(app, ["sql", "DROP TABLE samples"])
    assert out.exit_code != 0 and isinstance(out.exception, Vf3dError)
    assert "DROP statements are not allowed" in str(out.exception)
    out = runner.invoke(app, ["sql", "SELECT 1", "-f", "parquet"])
    assert isinstance(out.exception, Vf3dError) and "-o" in str(out.exception)


def test_main_prints_one_line(lake, capsys, monkeypatch):
    import sys

    from serve.cli import main

    monkeypatch.setattr(sys, "argv", ["vf3d", "sql", "DELETE FROM samples"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "DELETE statements are not allowed" in err.replace("\n", " ") and "Traceback" not in err
