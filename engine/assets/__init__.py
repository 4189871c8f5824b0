"""3D assets: a seeded procedural library (captioned compositions of primitives) and real meshes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.assets.meshes import MESH_SUFFIXES, AssetError, asset_from_trimesh, load_mesh
from engine.assets.palette import COLOR_NAMES, PALETTE, classify_rgb, color_histogram, colors_in_text, dominant_color
from engine.assets.procedural import (
    GENERATOR_VERSION,
    TEMPLATES,
    asset_from_seed,
    asset_id_for_seed,
    sample_assets,
    sample_seeds,
)
from engine.assets.types import Asset, Material, Part


def resolve_asset(ref: Any) -> Asset:
    """An :class:`Asset` from an Asset, 'proc:<seed>' / 'proc:<seed>:<template>', a mesh path, or a trimesh object."""
    if isinstance(ref, Asset):
        return ref
    if isinstance(ref, (str, Path)):
        text = str(ref)
        if text.startswith("proc:"):
            bits = text.split(":")
            try:
                seed = int(bits[1])
            except (IndexError, ValueError):
                raise AssetError(f"bad procedural asset {text!r}; write proc:<integer seed>, e.g. proc:123") from None
            template = bits[2] if len(bits) > 2 and bits[2] else None
            if template is not None and template not in TEMPLATES:
                raise AssetError(f"unknown template {template!r} in {text!r}; choose one of {', '.join(TEMPLATES)}")
            return asset_from_seed(seed, template)
        return load_mesh(text)
    try:
        import trimesh

        if isinstance(ref, (trimesh.Trimesh, trimesh.Scene)):
            return asset_from_trimesh(ref)
    except ImportError:  # pragma: no cover
        pass
    raise AssetError(f"cannot use {type(ref).__name__} as an asset; give proc:<seed>, a mesh file path or an Asset")


__all__ = [
    "Asset", "AssetError", "COLOR_NAMES", "GENERATOR_VERSION", "MESH_SUFFIXES", "Material", "PALETTE", "Part",
    "TEMPLATES", "asset_from_seed", "asset_from_trimesh", "asset_id_for_seed", "classify_rgb", "color_histogram",
    "colors_in_text", "dominant_color", "load_mesh", "resolve_asset", "sample_assets", "sample_seeds",
]
