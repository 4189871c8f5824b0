"""A seeded library of procedural 3D assets: compositions of primitives with palette colours,
matte/glossy materials or stripe/checker patterns, and a caption true of the geometry.

``asset_from_seed(seed)`` is a pure function of the seed (and :data:`GENERATOR_VERSION`):
the same seed gives the same vertices, materials, caption and id on every machine.
Continuous sizes, a random yaw and ~20 templates × 11 colours × materials give as many distinct
assets as there are seeds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import trimesh

from engine.assets.palette import CHROMATIC, COLOR_NAMES, PALETTE
from engine.assets.types import Asset, Material, Part, normalize_parts

GENERATOR_VERSION = "proc-v1"

# ---------------------------------------------------------------- primitives (local frames, +Z up)


def _mesh_part(mesh: trimesh.Trimesh, material: Material, smooth_angle_deg: float = 40.0) -> Part:
    mesh = trimesh.graph.smooth_shade(mesh, angle=math.radians(smooth_angle_deg), facet_minarea=None)
    verts = np.asarray(mesh.vertices, np.float64)
    ext = max(float(np.abs(verts).max()), 1e-6)
    return Part(verts, np.asarray(mesh.vertex_normals), np.asarray(mesh.faces), material, local=verts / ext)


def sphere(r: float, material: Material) -> Part:
    return _mesh_part(trimesh.creation.icosphere(subdivisions=3, radius=r), material)


def box(sx: float, sy: float, sz: float, material: Material) -> Part:
    return _mesh_part(trimesh.creation.box(extents=(sx, sy, sz)), material)


def cylinder(r: float, h: float, material: Material, sections: int = 40) -> Part:
    """Axis +Z, centred at the origin."""
    return _mesh_part(trimesh.creation.cylinder(radius=r, height=h, sections=sections), material)


def cone(r: float, h: float, material: Material, sections: int = 40) -> Part:
    """Base disk at z=0, apex at z=h."""
    return _mesh_part(trimesh.creation.cone(radius=r, height=h, sections=sections), material, smooth_angle_deg=60.0)


def torus(major: float, minor: float, material: Material) -> Part:
    """In the XY plane around +Z."""
    return _mesh_part(trimesh.creation.torus(major, minor, major_sections=48, minor_sections=20), material, 60.0)


def capsule(r: float, h: float, material: Material) -> Part:
    """Axis +Z, centred; ``h`` is the length of the straight section."""
    return _mesh_part(trimesh.creation.capsule(height=h, radius=r, count=[24, 24]), material, 60.0)


def _tf(translate=(0.0, 0.0, 0.0), rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0), scale=1.0) -> np.ndarray:
    rx, ry, rz = (math.radians(a) for a in rotate_deg)
    m = trimesh.transformations.euler_matrix(rx, ry, rz, "sxyz")
    s = np.eye(4)
    s[:3, :3] *= np.asarray(scale, np.float64) if np.ndim(scale) else scale
    m = m @ s
    m[:3, 3] = translate
    return m


def at(part: Part, translate=(0.0, 0.0, 0.0), rotate_deg=(0.0, 0.0, 0.0), scale=1.0) -> Part:
    return part.transformed(_tf(translate, rotate_deg, scale))


# ---------------------------------------------------------------- materials and words


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeio" else "a ") + phrase


class _Draw:
    """Seeded draws used by the templates."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, 0xA55E7])

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def color(self, exclude: tuple[str, ...] = (), chromatic: bool = False) -> str:
        pool = [c for c in (CHROMATIC if chromatic else COLOR_NAMES) if c not in exclude]
        return str(pool[int(self.rng.integers(len(pool)))])

    def choice(self, items):
        return items[int(self.rng.integers(len(items)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.uniform() < p)

    def material(self, color: str, gloss: float | None = None) -> Material:
        g = gloss if gloss is not None else (self.u(0.5, 0.9) if self.chance(0.35) else self.u(0.0, 0.12))
        return Material(PALETTE[color], gloss=g)


def _mat(color: str, gloss: float = 0.05) -> Material:
    return Material(PALETTE[color], gloss=gloss)


Template = Callable[[_Draw], tuple[list[Part], str, tuple[str, ...]]]

# ---------------------------------------------------------------- templates

_SHAPES = ("sphere", "cube", "box", "cylinder", "cone", "torus", "capsule", "pyramid")


def _shape(name: str, d: _Draw, mat: Material, size: float = 1.0) -> Part:
    """A primitive named as in captions, resting on z=0, roughly ``size`` tall/wide."""
    s = size
    if name == "sphere":
        r = 0.5 * s
        return at(sphere(r, mat), (0, 0, r))
    if name == "cube":
        return at(box(s, s, s, mat), (0, 0, s / 2))
    if name == "box":
        sx, sy, sz = s * d.u(0.9, 1.4), s * d.u(0.5, 0.8), s * d.u(0.45, 0.7)
        return at(box(sx, sy, sz, mat), (0, 0, sz / 2))
    if name == "cylinder":
        r, h = 0.5 * s * d.u(0.6, 1.0), s * d.u(0.8, 1.3)
        return at(cylinder(r, h, mat), (0, 0, h / 2))
    if name == "cone":
        return cone(0.5 * s * d.u(0.7, 1.0), s * d.u(0.9, 1.4), mat)
    if name == "torus":
        major = 0.5 * s * d.u(0.65, 0.8)
        minor = major * d.u(0.3, 0.45)
        return at(torus(major, minor, mat), (0, 0, minor), (d.u(0, 25), 0, 0))
    if name == "capsule":
        r, h = 0.5 * s * d.u(0.45, 0.6), s * d.u(0.5, 0.9)
        return at(capsule(r, h, mat), (0, 0, h / 2 + r))
    if name == "pyramid":
        return at(cone(0.6 * s, s * d.u(0.8, 1.1), mat, sections=4), rotate_deg=(0, 0, 45))
    raise ValueError(name)


_SHAPE_WORD = {"sphere": ("sphere", "ball"), "cube": ("cube",), "box": ("box",), "cylinder": ("cylinder",),
               "cone": ("cone",), "torus": ("torus", "ring", "donut"), "capsule": ("capsule", "pill"),
               "pyramid": ("pyramid",)}


def t_single(d: _Draw):
    shape = d.choice(_SHAPES)
    word = d.choice(_SHAPE_WORD[shape])
    c1 = d.color()
    roll = d.u(0, 1)
    if roll < 0.22 and shape not in ("pyramid",):
        c2 = d.color(exclude=(c1,))
        pattern = "stripes" if roll < 0.12 else "checker"
        mat = Material(PALETTE[c1], gloss=d.u(0, 0.3), pattern=pattern, color2=PALETTE[c2], pattern_scale=d.u(2.5, 4.0))
        adj = "striped" if pattern == "stripes" else "checkered"
        return [_shape(shape, d, mat)], _article(f"{c1} and {c2} {adj} {word}"), (c1, c2)
    mat = d.material(c1)
    shiny = "shiny " if mat.gloss > 0.45 and d.chance(0.5) else ""
    return [_shape(shape, d, mat)], _article(f"{shiny}{c1} {word}"), (c1,)


def t_stack(d: _Draw):
    bottom = d.choice(("cube", "cylinder", "box"))
    top = d.choice(("sphere", "cone", "cube", "cylinder", "pyramid", "torus"))
    c1 = d.color()
    c2 = d.color(exclude=(c1,))
    lower = _shape(bottom, d, d.material(c1), 1.0)
    upper = _shape(top, d, d.material(c2), d.u(0.55, 0.8))
    z = float(lower.vertices[:, 2].max())
    upper = at(upper, (0, 0, z))
    return [lower, upper], _article(f"{c2} {top} on {_article(f'{c1} {bottom}')}"), (c2, c1)


def t_mug(d: _Draw):
    c = d.color()
    m = d.material(c)
    r, h = d.u(0.35, 0.45), d.u(0.7, 0.95)
    body = at(cylinder(r, h, m), (0, 0, h / 2))
    inner = at(cylinder(r * 0.88, 0.01, _mat("black" if c != "black" else "grey")), (0, 0, h + 0.002))
    handle = at(torus(h * 0.28, 0.05, m), (r + h * 0.12, 0, h * 0.5), (90, 0, 0))
    return [body, inner, handle], _article(f"{c} mug"), (c,)


def t_table(d: _Draw):
    c = d.choice(("brown", "white", "black", "grey", "red", "blue", "green", "yellow"))
    m = d.material(c)
    sx, sy, legh = d.u(1.2, 1.6), d.u(0.7, 1.1), d.u(0.6, 0.9)
    top = at(box(sx, sy, 0.08, m), (0, 0, legh + 0.04))
    legs = [at(cylinder(0.05, legh, m, 16), (x * (sx / 2 - 0.1), y * (sy / 2 - 0.1), legh / 2))
            for x in (-1, 1) for y in (-1, 1)]
    return [top, *legs], _article(f"{c} table"), (c,)


def t_tree(d: _Draw):
    trunk_h = d.u(0.3, 0.5)
    trunk = at(cylinder(d.u(0.08, 0.12), trunk_h, _mat("brown")), (0, 0, trunk_h / 2))
    if d.chance(0.5):
        parts = [trunk]
        n = int(d.rng.integers(1, 4))
        z = trunk_h * 0.8
        for i in range(n):
            r = 0.55 * (1 - 0.22 * i)
            parts.append(at(cone(r, r * 1.4, _mat("green")), (0, 0, z)))
            z += r * 0.8
        return parts, "a pine tree with green needles and a brown trunk", ("green", "brown")
    crown = at(sphere(d.u(0.45, 0.6), _mat("green")), (0, 0, trunk_h + 0.4))
    return [trunk, crown], "a tree with a round green crown and a brown trunk", ("green", "brown")


def t_snowman(d: _Draw):
    m = _mat("white", 0.1)
    r1, r2, r3 = d.u(0.45, 0.55), d.u(0.32, 0.38), d.u(0.22, 0.27)
    z1, z2 = r1, 2 * r1 + r2 * 0.8
    z3 = z2 + r2 + r3 * 0.8
    parts = [at(sphere(r1, m), (0, 0, z1)), at(sphere(r2, m), (0, 0, z2)), at(sphere(r3, m), (0, 0, z3))]
    parts.append(at(cone(0.05, 0.22, _mat("orange")), (r3 * 0.9, 0, z3), (0, 90, 0)))
    for y in (-0.08, 0.08):
        parts.append(at(sphere(0.035, _mat("black")), (r3 * 0.88, y, z3 + 0.08)))
    return parts, "a white snowman with an orange carrot nose", ("white", "orange")


def t_mushroom(d: _Draw):
    c = d.choice(("red", "brown", "orange", "yellow", "purple"))
    stem_h = d.u(0.45, 0.7)
    stem = at(cylinder(d.u(0.1, 0.16), stem_h, _mat("white")), (0, 0, stem_h / 2))
    cap_r = d.u(0.45, 0.6)
    cap = at(sphere(1.0, d.material(c)), (0, 0, stem_h - 0.05), scale=(cap_r, cap_r, cap_r * d.u(0.5, 0.7)))
    return [stem, cap], _article(f"{c} mushroom with a white stem"), (c, "white")


def t_dumbbell(d: _Draw):
    c = d.choice(("black", "grey", "red", "blue", "pink", "purple", "green"))
    m = d.material(c, gloss=d.u(0.3, 0.8))
    length, r = d.u(0.9, 1.2), d.u(0.22, 0.3)
    bar = at(cylinder(0.06, length, m, 16), (0, 0, r), (0, 90, 0))
    ends = [at(sphere(r, m), (x * length / 2, 0, r)) for x in (-1, 1)]
    return [bar, *ends], _article(f"{c} dumbbell"), (c,)


def t_lollipop(d: _Draw):
    c = d.color(chromatic=True)
    stick_h = d.u(0.8, 1.1)
    stick = at(cylinder(0.03, stick_h, _mat("white"), 12), (0, 0, stick_h / 2))
    candy = at(sphere(d.u(0.3, 0.4), d.material(c, gloss=0.6)), (0, 0, stick_h + 0.25))
    return [stick, candy], _article(f"{c} lollipop"), (c,)


def t_house(d: _Draw):
    c1 = d.choice(("white", "yellow", "blue", "pink", "grey", "brown", "green"))
    c2 = d.color(exclude=(c1,), chromatic=d.chance(0.7))
    sx, sy, sz = d.u(0.9, 1.2), d.u(0.8, 1.0), d.u(0.6, 0.8)
    walls = at(box(sx, sy, sz, d.material(c1, 0.05)), (0, 0, sz / 2))
    roof_h = d.u(0.4, 0.6)
    roof = at(cone(1.0, 1.0, d.material(c2, 0.1), sections=4), (0, 0, sz), (0, 0, 45),
              scale=(sx * 0.75, sy * 0.75, roof_h))
    door = at(box(0.02, sy * 0.2, sz * 0.45, _mat("brown" if c1 != "brown" else "black")), (sx / 2, 0, sz * 0.225))
    return [walls, roof, door], _article(f"{c1} house with {_article(f'{c2} roof')}"), (c1, c2)


def t_rocket(d: _Draw):
    c = d.color(exclude=("white",))
    m = d.material(c, gloss=0.4)
    r, h = d.u(0.2, 0.26), d.u(1.0, 1.3)
    body = at(cylinder(r, h, _mat("white", 0.4)), (0, 0, h / 2 + 0.1))
    nose = at(cone(r, r * 2.2, m), (0, 0, h + 0.1))
    fins = [at(box(0.03, 0.3, 0.35, m), (math.cos(a) * (r + 0.1), math.sin(a) * (r + 0.1), 0.25),
               (0, 0, math.degrees(a) + 90)) for a in np.linspace(0, 2 * math.pi, 4)[:3]]
    return [body, nose, *fins], _article(f"white rocket with {_article(f'{c} nose cone')}"), ("white", c)


def t_traffic_cone(d: _Draw):
    h = d.u(0.9, 1.2)
    base = at(box(0.8, 0.8, 0.06, _mat("black")), (0, 0, 0.03))
    body = at(cone(0.32, h, _mat("orange", 0.2)), (0, 0, 0.06))
    band = at(cylinder(0.32 * 0.55, 0.12, _mat("white", 0.2)), (0, 0, 0.06 + h * 0.45))
    return [base, body, band], "an orange traffic cone with a white stripe", ("orange", "white")


def t_chair(d: _Draw):
    c = d.choice(("brown", "red", "blue", "green", "black", "white", "yellow", "grey"))
    m = d.material(c)
    w, seat_h = d.u(0.6, 0.75), d.u(0.5, 0.65)
    seat = at(box(w, w, 0.07, m), (0, 0, seat_h))
    back = at(box(0.07, w, d.u(0.6, 0.8), m), (-w / 2 + 0.035, 0, seat_h + 0.35))
    legs = [at(box(0.06, 0.06, seat_h, m), (x * (w / 2 - 0.05), y * (w / 2 - 0.05), seat_h / 2))
            for x in (-1, 1) for y in (-1, 1)]
    return [seat, back, *legs], _article(f"{c} chair"), (c,)


def t_lamp(d: _Draw):
    c = d.color(chromatic=True)
    pole_h = d.u(0.9, 1.3)
    base = at(cylinder(0.25, 0.06, _mat("black", 0.4)), (0, 0, 0.03))
    pole = at(cylinder(0.03, pole_h, _mat("grey", 0.5), 12), (0, 0, pole_h / 2))
    shade = at(cone(d.u(0.3, 0.4), d.u(0.35, 0.45), d.material(c)), (0, 0, pole_h - 0.15))
    return [base, pole, shade], _article(f"lamp with {_article(f'{c} shade')}"), (c,)


def t_top_hat(d: _Draw):
    c = d.choice(("black", "grey", "brown", "red", "purple", "blue", "white"))
    m = d.material(c, 0.1)
    brim = at(cylinder(d.u(0.5, 0.6), 0.05, m), (0, 0, 0.025))
    h = d.u(0.55, 0.75)
    crown = at(cylinder(0.32, h, m), (0, 0, h / 2))
    band_c = "red" if c != "red" else "black"
    band = at(cylinder(0.33, 0.08, _mat(band_c)), (0, 0, 0.1))
    return [brim, crown, band], _article(f"{c} top hat"), (c,)


def t_car(d: _Draw):
    c = d.color(exclude=("black",), chromatic=d.chance(0.8))
    m = d.material(c, gloss=d.u(0.4, 0.9))
    L, W = d.u(1.4, 1.7), d.u(0.65, 0.8)
    body = at(box(L, W, 0.3, m), (0, 0, 0.3))
    cabin = at(box(L * 0.5, W * 0.9, 0.25, m), (-L * 0.05, 0, 0.57))
    wheels = [at(cylinder(0.16, 0.1, _mat("black"), 24), (x * L * 0.32, y * (W / 2), 0.16), (90, 0, 0))
              for x in (-1, 1) for y in (-1, 1)]
    return [body, cabin, *wheels], _article(f"{c} car with black wheels"), (c, "black")


def t_candle(d: _Draw):
    c = d.choice(("white", "red", "pink", "purple", "blue", "green", "yellow"))
    h = d.u(0.8, 1.2)
    body = at(cylinder(d.u(0.15, 0.22), h, d.material(c, 0.05)), (0, 0, h / 2))
    flame = at(cone(0.06, 0.18, _mat("orange" if c != "orange" else "yellow")), (0, 0, h + 0.02))
    return [body, flame], _article(f"{c} candle"), (c,)


def t_barrel(d: _Draw):
    c = d.choice(("brown", "red", "blue", "green", "grey"))
    h, r = d.u(0.9, 1.1), d.u(0.38, 0.45)
    body = at(cylinder(r, h, d.material(c, 0.05)), (0, 0, h / 2))
    hoops = [at(torus(r, 0.025, _mat("black", 0.5)), (0, 0, z)) for z in (h * 0.15, h * 0.85)]
    return [body, *hoops], _article(f"{c} barrel"), (c,)


def t_ice_cream(d: _Draw):
    c = d.choice(("pink", "white", "brown", "green", "yellow"))
    h = d.u(0.8, 1.0)
    cone_part = at(cone(0.25, h, _mat("orange", 0.0)), (0, 0, h), (180, 0, 0))
    scoop = at(sphere(0.3, d.material(c, 0.15)), (0, 0, h + 0.15))
    return [cone_part, scoop], _article(f"ice cream cone with {_article(f'{c} scoop')}"), (c,)


def t_pawn(d: _Draw):
    c = d.choice(("white", "black", "brown", "red", "blue"))
    m = d.material(c, gloss=d.u(0.3, 0.7))
    base = at(cylinder(0.32, 0.12, m), (0, 0, 0.06))
    body = at(cone(0.24, 0.8, m), (0, 0, 0.1))
    collar = at(cylinder(0.16, 0.05, m), (0, 0, 0.65))
    head = at(sphere(0.17, m), (0, 0, 0.8))
    return [base, body, collar, head], _article(f"{c} chess pawn"), (c,)


def t_bottle(d: _Draw):
    c = d.choice(("green", "brown", "blue", "red", "white", "purple"))
    m = d.material(c, gloss=d.u(0.4, 0.9))
    h, r = d.u(0.8, 1.0), d.u(0.2, 0.28)
    body = at(cylinder(r, h, m), (0, 0, h / 2))
    shoulder = at(sphere(1.0, m), (0, 0, h), scale=(r, r, r * 0.6))
    neck = at(cylinder(r * 0.35, 0.35, m), (0, 0, h + 0.22))
    cap = at(cylinder(r * 0.4, 0.07, _mat("black" if c != "black" else "grey")), (0, 0, h + 0.42))
    return [body, shoulder, neck, cap], _article(f"{c} bottle"), (c,)


def t_umbrella(d: _Draw):
    c = d.color(chromatic=True)
    h = d.u(1.0, 1.3)
    pole = at(cylinder(0.025, h, _mat("black"), 12), (0, 0, h / 2))
    canopy = at(cone(d.u(0.6, 0.75), d.u(0.3, 0.4), d.material(c, 0.2), sections=8), (0, 0, h * 0.8))
    return [pole, canopy], _article(f"{c} umbrella"), (c,)


TEMPLATES: dict[str, tuple[Template, float]] = {
    "single": (t_single, 5.0),
    "stack": (t_stack, 3.0),
    "mug": (t_mug, 1.0),
    "table": (t_table, 0.8),
    "tree": (t_tree, 0.6),
    "snowman": (t_snowman, 0.4),
    "mushroom": (t_mushroom, 0.7),
    "dumbbell": (t_dumbbell, 0.6),
    "lollipop": (t_lollipop, 0.6),
    "house": (t_house, 0.8),
    "rocket": (t_rocket, 0.6),
    "traffic_cone": (t_traffic_cone, 0.3),
    "chair": (t_chair, 0.8),
    "lamp": (t_lamp, 0.6),
    "top_hat": (t_top_hat, 0.6),
    "car": (t_car, 0.8),
    "candle": (t_candle, 0.6),
    "barrel": (t_barrel, 0.6),
    "ice_cream": (t_ice_cream, 0.6),
    "pawn": (t_pawn, 0.6),
    "bottle": (t_bottle, 0.7),
    "umbrella": (t_umbrella, 0.6),
}


def asset_id_for_seed(seed: int) -> str:
    """Deterministic id of the procedural asset drawn from ``seed``."""
    return "proc-" + hashlib.sha256(f"{GENERATOR_VERSION}:{int(seed)}".encode()).hexdigest()[:16]


def asset_from_seed(seed: int, template: str | None = None) -> Asset:
    """The procedural asset for ``seed`` (optionally forcing a template name from :data:`TEMPLATES`)."""
    seed = int(seed)
    d = _Draw(seed)
    names = list(TEMPLATES)
    weights = np.array([TEMPLATES[n][1] for n in names])
    pick = names[int(d.rng.choice(len(names), p=weights / weights.sum()))]
    if template is not None:
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; choose one of {', '.join(names)}")
        pick = template
    parts, caption, colors = TEMPLATES[pick][0](d)
    yaw = d.u(0.0, 360.0)
    parts = [at(p, rotate_deg=(0, 0, yaw)) for p in parts]
    parts = normalize_parts(parts, radius=1.0)
    aid = asset_id_for_seed(seed) if template is None else asset_id_for_seed(seed) + f"-{template}"
    return Asset(aid, caption, tuple(parts), kind=f"procedural:{pick}", colors=tuple(colors), seed=seed,
                 source=f"proc:{seed}")


def sample_seeds(n: int, seed: int = 0) -> list[int]:
    """``n`` distinct asset seeds drawn from ``seed`` (the same list every time)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED5])
    out: list[int] = []
    seen: set[int] = set()
    while len(out) < n:
        for s in rng.integers(0, 2**31 - 1, size=max(n - len(out), 1)).tolist():
            if s not in seen:
                seen.add(s)
                out.append(int(s))
    return out[:n]


def sample_assets(n: int, seed: int = 0) -> list[Asset]:
    """``n`` distinct procedural assets, reproducible from ``seed``."""
    return [asset_from_seed(s) for s in sample_seeds(n, seed)]
