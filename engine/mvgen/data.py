"""Training data for the generator: orbit renders of 3D assets, rendered once into an ``.npz`` cache.

An :class:`OrbitDataset` is ``frames`` uint8 [N, V, H, W, 3] (white background), one elevation
and one caption per orbit. Sources: N procedural assets (``engine.assets``), a folder of mesh
files (OBJ/GLB/glTF/PLY; caption from the file name or a ``<stem>.txt`` beside it), or a cache
file written earlier.

Held-out prompts: the embedded default must follow colour words on captions it never saw, so
procedural assets whose caption names a *held-out colour x shape pair* (e.g. "red" with
"torus") never enter the training set; :func:`heldout_prompts` lists the prompts the colour test
generates from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.mvgen.errors import TrainingError

HELDOUT_VERSION = "heldout-v1"
TEST_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "grey")
SHAPE_WORDS = {
    "sphere": ("sphere", "ball"), "cube": ("cube",), "box": ("box",), "cylinder": ("cylinder",),
    "cone": ("cone",), "torus": ("torus", "ring", "donut"), "capsule": ("capsule", "pill"), "pyramid": ("pyramid",),
}
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")


def heldout_pairs() -> list[tuple[str, str]]:
    """20 (colour, shape) pairs never shown in training: each colour with two different shapes."""
    shapes = list(SHAPE_WORDS)
    return [(c, shapes[(2 * i + k) % len(shapes)]) for i, c in enumerate(TEST_COLORS) for k in (0, 1)]


def heldout_prompts() -> list[str]:
    """The held-out colour+shape prompts (every shape word, plain and 'shiny'): 58 prompts."""
    out = []
    for color, shape in heldout_pairs():
        for word in SHAPE_WORDS[shape]:
            out.append(_article(f"{color} {word}"))
            out.append(_article(f"shiny {color} {word}"))
    return out


def is_heldout_caption(caption: str) -> bool:
    """True when the caption names a held-out colour together with its held-out shape."""
    words = set(re.findall(r"[a-z]+", caption.lower()))
    return any(c in words and any(w in words for w in SHAPE_WORDS[s]) for c, s in heldout_pairs())


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


@dataclass
class OrbitDataset:
    frames: np.ndarray  # uint8 [N, V, H, W, 3]
    elevations: np.ndarray  # float32 [N] degrees
    captions: list[str]
    asset_ids: list[str]

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.frames.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.frames.shape[2])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, frames=self.frames, elevations=self.elevations,
            captions=np.array(self.captions), asset_ids=np.array(self.asset_ids),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> OrbitDataset:
        try:
            with np.load(path) as z:
                return cls(z["frames"], z["elevations"].astype(np.float32), [str(c) for c in z["captions"]],
                           [str(a) for a in z["asset_ids"]])
        except (OSError, KeyError, ValueError) as exc:
            raise TrainingError(f"{path} is not an orbit dataset cache ({exc}); delete it and render again") from None


def _render(assets: list, views: int, resolution: int, seeds: list[int],
            progress: Callable[[int, int], None] | None, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    from engine.render import render_orbits

    frames, elevs = [], []
    for i in range(0, len(assets), chunk):
        batch = render_orbits(assets[i : i + chunk], views=views, resolution=resolution, seeds=seeds[i : i + chunk])
        frames += [r.rgb for r in batch]
        elevs += [r.cameras.elevation_deg for r in batch]
        if progress:
            progress(min(i + chunk, len(assets)), len(assets))
    return np.stack(frames), np.asarray(elevs, np.float32)


def procedural_dataset(n: int, views: int = 8, resolution: int = 32, seed: int = 0, exclude_heldout: bool = True,
                       progress: Callable[[int, int], None] | None = None) -> OrbitDataset:
    """Render ``n`` procedural assets (held-out colour x shape captions skipped), elevation from each seed."""
    from engine.assets.procedural import asset_from_seed, sample_seeds

    assets = []
    candidates = sample_seeds(int(n * 1.6) + 16, seed)
    for s in candidates:
        asset = asset_from_seed(s)
        if exclude_heldout and is_heldout_caption(asset.caption):
            continue
        assets.append(asset)
        if len(assets) == n:
            break
    if len(assets) < n:
        raise TrainingError(f"only {len(assets)} of {n} assets survived the held-out filter; ask for fewer")
    frames, elevs = _render(assets, views, resolution, [a.seed for a in assets], progress)
    return OrbitDataset(frames, elevs, [a.caption for a in assets], [a.asset_id for a in assets])


def mesh_dataset(folder: str | Path, views: int = 8, resolution: int = 32, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> OrbitDataset:
    """Render every mesh file in ``folder``; caption from ``<stem>.txt`` or the file name."""
    from engine.assets.meshes import load_mesh

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise TrainingError(f"no mesh files ({', '.join(MESH_SUFFIXES)}) under {folder}; point --assets at meshes or give a count")
    assets = []
    for p in files:
        txt = p.with_suffix(".txt")
        assets.append(load_mesh(p, caption=txt.read_text().strip() if txt.is_file() else None))
    seeds = [seed * 1_000_003 + i for i in range(len(assets))]
    frames, elevs = _render(assets, views, resolution, seeds, progress)
    return OrbitDataset(frames, elevs, [a.caption for a in assets], [a.asset_id for a in assets])


def load_or_render(source: int | str | Path, cache_dir: str | Path, views: int = 8, resolution: int = 32, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> OrbitDataset:
    """Dataset for ``--assets N|DIR|FILE.npz``; renders are cached under ``cache_dir`` by their recipe."""
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if not isinstance(source, int) and Path(source).suffix == ".npz":
        return OrbitDataset.load(source)
    if isinstance(source, int):
        if source < 1:
            raise TrainingError(f"--assets must be a positive count, a mesh folder or a .npz cache, got {source}")
        recipe = {"kind": "procedural", "n": source, "seed": seed, "views": views, "res": resolution, "heldout": HELDOUT_VERSION}
        from engine.assets.procedural import GENERATOR_VERSION

        recipe["generator"] = GENERATOR_VERSION
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise TrainingError(f"--assets {source}: no such folder; give a count, a mesh folder or a .npz cache")
        stamp = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        recipe = {"kind": "meshes", "folder": str(folder.resolve()), "files": stamp, "seed": seed, "views": views, "res": resolution}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"orbits-{key}.npz"
    if path.is_file():
        return OrbitDataset.load(path)
    if isinstance(source, int):
        data = procedural_dataset(source, views, resolution, seed, progress=progress)
    else:
        data = mesh_dataset(source, views, resolution, seed, progress=progress)
    data.save(path)
    return data
