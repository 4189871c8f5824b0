"""The denoiser: diffusers' ``UNetSpatioTemporalConditionModel`` (Stable Video Diffusion's UNet).

A real SVD-class checkpoint and the tiny embedded default are the same class, so one pipeline and
one fine-tuning loop serve both. What the paper needs from it:

* **spatial vs temporal parameters.** SVD interleaves every spatial block with a temporal twin
  (``temporal_res_block``, ``temporal_transformer_blocks``, a frame-position embedding
  ``time_pos_embed`` and a learned ``time_mixer`` blend). VFusion3D freezes the spatial ones and
  trains only the temporal ones; :func:`is_temporal` is the single definition of "temporal".
* **conditioning.** ``encoder_hidden_states`` = text tokens (see :mod:`engine.mvgen.text`);
  ``added_time_ids`` = the orbit's elevation in degrees (SVD's fps/motion slots, repurposed);
  an optional first image is concatenated to the noisy input along channels (as SVD does).

:func:`tiny_unet_config` is the embedded default, sized for 2 CPU cores: it denoises 32 px frames
as 16x16 grids of 2x2-pixel patches (12 channels; a lossless space-to-depth, not a VAE), two
levels (32 and 64 channels), attention only at 8x8, one resnet per level.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import UNetSpatioTemporalConditionModel

FreezeMode = Literal["spatial", "temporal", "none"]
TEMPORAL_MARKERS = ("temporal_", "time_mixer", "time_pos_embed")


def is_temporal(param_name: str) -> bool:
    """True for the temporal layers (the only ones trained with ``--freeze spatial``)."""
    return any(marker in param_name for marker in TEMPORAL_MARKERS)


def tiny_unet_config(
    resolution: int = 32,
    num_views: int = 8,
    channels: int = 3,
    condition_channels: int = 0,
    text_width: int = 384,
    block_out_channels: tuple[int, ...] = (32, 64),
) -> dict[str, Any]:
    """UNet config of the embedded default (2.2M parameters for 16x16 grids of 2x2 patches)."""
    down = ("DownBlockSpatioTemporal",) * (len(block_out_channels) - 1) + ("CrossAttnDownBlockSpatioTemporal",)
    up = ("CrossAttnUpBlockSpatioTemporal",) + ("UpBlockSpatioTemporal",) * (len(block_out_channels) - 1)
    return dict(
        sample_size=resolution,
        in_channels=channels + condition_channels,
        out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(block_out_channels),
        num_attention_heads=tuple(max(1, c // 32) for c in block_out_channels),
        layers_per_block=1,
        cross_attention_dim=text_width,
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=32,  # one added time id (elevation) x 32
        num_frames=num_views,
        transformer_layers_per_block=1,
    )


def build_unet(config: dict[str, Any]) -> UNetSpatioTemporalConditionModel:
    return UNetSpatioTemporalConditionModel(**config)


def set_trainable(unet: torch.nn.Module, freeze: FreezeMode) -> tuple[int, int]:
    """Freeze ``'spatial'`` (train temporal only, the paper), ``'temporal'`` or ``'none'``.

    Returns (trainable, frozen) parameter counts.
    """
    if freeze not in ("spatial", "temporal", "none"):
        raise ValueError(f"freeze must be 'spatial', 'temporal' or 'none', got {freeze!r}")
    trainable = frozen = 0
    for name, param in unet.named_parameters():
        temporal = is_temporal(name)
        train = freeze == "none" or (freeze == "spatial" and temporal) or (freeze == "temporal" and not temporal)
        param.requires_grad_(train)
        trainable += param.numel() if train else 0
        frozen += 0 if train else param.numel()
    return trainable, frozen


def parameter_counts(unet: torch.nn.Module) -> dict[str, int]:
    spatial = sum(p.numel() for n, p in unet.named_parameters() if not is_temporal(n))
    temporal = sum(p.numel() for n, p in unet.named_parameters() if is_temporal(n))
    return {"spatial": spatial, "temporal": temporal, "total": spatial + temporal}
