"""Real meshes: OBJ / GLB / glTF / PLY / STL / OFF with vertex colours or textures (via trimesh),
converted to :class:`~engine.assets.types.Asset` s in vf3d's world frame (+Z up) and normalised
to the unit sphere.

Up axis: glTF is +Y up by specification and OBJ is +Y up by custom, so those are rotated +90°
about X (their +Y becomes our +Z); PLY/STL/OFF are taken as +Z up. Override with ``up=``.
UVs follow trimesh's (OpenGL) convention: v = 0 at the bottom row of the texture image.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from catalog.errors import Vf3dError
from engine.assets.types import Asset, Material, Part, normalize_parts

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
_Y_UP = (".obj", ".glb", ".gltf")


class AssetError(Vf3dError, ValueError):
    """An asset reference or mesh file vf3d cannot use; the message says what would work."""


def _texture_of(material: Any) -> tuple[np.ndarray | None, tuple[float, float, float]]:
    """(texture uint8 [h, w, 3|4] or None, base colour factor in [0, 1]) of a trimesh material."""
    if material is None:
        return None, (1.0, 1.0, 1.0)
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    factor = getattr(material, "baseColorFactor", None)
    if factor is None:
        factor = getattr(material, "diffuse", None)
    colour = (1.0, 1.0, 1.0)
    if factor is not None:
        f = np.asarray(factor, np.float64).reshape(-1)[:3]
        colour = tuple(float(x) for x in (f / 255.0 if f.max() > 1.0 else f))
    tex = None
    if image is not None:
        tex = np.asarray(image.convert("RGBA") if hasattr(image, "convert") else image, np.uint8)
    return tex, colour  # type: ignore[return-value]


def _part_from_trimesh(mesh: Any) -> Part:
    import trimesh

    visual = mesh.visual
    verts = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    normals = np.asarray(mesh.vertex_normals, np.float64)
    if isinstance(visual, trimesh.visual.texture.TextureVisuals):
        tex, colour = _texture_of(visual.material)
        uv = None if visual.uv is None else np.asarray(visual.uv, np.float64)
        if tex is not None and uv is not None and len(uv) == len(verts):
            return Part(verts, normals, faces, Material(colour, gloss=0.1), uv=uv, texture=tex)
        return Part(verts, normals, faces, Material(colour, gloss=0.1))
    if isinstance(visual, trimesh.visual.color.ColorVisuals) and visual.defined:
        if visual.kind == "face":
            # one colour per face: split vertices so each face carries its own colour
            fc = np.asarray(visual.face_colors, np.float64)[:, :3] / 255.0
            verts = verts[faces].reshape(-1, 3)
            normals = np.repeat(np.asarray(mesh.face_normals, np.float64), 3, axis=0)
            vc = np.repeat(fc, 3, axis=0)
            faces = np.arange(len(verts)).reshape(-1, 3)
            return Part(verts, normals, faces, Material((1.0, 1.0, 1.0), gloss=0.1), vertex_colors=vc)
        vc = np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0
        return Part(verts, normals, faces, Material((1.0, 1.0, 1.0), gloss=0.1), vertex_colors=vc)
    return Part(verts, normals, faces, Material((0.7, 0.7, 0.7), gloss=0.1))


def _caption_from_name(name: str) -> str:
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", Path(name).stem).replace("_", " ").replace("-", " ")
    return "a 3D model of " + " ".join(words.lower().split())


def asset_from_trimesh(obj: Any, *, up: Literal["y", "z"] = "z", asset_id: str | None = None,
                       caption: str = "a 3D model", source: str = "") -> Asset:
    """An :class:`Asset` from a ``trimesh.Trimesh`` or ``trimesh.Scene`` (scene transforms applied)."""
    import trimesh

    meshes: list[Any] = []
    if isinstance(obj, trimesh.Scene):
        for node in obj.graph.nodes_geometry:
            transform, geom_name = obj.graph[node]
            geom = obj.geometry[geom_name]
            if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
                continue
            g = geom.copy()
            g.apply_transform(transform)
            meshes.append(g)
    elif isinstance(obj, trimesh.Trimesh):
        meshes = [obj]
    else:
        raise AssetError(f"cannot render a {type(obj).__name__}; give a triangle mesh (trimesh.Trimesh or Scene)")
    if not meshes:
        raise AssetError("the mesh has no triangles (point clouds and line sets cannot be rendered)")
    parts = [_part_from_trimesh(m) for m in meshes]
    if up == "y":
        rot = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)
        parts = [p.transformed(rot) for p in parts]
    parts = normalize_parts(parts, radius=1.0)
    if asset_id is None:
        h = hashlib.sha256()
        for p in parts:
            h.update(np.round(p.vertices, 6).tobytes())
            h.update(p.faces.tobytes())
        asset_id = "mesh-" + h.hexdigest()[:16]
    return Asset(asset_id, caption, tuple(parts), kind="mesh", colors=(), seed=None, source=source)


def load_mesh(path: str | Path, up: Literal["y", "z"] | None = None, caption: str | None = None) -> Asset:
    """Load a mesh file as an :class:`Asset` (+Z up, centred, inside the unit sphere).

    The id is ``mesh-`` + a hash of the file bytes, so the same file always gets the same id.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise AssetError(f"mesh file {path} does not exist; give a path to an {'/'.join(MESH_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise AssetError(f"{path.name}: unsupported mesh format {suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as err:  # noqa: BLE001
        raise AssetError(f"cannot read mesh {path}: {err}; check the file is a valid {suffix} file") from None
    up = up or ("y" if suffix in _Y_UP else "z")
    digest = "mesh-" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return asset_from_trimesh(loaded, up=up, asset_id=digest, caption=caption or _caption_from_name(path.name),
                              source=str(path))
