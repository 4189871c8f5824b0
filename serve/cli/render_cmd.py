"""``vf3d render``: render a procedural asset or a mesh file on the orbit and write its media."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from serve.cli.console import console


def render(
    asset: str = typer.Argument(..., help="'proc:<seed>' (or 'proc:<seed>:<template>', e.g. proc:7:mug) or a mesh file (.obj .glb .gltf .ply .stl .off)"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (created)"),
    views: int = typer.Option(16, "--views", "-v", min=1, help="number of azimuths, evenly spaced over 360 from 0"),
    resolution: int = typer.Option(256, "--resolution", "-r", min=8, max=4096, help="square image size in pixels"),
    elevation: float | None = typer.Option(None, "--elevation", "-e", min=-89.0, max=89.0, help="degrees; default: drawn in [0, 45] from --seed"),
    seed: int | None = typer.Option(None, "--seed", "-s", help="elevation draw seed (default: the asset's own seed, 0 for meshes)"),
    fps: int = typer.Option(8, "--fps", min=1, help="orbit video frame rate"),
) -> None:
    """Render ASSET on the orbit: view_XX.png (RGB on white), views.npz (RGBA + cameras), sheet.png,
    orbit.mp4 and cameras.json (OpenCV axes, world +Z up, world-to-camera extrinsics)."""
    from catalog.media import contact_sheet, encode_video, pack_views, to_png
    from engine.assets import resolve_asset
    from engine.render import render_orbit

    item = resolve_asset(asset)
    with console.status(f"rendering {views} views at {resolution} px"):
        result = render_orbit(item, views=views, resolution=resolution, elevation_deg=elevation, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(result.rgb):
        (out / f"view_{i:02d}.png").write_bytes(to_png(frame))
    cams = result.cameras
    meta = {"asset_id": item.asset_id, "caption": item.caption, "source": item.source, **cams.to_dict()}
    meta.pop("extrinsics")
    meta.pop("intrinsics")
    (out / "views.npz").write_bytes(pack_views(result.rgba(), cams.extrinsics(), cams.intrinsics(), meta))
    (out / "sheet.png").write_bytes(contact_sheet(result.rgb))
    (out / "orbit.mp4").write_bytes(encode_video(result.rgb, fps=fps, loops=2))
    (out / "cameras.json").write_text(
        json.dumps({"asset_id": item.asset_id, "caption": item.caption, **cams.to_dict()}, indent=2)
    )
    console.print(
        f"[green]rendered[/] {item.asset_id} — {item.caption!r}: {views} views × {resolution} px, "
        f"elevation {cams.elevation_deg:.1f}°, {item.num_triangles} triangles → {out}"
    )
