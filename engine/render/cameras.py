"""Orbit cameras — the ONE place vf3d writes down its camera convention.

Convention (used by the renderer, the multi-view generator, the catalog and the LRM):

* **World**: right-handed, **+Z up**; the object is centred at the origin and normalised to
  the unit sphere (every vertex within radius 1).
* **Camera axes: OpenCV** — x right, y down, z forward (the viewing direction). A point in
  front of the camera has z > 0.
* **Extrinsics** = the **world-to-camera** 4x4 matrix ``E`` (float32): ``x_cam = E @ [x_world, 1]``.
  Its top-left 3x3 ``R`` has rows (right, down, forward) in world coordinates and
  ``t = -R @ C`` where ``C`` is the camera centre.
* **Intrinsics** = 3x3 in **pixels**: ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` with
  ``fy = (H / 2) / tan(fov_deg / 2)`` (``fov_deg`` is the *vertical* field of view), ``fx = fy``
  (square pixels), ``cx = W / 2``, ``cy = H / 2``. Pixel (u, v) covers [u, u+1) x [v, v+1), so
  the continuous point (W/2, H/2) is the image centre; u grows right, v grows down.
* **Orbit**: one elevation per sample (degrees above the XY plane, drawn in [0, 45] by
  :func:`draw_elevation`), V azimuths evenly spaced over 360 starting at 0, a fixed radius
  and FOV. Camera centre for azimuth ``a`` and elevation ``e``:
  ``C = radius * (cos e cos a, cos e sin a, sin e)`` — **azimuth 0 sits on the +X axis** and
  azimuth grows counter-clockwise seen from above (towards +Y). Every camera looks at the
  origin with world +Z projecting to image "up", so the origin projects to the image centre.

Defaults (radius 3.2, vertical FOV 40 deg) keep the whole unit sphere inside the frame with a
small margin: its angular radius asin(1/3.2) = 18.2 deg < 20 deg.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_RADIUS = 3.2
DEFAULT_FOV_DEG = 40.0
DEFAULT_VIEWS = 16
ELEVATION_RANGE_DEG = (0.0, 45.0)


def orbit_azimuths(n: int) -> np.ndarray:
    """``n`` azimuths in degrees, evenly spaced over 360 and starting at 0."""
    if n < 1:
        raise ValueError(f"an orbit needs at least one view, got {n}")
    return (np.arange(n, dtype=np.float64) * (360.0 / n)).astype(np.float64)


def draw_elevation(seed: int, low: float = ELEVATION_RANGE_DEG[0], high: float = ELEVATION_RANGE_DEG[1]) -> float:
    """An elevation in degrees drawn uniformly in [low, high] from ``seed`` (the paper's [0, 45])."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xE1E7])
    return float(rng.uniform(low, high))


def camera_center(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """World position of the orbit camera (see the module docstring)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([radius * math.cos(e) * math.cos(a), radius * math.cos(e) * math.sin(a), radius * math.sin(e)])


def look_at(center: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None) -> np.ndarray:
    """World-to-camera 4x4 (OpenCV axes) for a camera at ``center`` looking at ``target``, world up ``up``."""
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    forward = target - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-8:
        raise ValueError("camera looks straight along the up axis; the orbit elevation must stay below 90 degrees")
    right /= norm
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    ext = np.eye(4)
    ext[:3, :3] = rot
    ext[:3, 3] = -rot @ center
    return ext


@dataclass(frozen=True)
class OrbitCameras:
    """A circular orbit of V cameras around the origin (convention in the module docstring)."""

    elevation_deg: float
    azimuths_deg: tuple[float, ...] = field(default_factory=lambda: tuple(orbit_azimuths(DEFAULT_VIEWS)))
    radius: float = DEFAULT_RADIUS
    fov_deg: float = DEFAULT_FOV_DEG
    resolution: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "azimuths_deg", tuple(float(a) for a in self.azimuths_deg))
        object.__setattr__(self, "elevation_deg", float(self.elevation_deg))
        if not -89.0 <= self.elevation_deg <= 89.0:
            raise ValueError(f"elevation_deg must lie in [-89, 89], got {self.elevation_deg}")
        if not 0.0 < self.fov_deg < 179.0:
            raise ValueError(f"fov_deg must lie in (0, 179), got {self.fov_deg}")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if int(self.resolution) < 1:
            raise ValueError(f"resolution must be at least 1 pixel, got {self.resolution}")
        if not self.azimuths_deg:
            raise ValueError("an orbit needs at least one azimuth")

    @classmethod
    def from_views(
        cls,
        n: int = DEFAULT_VIEWS,
        elevation_deg: float | None = None,
        *,
        resolution: int = 64,
        radius: float = DEFAULT_RADIUS,
        fov_deg: float = DEFAULT_FOV_DEG,
        seed: int = 0,
    ) -> OrbitCameras:
        """The paper's orbit: ``n`` evenly spaced azimuths from 0; elevation given or drawn from ``seed``."""
        elev = draw_elevation(seed) if elevation_deg is None else float(elevation_deg)
        return cls(elev, tuple(orbit_azimuths(n)), radius, fov_deg, int(resolution))

    @property
    def num_views(self) -> int:
        return len(self.azimuths_deg)

    def centers(self) -> np.ndarray:
        """Camera centres in world coordinates, float32 [V, 3]."""
        return np.stack([camera_center(a, self.elevation_deg, self.radius) for a in self.azimuths_deg]).astype(np.float32)

    def extrinsics(self) -> np.ndarray:
        """World-to-camera matrices, float32 [V, 4, 4] (OpenCV axes)."""
        return np.stack(
            [look_at(camera_center(a, self.elevation_deg, self.radius)) for a in self.azimuths_deg]
        ).astype(np.float32)

    def intrinsic(self) -> np.ndarray:
        """The one 3x3 pixel intrinsic matrix shared by every view, float32."""
        res = float(self.resolution)
        f = (res / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)
        return np.array([[f, 0.0, res / 2.0], [0.0, f, res / 2.0], [0.0, 0.0, 1.0]], dtype=np.float32)

    def intrinsics(self) -> np.ndarray:
        """Per-view 3x3 pixel intrinsics, float32 [V, 3, 3]."""
        return np.repeat(self.intrinsic()[None], self.num_views, axis=0)

    def with_resolution(self, resolution: int) -> OrbitCameras:
        return OrbitCameras(self.elevation_deg, self.azimuths_deg, self.radius, self.fov_deg, int(resolution))

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project world points [N, 3] into every view: pixel coordinates float64 [V, N, 2]."""
        pts = np.concatenate([np.asarray(points, np.float64), np.ones((len(points), 1))], axis=1)
        cam = np.einsum("vij,nj->vni", self.extrinsics().astype(np.float64), pts)[..., :3]
        pix = np.einsum("ij,vnj->vni", self.intrinsic().astype(np.float64), cam)
        return pix[..., :2] / pix[..., 2:3]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the ``cameras.json`` written next to renders)."""
        return {
            "convention": "opencv camera axes (x right, y down, z forward); world +Z up; "
            "extrinsics are world-to-camera 4x4; intrinsics in pixels; azimuth 0 camera on +X",
            "elevation_deg": self.elevation_deg,
            "azimuths_deg": list(self.azimuths_deg),
            "radius": self.radius,
            "fov_deg": self.fov_deg,
            "resolution": self.resolution,
            "extrinsics": self.extrinsics().tolist(),
            "intrinsics": self.intrinsics().tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrbitCameras:
        return cls(
            float(data["elevation_deg"]),
            tuple(data["azimuths_deg"]),
            float(data["radius"]),
            float(data["fov_deg"]),
            int(data["resolution"]),
        )


def camera_vector(extrinsic: np.ndarray, intrinsic: np.ndarray, resolution: int) -> np.ndarray:
    """The LRM's 16-d camera code: flattened 3x4 extrinsic + fx, fy, cx, cy normalised by resolution."""
    ext = np.asarray(extrinsic, np.float32)[:3, :4].reshape(-1)
    k = np.asarray(intrinsic, np.float32)
    return np.concatenate([ext, np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], np.float32) / float(resolution)])
