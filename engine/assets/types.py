"""What the renderer draws: an :class:`Asset` made of :class:`Part` s, each with a :class:`Material`.

Coordinates are world coordinates (+Z up, see :mod:`engine.render.cameras`); an asset is centred
at the origin and fits the unit sphere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

PATTERNS = ("none", "stripes", "checker")


@dataclass(frozen=True)
class Material:
    """Surface appearance.

    color: base RGB in [0, 1]. gloss: specular strength in [0, 1] (0 = matte).
    pattern: 'none', 'stripes' (bands along the part's local z) or 'checker' (3D checker in the
    part's local coordinates), alternating ``color`` and ``color2``; ``pattern_scale`` = cells
    per unit of local coordinate.
    """

    color: tuple[float, float, float] = (0.8, 0.8, 0.8)
    gloss: float = 0.0
    pattern: str = "none"
    color2: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pattern_scale: float = 4.0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; use one of {PATTERNS}")


@dataclass(eq=False)
class Part:
    """One triangle mesh with one material.

    vertices/normals float32 [N, 3]; faces int32 [F, 3]; local float32 [N, 3] = coordinates the
    procedural pattern is evaluated in; optional uv float32 [N, 2] + texture uint8 [h, w, 3|4]
    (row 0 = top of the image, glTF convention); optional vertex_colors float32 [N, 3] in [0, 1].
    The rendered albedo is ``material colour (or pattern) * vertex colour * texture``.
    """

    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    material: Material = field(default_factory=Material)
    local: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, np.float32)
        self.normals = np.ascontiguousarray(self.normals, np.float32)
        self.faces = np.ascontiguousarray(self.faces, np.int32)
        if self.local is None:
            self.local = self.vertices.copy()
        self.local = np.ascontiguousarray(self.local, np.float32)
        if self.uv is not None:
            self.uv = np.ascontiguousarray(self.uv, np.float32)
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, np.float32)
        if self.texture is not None and self.uv is None:
            raise ValueError("a textured part needs per-vertex uv coordinates")

    def transformed(self, matrix: np.ndarray) -> Part:
        """A copy moved by the 4x4 ``matrix`` (normals by its inverse transpose); local coords kept."""
        m = np.asarray(matrix, np.float64)
        verts = self.vertices @ m[:3, :3].T + m[:3, 3]
        nmat = np.linalg.inv(m[:3, :3]).T
        normals = self.normals @ nmat.T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        return Part(verts, normals, self.faces, self.material, self.local, self.uv, self.texture, self.vertex_colors)


@dataclass(eq=False)
class Asset:
    """A renderable object with a caption that is true of it.

    asset_id: deterministic ('proc-…' from the generator version + seed, 'mesh-…' from file bytes).
    kind: 'procedural:<template>' or 'mesh'. colors: the palette words in the caption.
    """

    asset_id: str
    caption: str
    parts: tuple[Part, ...]
    kind: str = "procedural"
    colors: tuple[str, ...] = ()
    seed: int | None = None
    source: str = ""

    def bounds(self) -> np.ndarray:
        allv = np.concatenate([p.vertices for p in self.parts])
        return np.stack([allv.min(0), allv.max(0)])

    def radius(self) -> float:
        return float(max(np.linalg.norm(p.vertices, axis=1).max() for p in self.parts))

    @property
    def num_triangles(self) -> int:
        return int(sum(len(p.faces) for p in self.parts))

    def geometry_hash(self) -> str:
        """Hash of vertices, faces and materials (two assets with the same hash render identically)."""
        h = hashlib.sha256()
        for p in self.parts:
            h.update(np.round(p.vertices, 5).tobytes())
            h.update(p.faces.tobytes())
            h.update(repr(p.material).encode())
        return h.hexdigest()[:16]


def normalize_parts(parts: list[Part], radius: float = 1.0) -> list[Part]:
    """Centre the parts on their bounding-box centre and scale them into a sphere of ``radius``."""
    allv = np.concatenate([p.vertices for p in parts]).astype(np.float64)
    centre = (allv.min(0) + allv.max(0)) / 2.0
    scale = radius / max(float(np.linalg.norm(allv - centre, axis=1).max()), 1e-9)
    m = np.eye(4)
    m[:3, :3] *= scale
    m[:3, 3] = -centre * scale
    return [p.transformed(m) for p in parts]
