"""Shared fixtures: isolated settings, a live SeaweedFS S3 server, fresh Postgres databases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import services  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the developer's vf3d.toml or VF3D_* variables, nor touches the network."""
    import os

    for key in list(os.environ):
        if key.startswith("VF3D_") and key != "VF3D_TEST_PG_DSN":
            monkeypatch.delenv(key)
    monkeypatch.setenv("VF3D_CONFIG", str(tmp_path / "absent-vf3d.toml"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A live SeaweedFS S3 server on free loopback ports for the whole session."""
    server = services.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def pg_dsn():
    """A fresh Postgres database on the machine's server, dropped after the test."""
    dsn = services.create_pg_database()
    yield dsn
    services.drop_pg_database(dsn)
