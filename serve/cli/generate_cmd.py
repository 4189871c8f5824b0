"""``vf3d generate``: one prompt -> an orbit video (MP4), a contact sheet (PNG) and the views (npz)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from serve.cli.console import console


def generate(
    prompt: str = typer.Argument(..., help='what to generate, e.g. "a red mug"'),
    out: Path = typer.Option(Path("."), "--out", "-o", help="output folder (created)"),
    seed: int = typer.Option(0, "--seed", "-s"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="denoising steps (default: the checkpoint's, 20)"),
    guidance: float | None = typer.Option(None, "--guidance", help="classifier-free guidance scale (1 = off)"),
    views: int | None = typer.Option(None, "--views", "-v", min=1, max=64),
    elevation: float | None = typer.Option(None, "--elevation", "-e", min=0.0, max=89.0, help="degrees; default drawn from --seed"),
    image: Path | None = typer.Option(None, "--image", help="first view (image-to-orbit checkpoints only)"),
    checkpoint: str = typer.Option("default", "--checkpoint", "-c", help="checkpoint folder, hub id or 'default'"),
    fps: int = typer.Option(8, "--fps", min=1),
) -> None:
    """Generate an orbit video for PROMPT with the multi-view model (offline, CPU by default)."""
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from catalog.media import contact_sheet, encode_video, pack_views
    from engine.mvgen import MultiViewVideoPipeline

    with console.status("loading the multi-view model"):
        pipe = MultiViewVideoPipeline.from_pretrained(checkpoint)
    img = None
    if image is not None:
        from PIL import Image

        img = np.asarray(Image.open(image).convert("RGB"))
    with Progress(TextColumn("[bold]denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("denoise", total=steps or pipe.config.default_steps)
        result = pipe(prompt, image=img, num_views=views, num_inference_steps=steps, guidance_scale=guidance,
                      elevation_deg=elevation, seed=seed, callback=lambda i, n: bar.update(task, completed=i, total=n))
    frames, cams = result.frames[0], result.cameras[0]
    out.mkdir(parents=True, exist_ok=True)
    meta = {"prompt": prompt, "seed": result.seeds[0], "checkpoint_id": pipe.checkpoint_id,
            "steps": steps or pipe.config.default_steps,
            "guidance_scale": pipe.config.default_guidance if guidance is None else guidance, **cams.to_dict()}
    meta.pop("extrinsics", None)
    meta.pop("intrinsics", None)
    (out / "orbit.mp4").write_bytes(encode_video(frames, fps=fps, loops=2))
    (out / "sheet.png").write_bytes(contact_sheet(frames))
    (out / "views.npz").write_bytes(pack_views(frames, cams.extrinsics(), cams.intrinsics(), meta))
    (out / "generation.json").write_text(json.dumps(meta, indent=2) + "\n")
    console.print(f"[green]generated[/] {prompt!r}: {frames.shape[0]} views × {frames.shape[1]} px, elevation "
                  f"{cams.elevation_deg:.1f}°, seed {result.seeds[0]} ({pipe.checkpoint_id}) → {out}/orbit.mp4, sheet.png")
