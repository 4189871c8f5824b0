"""Settings: env beats vf3d.toml beats defaults; secrets never printed; bad values name the setting."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from catalog.errors import SettingsError
from catalog.settings import load_settings
from serve.cli import app


def test_defaults_need_no_services():
    s = load_settings()
    assert str(s.root) == ".vf3d" and not s.uses_s3 and s.catalog.metadata_dsn == ""


def test_env_overrides_toml(tmp_path, monkeypatch):
    cfg = tmp_path / "vf3d.toml"
    cfg.write_text('root = "/data/vf3d"\n[s3]\nendpoint = "minio:9000"\nbucket = "from-toml"\n[sql]\nrow_limit = 5\n')
    monkeypatch.setenv("VF3D_CONFIG", str(cfg))
    monkeypatch.setenv("VF3D_S3__BUCKET", "from-env")
    s = load_settings()
    assert s.s3.endpoint == "minio:9000" and s.s3.bucket == "from-env" and s.sql.row_limit == 5
    assert str(s.root) == "/data/vf3d" and s.uses_s3


def test_bad_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("VF3D_SQL__ROW_LIMIT", "lots")
    with pytest.raises(SettingsError, match="VF3D_SQL__ROW_LIMIT"):
        load_settings()


def test_config_command_masks_secrets(monkeypatch):
    monkeypatch.setenv("VF3D_S3__SECRET_KEY", "hunter2-secret")
    monkeypatch.setenv("VF3D_CATALOG__METADATA_DSN", "postgresql://vf3d:pgpass@db:5432/lake")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    assert "hunter2-secret" not in result.output and "pgpass" not in result.output
    data = json.loads(result.output)
    assert data["s3"]["secret_key"] == "***"
    assert data["catalog"]["metadata_dsn"] == "postgresql://vf3d:***@db:5432/lake"


def test_cli_bad_setting_is_one_line(monkeypatch):
    import subprocess
    import sys

    env = {"VF3D_COMPUTE__DEVICE": "tpu", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", "from serve.cli import main; main()", "config"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "VF3D_COMPUTE__DEVICE" in proc.stderr and "Traceback" not in proc.stderr


def test_reference_lists_every_setting_with_a_meaning():
    from catalog.settings import Settings

    result = CliRunner().invoke(app, ["config", "--reference"])
    assert result.exit_code == 0, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("| `VF3D_")]
    n_fields = sum(
        len(f.annotation.model_fields) if hasattr(f.annotation, "model_fields") else 1 for f in Settings.model_fields.values()
    )
    assert len(lines) == n_fields
    assert all(not l.rstrip().endswith("|  |") for l in lines), "every setting needs a description"
    assert any("VF3D_S3__ENDPOINT" in l for l in lines)
