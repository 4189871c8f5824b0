"""``vf3d mv``: fine-tune the multi-view video model (the paper's recipe) and rebuild the default."""

from __future__ import annotations

import json
import shutil
from enum import Enum
from pathlib import Path

import typer

from serve.cli.console import console

app = typer.Typer(help="The multi-view video model: fine-tune, bootstrap the embedded default, inspect checkpoints.",
                  no_args_is_help=True)


class Freeze(str, Enum):
    spatial = "spatial"
    none = "none"
    temporal = "temporal"


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _cache_dir() -> Path:
    from catalog.settings import load_settings

    return Path(load_settings().root) / "cache" / "mvgen"


@app.command("finetune")
def finetune(
    assets: str = typer.Option(..., "--assets", help="N procedural assets, a folder of meshes, or an orbits .npz cache"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder: checkpoint/, train_state.pt, loss.png"),
    freeze: Freeze = typer.Option(Freeze.spatial, "--freeze", help="'spatial' trains temporal layers only (the paper)"),
    steps: int = typer.Option(500, "--steps", min=1),
    init: str = typer.Option("default", "--init", help="checkpoint to start from: 'default', a folder, or 'scratch'"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/train_state.pt"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    lr: float = typer.Option(5e-4, "--lr"),
    frames: int | None = typer.Option(None, "--frames", min=1, help="views per sample (1 = single-view stage); default all"),
    ema_decay: float = typer.Option(0.9999, "--ema-decay", min=0.0, max=1.0, help="EMA ceiling (warm-up 1-(1+step)^-2/3); 0 disables EMA"),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no | bf16 | fp16 (autocast, GPU)"),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing/--no-gradient-checkpointing"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(2, "--threads", min=1, help="torch CPU threads"),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda | auto (default: settings)"),
) -> None:
    """Fine-tune a checkpoint on orbit renders; with --freeze spatial only temporal layers change."""
    import torch

    from engine.mvgen import MultiViewConfig, MultiViewVideoPipeline
    from engine.mvgen.data import load_or_render
    from engine.mvgen.train import FinetuneConfig
    from engine.mvgen.train import finetune as run_finetune

    torch.set_num_threads(threads)
    state_ckpt = out / "checkpoint"
    if resume and (out / "train_state.pt").is_file():
        pipe = MultiViewVideoPipeline.from_pretrained(state_ckpt, device=device)
    elif init == "scratch":
        pipe = MultiViewVideoPipeline.from_config(MultiViewConfig(patch_size=2), seed=seed, device=device or "cpu")
    else:
        pipe = MultiViewVideoPipeline.from_pretrained(init, device=device)
    cfg = FinetuneConfig(steps=steps, batch_size=batch_size, lr=lr, freeze=freeze.value, frames=frames,
                         ema_decay=ema_decay or None, mixed_precision=mixed_precision,
                         gradient_checkpointing=gradient_checkpointing, seed=seed, num_threads=threads)
    with _progress() as bar:
        task = bar.add_task("render", total=None, loss="")
        data = load_or_render(assets, _cache_dir(), pipe.config.num_views, pipe.config.resolution, seed,
                              progress=lambda i, n: bar.update(task, completed=i, total=n))
        bar.update(task, description=f"train ({freeze.value} frozen)", completed=0, total=steps)
        result = run_finetune(pipe, data, cfg, out, resume=resume,
                              callback=lambda s, n, loss: bar.update(task, completed=s, loss=f"loss {loss:.4f}"))
    console.print(
        f"[green]fine-tuned[/] {result.steps} steps in {result.seconds:.0f} s on {len(data)} orbits "
        f"({result.trainable_params:,} trainable, {result.frozen_params:,} frozen) → {result.checkpoint} "
        f"[dim]({pipe.checkpoint_id}; loss curve {out / 'loss.png'})[/]"
    )


@app.command("bootstrap")
def bootstrap(
    out: Path = typer.Option(Path(".vf3d/mvgen-bootstrap"), "--out", "-o", help="working folder (stages, losses, report)"),
    assets: int = typer.Option(3000, "--assets", min=8, help="procedural assets to render (held-out captions skipped)"),
    stage1_steps: int = typer.Option(1000, "--stage1-steps", min=1, help="single-view steps (image prior stand-in)"),
    stage2_steps: int = typer.Option(350, "--stage2-steps", min=1, help="orbit steps, spatial frozen (the paper)"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(2, "--threads", min=1, help="torch CPU threads (1 is faster on a busy machine)"),
    resume: bool = typer.Option(False, "--resume", help="skip finished stages, resume the running one"),
    install: bool = typer.Option(False, "--install", help="copy the result into engine/mvgen/default (the shipped default)"),
) -> None:
    """The whole recipe that produced the embedded default, with fixed seeds."""
    from engine.mvgen import default_checkpoint_path
    from engine.mvgen.train import BootstrapConfig
    from engine.mvgen.train import bootstrap as run_bootstrap

    cfg = BootstrapConfig(assets=assets, stage1_steps=stage1_steps, stage2_steps=stage2_steps, seed=seed, num_threads=threads)
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, i: int, n: int, loss: float | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=n, loss="")
            bar.update(tasks[stage], completed=i, total=n, loss="" if loss is None else f"loss {loss:.4f}")

        pipe, report = run_bootstrap(out, cfg, _cache_dir(), progress=progress, resume=resume)
    if install:
        dest = default_checkpoint_path()
        for sub in ("unet", "scheduler"):
            shutil.rmtree(dest / sub, ignore_errors=True)
        pipe.save_pretrained(dest)
        (dest / "bootstrap_report.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"[green]bootstrapped[/] {pipe.checkpoint_id} in {report['total_seconds']:.0f} s → "
                  f"{out / 'checkpoint'}" + (f" (installed into {default_checkpoint_path()})" if install else ""))


@app.command("info")
def info(checkpoint: str = typer.Argument("default", help="checkpoint folder or 'default'")) -> None:
    """Show a checkpoint's id, configuration and parameter counts."""
    from rich.table import Table

    from engine.mvgen import MultiViewVideoPipeline
    from engine.mvgen.model import parameter_counts

    pipe = MultiViewVideoPipeline.from_pretrained(checkpoint, device="cpu")
    table = Table(show_header=False)
    table.add_row("checkpoint_id", pipe.checkpoint_id)
    for key, value in pipe.config.to_dict().items():
        table.add_row(key, str(value))
    for key, value in parameter_counts(pipe.unet).items():
        table.add_row(f"params ({key})", f"{value:,}")
    table.add_row("scheduler", type(pipe.scheduler).__name__)
    table.add_row("vae", type(pipe.vae).__name__ if pipe.vae is not None else "none (pixel space)")
    console.print(table)
