"""``vf3d fleet``: start, scale, watch and stop the generator fleet."""

from __future__ import annotations

import json

import typer

from serve.cli.console import console

app = typer.Typer(help="Run the generator fleet: Ray Serve replicas turning queued prompts into catalogued samples.",
                  no_args_is_help=True)

ADDRESS_HELP = "Ray to use: empty = a local Ray started (or reused) here; 'auto'; host:port; ray://host:10001"


def _settings(**fleet):
    import logging

    from catalog.settings import load_settings

    logging.getLogger("ray.serve").setLevel(logging.WARNING)

    base = load_settings()
    if not fleet:
        return base
    merged = base.fleet.model_dump()
    merged.update({k: v for k, v in fleet.items() if v is not None})
    return load_settings(fleet=merged)


def _parse_autoscale(spec: str) -> tuple[int, int]:
    from catalog.errors import SettingsError

    try:
        lo, hi = (int(x) for x in spec.split(":", 1))
    except ValueError:
        raise SettingsError(f"--autoscale wants MIN:MAX replicas (e.g. 0:8), got {spec!r}") from None
    if lo < 0 or hi < max(lo, 1):
        raise SettingsError(f"--autoscale MIN:MAX needs 0 <= MIN <= MAX and MAX >= 1, got {spec!r}")
    return lo, hi


@app.command()
def up(
    replicas: int | None = typer.Option(None, "--replicas", "-n", min=0, help="fixed number of generator replicas"),
    autoscale: str | None = typer.Option(None, "--autoscale", help="MIN:MAX replicas, scaled on queue depth"),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    model: str | None = typer.Option(None, "--model", help="'pipeline', 'standin' or module:factory"),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="generator checkpoint (default: the embedded one)"),
    timeout: float = typer.Option(600.0, help="seconds to wait for the replicas to load"),
) -> None:
    """Deploy the fleet (generator replicas + dispatcher) and start consuming the prompt queue."""
    from catalog.errors import SettingsError
    from serve.fleet import ops

    if replicas is not None and autoscale is not None:
        raise SettingsError("give either --replicas N or --autoscale MIN:MAX, not both")
    fleet: dict = {"model": model, "checkpoint": checkpoint}
    if autoscale is not None:
        lo, hi = _parse_autoscale(autoscale)
        fleet.update(autoscale=True, min_replicas=lo, max_replicas=hi)
    elif replicas is not None:
        fleet.update(autoscale=False, replicas=replicas)
    settings = _settings(**fleet)
    with console.status("connecting to Ray…"):
        used = ops.connect(settings, address)
    with console.status(f"deploying {settings.fleet.app_name} (loading the model on each replica)…"):
        run_id = ops.up(settings, timeout_s=timeout)
    scaling = (
        f"autoscale {settings.fleet.min_replicas}:{settings.fleet.max_replicas}"
        if settings.fleet.autoscale else f"{settings.fleet.replicas} replicas"
    )
    console.print(f"[green]fleet up[/]: run [bold]{run_id}[/] on Ray {used or 'local'} ({scaling}, model {settings.fleet.model})")
    console.print("watch it with [bold]vf3d fleet status[/]; stop it with [bold]vf3d fleet down --drain[/]")


@app.command()
def scale(
    replicas: int = typer.Argument(..., min=0, help="generator replicas to run (autoscaling is turned off)"),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    timeout: float = typer.Option(600.0, help="seconds to wait for the new replica count"),
) -> None:
    """Set the number of generator replicas on the running fleet (nothing else restarts)."""
    from serve.fleet import ops

    settings = _settings()
    ops.connect(settings, address, start=False)
    with console.status(f"scaling to {replicas} replicas…"):
        ops.scale(settings, replicas, timeout_s=timeout)
    console.print(f"[green]fleet scaled[/] to {replicas} replicas")


