"""What every benchmark shares: the repo on sys.path, peak memory, and where results go."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux getrusage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(results: dict, out: Path) -> Path:
    """Write a benchmark's results as JSON (bench/results/ is git-ignored)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return out


# ----------------------------------------------------------------------------- CPU by process
_GROUPS = (  # (group, substrings of the command line), first match wins
    ("generator replicas", ("MultiViewGenerator",)),
    ("dispatcher", ("FleetDispatcher",)),
    ("serve controller", ("ServeController",)),
    ("ray system", ("gcs_server", "raylet", "log_monitor", "dashboard", "DashboardAgent", "runtime_env", "ray::IDLE",
                    "ray.util.client")),
    ("postgres", ("postgres",)),
)


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every process now, by pid, with its command line (Linux /proc)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out[int(entry)] = (cmd, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_group(before: dict, after: dict, seconds: float, own: dict[str, set[int]] | None = None) -> dict[str, float]:
    """Cores each group of processes used between two :func:`cpu_seconds` snapshots.

    ``own`` names groups by pid (the benchmark's own processes); the rest are grouped by command
    line (generator replicas, dispatcher, Serve controller, Ray system, Postgres) or ``other``.
    """
    own = own or {}
    cores: dict[str, float] = {}
    for pid, (cmd, t1) in after.items():
        used = t1 - before.get(pid, (cmd, 0.0))[1]
        if used <= 0:
            continue
        group = next((g for g, pids in own.items() if pid in pids), None)
        group = group or next((g for g, keys in _GROUPS if any(k in cmd for k in keys)), "other")
        cores[group] = cores.get(group, 0.0) + used / seconds
    return {g: round(c, 3) for g, c in sorted(cores.items(), key=lambda kv: -kv[1])}
