"""DuckDB connections with vf3d's extensions loaded offline.

The extensions (httpfs, ducklake, sqlite, postgres) ship as the ``duckdb-extension-*`` 1.5.5
wheels, each holding ``extensions/v<ver>/<name>.duckdb_extension``. ``LOAD '<path>'`` loads
them without the network. DuckDB derives an extension's entry point from its file name, so
sqlite and postgres are copied into a cache dir as ``sqlite_scanner`` / ``postgres_scanner``
first. Where a wheel is absent we fall back to ``INSTALL``/``LOAD`` by name.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path

from catalog.errors import Vf3dError

# wheel package suffix -> the name DuckDB knows the extension by
EXTENSIONS = {"httpfs": "httpfs", "ducklake": "ducklake", "sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}

_lock = threading.Lock()
_paths: dict[str, str | None] = {}


class ExtensionError(Vf3dError):
    """A DuckDB extension could not be loaded."""


def _cache_dir() -> Path:
    base = os.environ.get("VF3D_DUCKDB_EXT_CACHE") or os.path.join(tempfile.gettempdir(), f"vf3d-duckdb-ext-{os.getuid()}")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def extension_path(pkg: str) -> str | None:
    """Absolute path of the wheel-shipped extension ``pkg`` (under its DuckDB name), or None."""
    with _lock:
        if pkg in _paths:
            return _paths[pkg]
        _paths[pkg] = _find(pkg)
        return _paths[pkg]


def _find(pkg: str) -> str | None:
    import duckdb

    spec = importlib.util.find_spec(f"duckdb_extension_{pkg}")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
    src = root / f"{pkg}.duckdb_extension"
    if not src.exists():
        return None
    name = EXTENSIONS[pkg]
    if name == pkg:
        return str(src)
    dst = _cache_dir() / f"{name}.duckdb_extension"
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        tmp = dst.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)  # atomic: concurrent processes never see a half-copied file
    return str(dst)


def load_extensions(conn, names=("httpfs", "ducklake", "sqlite", "postgres")) -> None:
    """LOAD each extension into ``conn``: from its wheel when installed, else by name."""
    for pkg in names:
        path = extension_path(pkg)
        try:
            if path:
                conn.execute(f"LOAD '{path}'")
            else:
                conn.execute(f"INSTALL {EXTENSIONS[pkg]}")
                conn.execute(f"LOAD {EXTENSIONS[pkg]}")
        except Exception as exc:  # duckdb.Error subclasses
            raise ExtensionError(
                f"cannot load the DuckDB extension {pkg!r} ({exc}); install the wheel "
                f"`pip install duckdb-extension-{pkg}==<duckdb version>` or allow INSTALL {EXTENSIONS[pkg]}"
            ) from None


def connect(extensions=("httpfs", "ducklake", "sqlite", "postgres"), **config):
    """A fresh in-memory DuckDB connection with ``extensions`` loaded (no autoinstall from the web)."""
    import duckdb

    cfg = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    cfg.update(config)
    conn = duckdb.connect(":memory:", config=cfg)
    load_extensions(conn, extensions)
    return conn


def s3_secret_sql(settings, scope: str | None = None, name: str = "vf3d_s3") -> str:
    """``CREATE SECRET`` for the settings' S3 server, limited to ``scope`` (an ``s3://`` prefix)."""
    s3 = settings.s3

    def q(v) -> str:
        return str(v).replace("'", "''")

    opts = [
        "TYPE s3",
        f"KEY_ID '{q(s3.access_key.get_secret_value())}'",
        f"SECRET '{q(s3.secret_key.get_secret_value())}'",
        f"ENDPOINT '{q(s3.endpoint)}'",
        f"REGION '{q(s3.region)}'",
        "URL_STYLE 'path'",
        f"USE_SSL {'true' if s3.secure else 'false'}",
    ]
    if scope:
        opts.append(f"SCOPE '{q(scope)}'")
    return f"CREATE OR REPLACE SECRET {name} ({', '.join(opts)})"


def extensions_for(settings) -> tuple[str, ...]:
    """The extensions a catalog connection for ``settings`` needs (fewer loads, faster connects)."""
    dsn = settings.catalog.metadata_dsn
    meta = "postgres" if dsn.startswith(("postgresql://", "postgres://")) else "sqlite"
    return ("ducklake", meta) + (("httpfs",) if settings.uses_s3 else ())