@app.command()
def status(
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the raw status as JSON"),
) -> None:
    """Replicas and their state, queue depth by state, samples/s (last minute), accept rate, failures."""
    from rich.table import Table

    from serve.fleet import ops

    settings = _settings()
    ops.connect(settings, address, start=False)
    st = ops.status(settings)
    if as_json:
        console.print_json(json.dumps(st, default=str))
        return
    if not st.get("deployed"):
        console.print(f"fleet [bold]{st['app']}[/] is not deployed; start it with [bold]vf3d fleet up[/]")
    else:
        table = Table(title=f"fleet {st['app']} — {st.get('app_status', '?')}")
        table.add_column("deployment")
        table.add_column("status")
        table.add_column("replicas")
        for name, dep in st.get("deployments", {}).items():
            reps = ", ".join(f"{k.lower()} {v}" for k, v in sorted(dep["replicas"].items())) or "none"
            table.add_row(name, dep["status"], reps)
        console.print(table)
        d = st.get("dispatcher") or {}
        if "error" in d and "totals" not in d:
            console.print(f"[red]dispatcher unreachable[/]: {d['error']}")
        else:
            tot = d.get("totals", {})
            rate = d.get("accept_rate")
            cost = d.get("cost_replica_s_per_kept")
            run = Table(title=f"run {d.get('run_id', '?')} — {d.get('phase', '?')}{' (draining)' if d.get('draining') else ''}",
                        show_header=False)
            run.add_column("what")
            run.add_column("value", justify="right")
            for label, value in (
                ("samples/s (last minute)", f"{d.get('samples_per_s_1m', 0):.2f}"),
                ("samples committed", tot.get("samples_committed", 0)),
                ("kept / rejected", f"{tot.get('samples_kept', 0)} / {tot.get('samples_rejected', 0)}"),
                ("accept rate", "-" if rate is None else f"{rate:.1%}"),
                ("failed prompts (nacked)", tot.get("prompts_nacked", 0)),
                ("request retries", tot.get("retries", 0)),
                ("commit failures", tot.get("commit_failures", 0)),
                ("in flight", d.get("in_flight", 0)),
                ("replica-seconds per kept sample", "-" if cost is None else f"{cost:.2f}"),
            ):
                run.add_row(label, str(value))
            console.print(run)
            for err in (d.get("last_errors") or [])[-5:]:
                console.print(f"[yellow]error[/] {err.get('what')}: {err.get('error')}", highlight=False)
    for m in st.get("metrics") or []:
        if "error" in m:
            console.print(f"[yellow]metrics endpoints unknown[/]: {m['error']}", highlight=False)
        else:
            console.print(f"Prometheus metrics ({'head' if m['head'] else 'worker'} {m['node']}): [bold]{m['url']}[/]",
                          highlight=False)
    q = st.get("queue") or {}
    if "error" in q:
        console.print(f"[red]queue unreachable[/]: {q['error']}")
    else:
        qt = Table(title="prompt queue")
        for state in q:
            qt.add_column(state, justify="right")
        qt.add_row(*(str(v) for v in q.values()))
        console.print(qt)
        for item in st.get("queue_errors") or []:
            console.print(f"[red]dead[/] {item['prompt_id']}: {item.get('last_error')}", highlight=False)


@app.command()
def down(
    drain: bool = typer.Option(True, "--drain/--no-drain", help="let in-flight samples finish and commit first"),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    keep_ray: bool = typer.Option(False, "--keep-ray", help="leave the local Ray started by `fleet up` running"),
    timeout: float = typer.Option(900.0, help="seconds to wait for the drain"),
) -> None:
    """Stop the fleet: drain (default) or stop now; uncommitted leases go back to the queue."""
    from serve.fleet import ops

    settings = _settings()
    local = ops.local_ray(settings)
    used = ops.connect(settings, address, start=False)
    with console.status("draining the fleet…" if drain else "stopping the fleet…"):
        final = ops.down(settings, drain=drain, timeout_s=timeout)
    tot = final.get("totals", {})
    console.print(
        f"[green]fleet down[/]: run {final.get('run_id', '-')} committed {tot.get('samples_committed', 0)} samples "
        f"({tot.get('samples_kept', 0)} kept), released {tot.get('prompts_released', 0)} leases"
    )
    if local is not None and used == local["address"] and not keep_ray:
        import ray

        ray.shutdown()
        if ops.stop_local_ray(settings):
            console.print("stopped the local Ray started by `vf3d fleet up`")
