"""The sample media format: what a multi-view sample looks like as objects in the store.

Every sample is three objects under ``samples/<id[:2]>/<id>/``:

- ``views.npz`` — for trainers: all views and cameras in ONE GET. Arrays ``frames`` (uint8
  [V,H,W,3], or [V,H,W,4] with alpha), ``extrinsics`` (float32 [V,4,4], world-to-camera,
  OpenCV axes, see ``engine.render.cameras``), ``intrinsics`` (float32 [V,3,3], pixels) and
  ``meta`` (a UTF-8 JSON string). Loaded with ``allow_pickle=False``: an uploaded pack cannot
  run code.
- ``orbit.mp4`` — for curators: H.264, yuv420p, plays in any browser or viewer.
- ``sheet.png`` — for curators: every view in one contact sheet.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from catalog.errors import Vf3dError

MEDIA_FORMAT_VERSION = 1
VIEWS_NAME, VIDEO_NAME, SHEET_NAME = "views.npz", "orbit.mp4", "sheet.png"
_MAX_VIEWS = 1024


class MediaError(Vf3dError):
    """Media bytes that are not a valid vf3d sample (truncated, wrong shapes, not ours)."""


@dataclass
class ViewPack:
    """All views of one sample with their cameras."""

    frames: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_views(self) -> int:
        return int(self.frames.shape[0])


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise MediaError(f"frames must be uint8, got {frames.dtype}; convert with (x * 255).round().clip(0, 255).astype(np.uint8)")
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or not 0 < frames.shape[0] <= _MAX_VIEWS:
        raise MediaError(f"frames must have shape [V,H,W,3|4] with 1 ≤ V ≤ {_MAX_VIEWS}, got {frames.shape}")
    return frames


def pack_views(frames: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, meta: dict[str, Any] | None = None) -> bytes:
    """Pack frames + per-view cameras into the ``views.npz`` bytes (compressed)."""
    frames = _check_frames(frames)
    v = frames.shape[0]
    extrinsics = np.asarray(extrinsics, dtype=np.float32)
    intrinsics = np.asarray(intrinsics, dtype=np.float32)
    if extrinsics.shape != (v, 4, 4) or intrinsics.shape != (v, 3, 3):
        raise MediaError(
            f"cameras must be extrinsics [V,4,4] and intrinsics [V,3,3] for V={v} views, "
            f"got {extrinsics.shape} and {intrinsics.shape}"
        )
    meta_json = json.dumps({"format_version": MEDIA_FORMAT_VERSION, **(meta or {})}, sort_keys=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames, extrinsics=extrinsics, intrinsics=intrinsics, meta=np.array(meta_json))
    return buf.getvalue()


def unpack_views(data: bytes) -> ViewPack:
    """Read ``views.npz`` bytes back; raises ``MediaError`` on anything that is not a valid pack."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = {"frames", "extrinsics", "intrinsics", "meta"} - set(npz.files)
            if missing:
                raise MediaError(f"views pack lacks arrays {sorted(missing)}; was it written by catalog.media.pack_views?")
            pack = ViewPack(
                frames=_check_frames(npz["frames"]),
                extrinsics=npz["extrinsics"],
                intrinsics=npz["intrinsics"],
                meta=json.loads(str(npz["meta"])),
            )
    except MediaError:
        raise
    except Exception as exc:  # zipfile/np errors on truncated or foreign bytes
        raise MediaError(f"not a readable views.npz pack ({type(exc).__name__}: {exc}); re-fetch or re-generate the sample") from exc
    v = pack.n_views
    if pack.extrinsics.shape != (v, 4, 4) or pack.intrinsics.shape != (v, 3, 3):
        raise MediaError(f"views pack has cameras {pack.extrinsics.shape}/{pack.intrinsics.shape} for {v} views")
    return pack


def _rgb(frames: np.ndarray) -> np.ndarray:
    """Drop alpha by compositing on white (the method's background)."""
    frames = _check_frames(frames)
    if frames.shape[-1] == 3:
        return frames
    alpha = frames[..., 3:4].astype(np.float32) / 255.0
    rgb = frames[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return rgb.round().astype(np.uint8)


def encode_video(frames: np.ndarray, fps: int = 8, loops: int = 1, crf: int = 18) -> bytes:
    """Encode the orbit as MP4 (H.264, yuv420p). Odd sizes are padded with white to even ones.

    ``loops`` repeats the orbit so short clips of small frames are pleasant to watch.
    """
    import av

    rgb = _rgb(frames)
    v, h, w, _ = rgb.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        padded = np.full((v, ph, pw, 3), 255, np.uint8)
        padded[:, :h, :w] = rgb
        rgb = padded
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for _ in range(max(1, loops)):
            for frame in rgb:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_video(data: bytes) -> np.ndarray:
    """Decode MP4 bytes to uint8 [T,H,W,3] (used by tests and the console to check playability)."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    except Exception as exc:
        raise MediaError(f"not a playable video ({type(exc).__name__}: {exc})") from exc


def contact_sheet_image(frames: np.ndarray, cols: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile every view into one uint8 image (white gaps), near-square by default."""
    rgb = _rgb(frames)
    v, h, w, _ = rgb.shape
    cols = cols or math.ceil(math.sqrt(v))
    rows = math.ceil(v / cols)
    sheet = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, frame in enumerate(rgb):
        r, c = divmod(i, cols)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = frame
    return sheet


def to_png(image: np.ndarray) -> bytes:
    """Encode one uint8 image ([H,W,3] or [H,W,4]) as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def contact_sheet(frames: np.ndarray, cols: int | None = None) -> bytes:
    """The contact sheet as PNG bytes."""
    return to_png(contact_sheet_image(frames, cols))


def sample_media(frames: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, meta: dict[str, Any] | None = None, fps: int = 8) -> dict[str, bytes]:
    """All three objects of one sample, keyed by object name, ready for ``Catalog.commit_batch``."""
    return {
        VIEWS_NAME: pack_views(frames, extrinsics, intrinsics, meta),
        VIDEO_NAME: encode_video(frames, fps=fps, loops=2),
        SHEET_NAME: contact_sheet(frames),
    }

