"""The sample media format: packs round-trip exactly, videos play, sheets tile, bad bytes fail clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from catalog import media


def _orbit(v=8, h=32, w=32, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(v, h, w, channels), dtype=np.uint8)
    ext = np.tile(np.eye(4, dtype=np.float32), (v, 1, 1))
    ext[:, 2, 3] = np.arange(v, dtype=np.float32)
    intr = np.tile(np.array([[40, 0, 16], [0, 40, 16], [0, 0, 1]], np.float32), (v, 1, 1))
    return frames, ext, intr


def test_pack_round_trips_exactly():
    frames, ext, intr = _orbit(channels=4)
    pack = media.unpack_views(media.pack_views(frames, ext, intr, {"prompt": "a red mug"}))
    assert np.array_equal(pack.frames, frames)
    assert np.array_equal(pack.extrinsics, ext) and np.array_equal(pack.intrinsics, intr)
    assert pack.meta["prompt"] == "a red mug" and pack.meta["format_version"] == media.MEDIA_FORMAT_VERSION
    assert pack.n_views == 8


def test_pack_rejects_mismatched_cameras_and_bad_dtype():
    frames, ext, intr = _orbit()
    with pytest.raises(media.MediaError, match="extrinsics"):
        media.pack_views(frames, ext[:3], intr)
    with pytest.raises(media.MediaError, match="uint8"):
        media.pack_views(frames.astype(np.float32), ext, intr)


@pytest.mark.parametrize("corrupt", [b"", b"not a zip", "truncate"])
def test_unpack_refuses_garbage(corrupt):
    frames, ext, intr = _orbit()
    data = media.pack_views(frames, ext, intr)
    bad = data[: len(data) // 2] if corrupt == "truncate" else corrupt
    with pytest.raises(media.MediaError):
        media.unpack_views(bad)


def test_unpack_refuses_pickled_objects():
    buf = io.BytesIO()
    np.savez(buf, frames=np.array([{"evil": 1}], dtype=object), extrinsics=np.zeros(1), intrinsics=np.zeros(1), meta=np.array("{}"))
    with pytest.raises(media.MediaError):
        media.unpack_views(buf.getvalue())


def test_video_plays_with_every_view_and_odd_sizes():
    # smooth frames (H.264 is lossy): a colour ramp per view
    v, h, w = 6, 33, 35
    frames = np.zeros((v, h, w, 3), np.uint8)
    for i in range(v):
        frames[i, ..., 0] = 40 * i
        frames[i, ..., 1] = 200
    decoded = media.decode_video(media.encode_video(frames, fps=8))
    assert decoded.shape == (v, h + 1, w + 1, 3)
    assert np.abs(decoded[:, :h, :w].astype(int) - frames.astype(int)).mean() < 6


def test_video_composites_alpha_on_white():
    frames = np.zeros((2, 16, 16, 4), np.uint8)  # fully transparent black
    decoded = media.decode_video(media.encode_video(frames))
    assert decoded.min() > 240


def test_contact_sheet_tiles_every_view():
    frames = np.zeros((5, 10, 12, 3), np.uint8)
    for i in range(5):
        frames[i] = 50 * i
    img = np.asarray(Image.open(io.BytesIO(media.contact_sheet(frames, cols=3))))
    assert img.shape == (2 * 10 + 2, 3 * 12 + 2 * 2, 3)
    assert img[0, 0, 0] == 0 and img[0, 14, 0] == 50 and img[12, 0, 0] == 150
    assert img[12:, 28:].min() == 255  # the empty sixth tile stays white


def test_sample_media_has_three_objects_and_keys():
    frames, ext, intr = _orbit()
    objs = media.sample_media(frames, ext, intr)
    assert set(objs) == {"views.npz", "orbit.mp4", "sheet.png"}
    assert media.decode_video(objs["orbit.mp4"]).shape[0] == 2 * 8  # two loops of the orbit
