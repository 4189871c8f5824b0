"""The orbit renderer: moderngl (OpenGL 3.3 core) on an EGL headless context.

Why moderngl on EGL: one code path runs on Mesa's llvmpipe on CPU machines (no display, no GPU)
and on the GPU's EGL driver when there is one; rasterisation, depth testing, MSAA and texture
filtering come from a real OpenGL implementation instead of a home-made rasteriser, and it is
deterministic (same inputs -> same pixels on the same driver).

Shading: albedo (material colour or stripe/checker pattern × vertex colour × texture) times
``ambient + key * max(n·L_key, 0) + head * max(n·v, 0)`` plus a Blinn-Phong highlight scaled by
the material's gloss. The key light is fixed in the world (above, front-left), the head light
follows the camera so no visible surface drops below the ambient level; the sum peaks at 0.95 so
lit white stays distinguishable from the white background. Two-sided (normals face the viewer).

Output: premultiplied RGBA rendered on transparent black with 4x MSAA, read back and composited
over white: ``rgb = colour + (1 - alpha) * 255``. Batching: every view of every asset in a call is
drawn into tiles of one large framebuffer (an atlas) in one context, read back once per atlas.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from catalog.errors import Vf3dError
from engine.assets.types import Asset, Part
from engine.render.cameras import DEFAULT_FOV_DEG, DEFAULT_RADIUS, OrbitCameras, draw_elevation

AMBIENT, KEY, HEAD = 0.5, 0.3, 0.15
KEY_DIR = (-0.35, 0.45, 0.82)  # world direction towards the key light (+Z up)
MAX_ATLAS_PIXELS = 2048


class RendererError(Vf3dError):
    """The OpenGL renderer cannot start (no EGL / Mesa) or was given something it cannot draw."""


_VERT = """
#version 330
uniform mat4 mvp;
in vec3 in_pos; in vec3 in_normal; in vec3 in_local; in vec2 in_uv; in vec3 in_vcolor;
out vec3 v_pos; out vec3 v_normal; out vec3 v_local; out vec2 v_uv; out vec3 v_vcolor;
void main() {
    v_pos = in_pos; v_normal = in_normal; v_local = in_local; v_uv = in_uv; v_vcolor = in_vcolor;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

_FRAG = """
#version 330
uniform vec3 cam_pos; uniform vec3 key_dir;
uniform vec3 base_color; uniform vec3 color2; uniform int pattern; uniform float pattern_scale;
uniform float gloss; uniform int use_texture; uniform sampler2D tex;
uniform float ambient; uniform float key; uniform float head;
in vec3 v_pos; in vec3 v_normal; in vec3 v_local; in vec2 v_uv; in vec3 v_vcolor;
out vec4 f_color;
void main() {
    vec3 albedo = base_color;
    if (pattern == 1) {
        float k = mod(floor(v_local.z * pattern_scale), 2.0);
        albedo = mix(base_color, color2, k);
    } else if (pattern == 2) {
        vec3 c = floor(v_local * pattern_scale);
        float k = mod(c.x + c.y + c.z, 2.0);
        albedo = mix(base_color, color2, k);
    }
    albedo *= v_vcolor;
    if (use_texture == 1) { albedo *= texture(tex, v_uv).rgb; }
    vec3 n = normalize(v_normal);
    vec3 v = normalize(cam_pos - v_pos);
    if (dot(n, v) < 0.0) { n = -n; }
    vec3 l = normalize(key_dir);
    float shade = ambient + key * max(dot(n, l), 0.0) + head * max(dot(n, v), 0.0);
    vec3 h = normalize(l + v);
    float spec = gloss * 0.5 * pow(max(dot(n, h), 0.0), 40.0) + gloss * 0.25 * pow(max(dot(n, v), 0.0), 60.0);
    vec3 c = clamp(albedo * shade + vec3(spec), 0.0, 1.0);
    f_color = vec4(c, 1.0);
}
"""


@dataclass
class OrbitRender:
    """V views of one object: rgb uint8 [V, H, W, 3] composited on white, alpha uint8 [V, H, W]."""

    rgb: np.ndarray
    alpha: np.ndarray
    cameras: OrbitCameras
    asset_id: str = ""
    caption: str = ""

    @property
    def num_views(self) -> int:
        return int(self.rgb.shape[0])

    def rgba(self) -> np.ndarray:
        """uint8 [V, H, W, 4] (RGB on white + alpha)."""
        return np.concatenate([self.rgb, self.alpha[..., None]], axis=-1)


def projection_from_intrinsics(k: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """4x4 clip matrix acting on OpenCV camera coordinates (z forward) -> OpenGL clip space.

    u = fx x/z + cx maps to x_ndc = 2u/W - 1; image row v (down) maps to y_ndc = 1 - 2v/H, so the
    framebuffer read back bottom-up and flipped gives row 0 = top of the image.
    """
    fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
    p = np.zeros((4, 4))
    p[0, 0] = 2.0 * fx / width
    p[0, 2] = 2.0 * cx / width - 1.0
    p[1, 1] = -2.0 * fy / height
    p[1, 2] = 1.0 - 2.0 * cy / height
    p[2, 2] = (far + near) / (far - near)
    p[2, 3] = -2.0 * far * near / (far - near)
    p[3, 2] = 1.0
    return p


def _create_context():
    import moderngl

    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as err:  # noqa: BLE001 — any EGL failure means the same fix
        raise RendererError(
            f"cannot create a headless OpenGL (EGL) context: {err}. Install Mesa's EGL and llvmpipe "
            "(`sudo apt-get install libegl1 libgl1-mesa-dri libegl-mesa0`, done by `make setup`), "
            "or run on a machine with a GPU EGL driver"
        ) from None


class OrbitRenderer:
    """One OpenGL context + shader program; renders many assets × views per call (atlas batching)."""

    def __init__(self, samples: int = 4) -> None:
        self.ctx = _create_context()
        self.samples = max(0, min(int(samples), int(self.ctx.info.get("GL_MAX_SAMPLES", 0) or 0)))
        self.prog = self.ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
        self._white = self.ctx.texture((1, 1), 3, bytes([255, 255, 255]))
        self._lock = threading.Lock()
        self._fbos: dict[tuple[int, int], Any] = {}

    def release(self) -> None:
        for fbo_ms, fbo in self._fbos.values():
            for f in (fbo_ms, fbo):
                for att in (*f.color_attachments, f.depth_attachment):
                    if att is not None:
                        att.release()
                f.release()
        self._fbos.clear()
        self.prog.release()
        self._white.release()
        self.ctx.release()

    # -------------------------------------------------------------- GPU resources
    def _framebuffers(self, width: int, height: int):
        key = (width, height)
        if key not in self._fbos:
            ctx = self.ctx
            if len(self._fbos) > 4:
                self._fbos.clear()
            ms = ctx.framebuffer(
                ctx.renderbuffer((width, height), 4, samples=self.samples),
                ctx.depth_renderbuffer((width, height), samples=self.samples),
            )
            resolved = ctx.framebuffer(ctx.renderbuffer((width, height), 4))
            self._fbos[key] = (ms, resolved)
        return self._fbos[key]

    def _upload_part(self, part: Part):
        n = len(part.vertices)
        uv = part.uv if part.uv is not None else np.zeros((n, 2), np.float32)
        vc = part.vertex_colors[:, :3] if part.vertex_colors is not None else np.ones((n, 3), np.float32)
        data = np.concatenate([part.vertices, part.normals, part.local, uv, vc], axis=1).astype(np.float32)
        vbo = self.ctx.buffer(np.ascontiguousarray(data).tobytes())
        ibo = self.ctx.buffer(np.ascontiguousarray(part.faces, np.int32).tobytes())
        vao = self.ctx.vertex_array(
            self.prog, [(vbo, "3f 3f 3f 2f 3f", "in_pos", "in_normal", "in_local", "in_uv", "in_vcolor")],
            index_buffer=ibo, index_element_size=4,
        )
        tex = None
        if part.texture is not None:
            img = np.ascontiguousarray(np.flipud(part.texture[..., :3]).astype(np.uint8))
            tex = self.ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes())
            tex.build_mipmaps()
            tex.repeat_x = tex.repeat_y = True
            import moderngl

            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        return vbo, ibo, vao, tex

    # -------------------------------------------------------------- drawing
    def _draw_view(self, uploaded, parts: Sequence[Part], cams: OrbitCameras, view: int, mvp_proj: np.ndarray) -> None:
        prog = self.prog
        ext = cams.extrinsics()[view].astype(np.float64)
        mvp = mvp_proj @ ext
        prog["mvp"].write(mvp.T.astype("f4").tobytes())  # GLSL matrices are column-major
        centre = cams.centers()[view]
        prog["cam_pos"].value = tuple(float(x) for x in centre)
        for part, (_, _, vao, tex) in zip(parts, uploaded):
            m = part.material
            prog["base_color"].value = tuple(float(x) for x in m.color)
            prog["color2"].value = tuple(float(x) for x in m.color2)
            prog["pattern"].value = {"none": 0, "stripes": 1, "checker": 2}[m.pattern]
            prog["pattern_scale"].value = float(m.pattern_scale)
            prog["gloss"].value = float(m.gloss)
            prog["use_texture"].value = 1 if tex is not None else 0
            (tex if tex is not None else self._white).use(0)
            vao.render()

    def render(self, assets: Sequence[Asset], cameras: Sequence[OrbitCameras]) -> list[OrbitRender]:
        """Render each asset with its own orbit; one atlas pass covers as many views as fit."""
        if len(assets) != len(cameras):
            raise ValueError("render() needs one OrbitCameras per asset")
        if not assets:
            return []
        import moderngl

        with self._lock:
            prog = self.prog
            prog["key_dir"].value = KEY_DIR
            prog["ambient"].value, prog["key"].value, prog["head"].value = AMBIENT, KEY, HEAD
            if "tex" in prog:
                prog["tex"].value = 0
            # a flat list of (asset index, view index), grouped by resolution
            outputs = [
                (np.empty((c.num_views, c.resolution, c.resolution, 3), np.uint8),
                 np.empty((c.num_views, c.resolution, c.resolution), np.uint8))
                for c in cameras
            ]
            by_res: dict[int, list[tuple[int, int]]] = {}
            for i, c in enumerate(cameras):
                by_res.setdefault(c.resolution, []).extend((i, v) for v in range(c.num_views))
            uploaded: dict[int, list] = {}
            try:
                for res, tiles in by_res.items():
                    per_side = max(1, MAX_ATLAS_PIXELS // res)
                    per_pass = per_side * per_side
                    for start in range(0, len(tiles), per_pass):
                        chunk = tiles[start:start + per_pass]
                        cols = min(per_side, len(chunk))
                        rows = math.ceil(len(chunk) / cols)
                        w, h = cols * res, rows * res
                        fbo_ms, fbo = self._framebuffers(w, h)
                        fbo_ms.use()
                        self.ctx.viewport = (0, 0, w, h)
                        fbo_ms.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                        self.ctx.enable(moderngl.DEPTH_TEST)
                        self.ctx.disable(moderngl.CULL_FACE)
                        for t, (ai, v) in enumerate(chunk):
                            if ai not in uploaded:
                                uploaded[ai] = [self._upload_part(p) for p in assets[ai].parts]
                            cams = cameras[ai]
                            r, c = divmod(t, cols)
                            self.ctx.viewport = (c * res, (rows - 1 - r) * res, res, res)
                            near = max(cams.radius - 2.0, 0.02)
                            proj = projection_from_intrinsics(cams.intrinsic(), res, res, near, cams.radius + 2.0)
                            self._draw_view(uploaded[ai], assets[ai].parts, cams, v, proj)
                        self.ctx.copy_framebuffer(fbo, fbo_ms)
                        raw = np.frombuffer(fbo.read(components=4, dtype="f1"), np.uint8).reshape(h, w, 4)
                        atlas = raw[::-1]
                        for t, (ai, v) in enumerate(chunk):
                            r, c = divmod(t, cols)
                            tile = atlas[r * res:(r + 1) * res, c * res:(c + 1) * res]
                            a = tile[..., 3:4].astype(np.uint16)
                            outputs[ai][0][v] = np.minimum(tile[..., :3].astype(np.uint16) + (255 - a), 255).astype(np.uint8)
                            outputs[ai][1][v] = tile[..., 3]
            finally:
                for parts in uploaded.values():
                    for vbo, ibo, vao, tex in parts:
                        vao.release()
                        vbo.release()
                        ibo.release()
                        if tex is not None:
                            tex.release()
        return [
            OrbitRender(rgb, alpha, cams, assets[i].asset_id, assets[i].caption)
            for i, ((rgb, alpha), cams) in enumerate(zip(outputs, cameras))
        ]


_DEFAULT: OrbitRenderer | None = None
_DEFAULT_LOCK = threading.Lock()


def default_renderer() -> OrbitRenderer:
    """The process-wide renderer (one EGL context, created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = OrbitRenderer()
        return _DEFAULT


def _as_asset(obj: Asset | str | Path | Any) -> Asset:
    if isinstance(obj, Asset):
        return obj
    from engine.assets import resolve_asset

    return resolve_asset(obj)


def _orbit_for(asset: Asset, views: int, resolution: int, elevation_deg: float | None, seed: int | None,
               radius: float, fov_deg: float) -> OrbitCameras:
    if seed is None:
        seed = asset.seed if asset.seed is not None else 0
    elev = draw_elevation(seed) if elevation_deg is None else float(elevation_deg)
    return OrbitCameras.from_views(views, elev, resolution=resolution, radius=radius, fov_deg=fov_deg)


def render_orbit(
    asset_or_mesh: Asset | str | Path | Any,
    views: int = 16,
    resolution: int = 64,
    elevation_deg: float | None = None,
    seed: int | None = None,
    *,
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV_DEG,
    cameras: OrbitCameras | None = None,
    renderer: OrbitRenderer | None = None,
) -> OrbitRender:
    """Render one asset (an :class:`Asset`, 'proc:<seed>', a mesh path or a trimesh object) on the
    paper's orbit: ``views`` azimuths from 0, ``elevation_deg`` or one drawn in [0, 45] from
    ``seed`` (default: the asset's own seed). ``cameras`` overrides the orbit entirely."""
    return render_orbits([asset_or_mesh], views, resolution, elevation_deg, None if seed is None else [seed],
                         radius=radius, fov_deg=fov_deg,
                         cameras=None if cameras is None else [cameras], renderer=renderer)[0]


def render_orbits(
    assets: Sequence[Asset | str | Path | Any],
    views: int = 16,
    resolution: int = 64,
    elevation_deg: float | Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    *,
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV_DEG,
    cameras: Sequence[OrbitCameras] | None = None,
    renderer: OrbitRenderer | None = None,
) -> list[OrbitRender]:
    """Batched :func:`render_orbit`: many assets in one context and few framebuffer passes."""
    items = [_as_asset(a) for a in assets]
    if cameras is None:
        elevs = list(elevation_deg) if isinstance(elevation_deg, (list, tuple, np.ndarray)) else [elevation_deg] * len(items)
        seed_list = list(seeds) if seeds is not None else [None] * len(items)
        if len(elevs) != len(items) or len(seed_list) != len(items):
            raise ValueError("elevation_deg and seeds must have one entry per asset")
        cameras = [_orbit_for(a, views, resolution, e, s, radius, fov_deg) for a, e, s in zip(items, elevs, seed_list)]
    return (renderer or default_renderer()).render(items, list(cameras))
