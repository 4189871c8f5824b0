"""Procedural asset library: seeded, distinct, captions true of geometry and colour; real meshes."""

from __future__ import annotations

import numpy as np
import pytest

from engine.assets import (
    COLOR_NAMES, PALETTE, TEMPLATES, AssetError, asset_from_seed, colors_in_text, dominant_color, load_mesh,
    resolve_asset, sample_assets,
)
from engine.assets.palette import classify_rgb
from engine.render import render_orbits


def test_same_seed_same_asset_and_id():
    a, b = asset_from_seed(1234), asset_from_seed(1234)
    assert a.asset_id == b.asset_id and a.caption == b.caption and a.geometry_hash() == b.geometry_hash()
    assert a.asset_id != asset_from_seed(1235).asset_id
    assert [x.asset_id for x in sample_assets(5, seed=1)] == [x.asset_id for x in sample_assets(5, seed=1)]


def test_thousands_of_distinct_assets():
    assets = sample_assets(1200, seed=0)
    assert len({a.asset_id for a in assets}) == 1200
    assert len({a.geometry_hash() for a in assets}) == 1200
    assert len({a.caption for a in assets}) > 400
    assert {a.kind.split(":")[1] for a in assets} == set(TEMPLATES)


def test_every_template_builds_inside_the_unit_sphere_with_palette_colour_words():
    for name in TEMPLATES:
        for seed in range(3):
            a = asset_from_seed(seed, template=name)
            assert a.radius() == pytest.approx(1.0, abs=1e-4)
            assert np.allclose(a.bounds().mean(0), 0.0, atol=1e-4)  # centred
            words = colors_in_text(a.caption)
            assert set(words) == set(a.colors) and all(w in PALETTE for w in words), a.caption
            assert all(np.isfinite(p.normals).all() for p in a.parts)


def test_palette_classifies_its_own_colours_under_shading():
    for name, rgb in PALETTE.items():
        for shade in (0.6, 0.75, 0.9, 0.95):
            got = COLOR_NAMES[int(classify_rgb(np.array(rgb) * shade))]
            assert got == name, (name, shade, got)


def test_rendered_single_colour_assets_show_their_caption_colour():
    """What the caption says is what the pixels show (the generator's prompt-following test relies on it)."""
    assets = [a for a in sample_assets(300, seed=5) if len(a.colors) == 1][:40]
    renders = render_orbits(assets, views=4, resolution=48)
    hits = [dominant_color(r.rgb, r.alpha > 128) == a.colors[0] for a, r in zip(assets, renders)]
    assert np.mean(hits) >= 0.95, [(a.caption, dominant_color(r.rgb, r.alpha > 128)) for a, r, h in zip(assets, renders, hits) if not h]


def test_caption_colour_words_and_synonyms():
    assert colors_in_text("A Red mug next to a gray box and a red ball") == ["red", "grey"]
    assert colors_in_text("a wooden chair") == []


def test_resolve_asset_references(tmp_path):
    assert resolve_asset("proc:77").asset_id == asset_from_seed(77).asset_id
    assert resolve_asset("proc:77:mug").kind == "procedural:mug"
    with pytest.raises(AssetError, match="proc:<integer seed>"):
        resolve_asset("proc:abc")
    with pytest.raises(AssetError, match="unknown template"):
        resolve_asset("proc:1:spaceship")
    with pytest.raises(AssetError, match="does not exist"):
        load_mesh(tmp_path / "missing.glb")
    bad = tmp_path / "model.fbx"
    bad.write_text("x")
    with pytest.raises(AssetError, match="unsupported mesh format"):
        load_mesh(bad)
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"not a glb")
    with pytest.raises(AssetError, match="cannot read mesh"):
        load_mesh(broken)


def test_real_mesh_loads_normalised_with_texture_and_stable_id():
    from pathlib import Path

    path = Path(__file__).parent / "data" / "BoxTextured.glb"
    a, b = load_mesh(path), load_mesh(path)
    assert a.asset_id == b.asset_id and a.asset_id.startswith("mesh-")
    assert a.radius() == pytest.approx(1.0, abs=1e-5)
    assert any(p.texture is not None and p.uv is not None for p in a.parts)
