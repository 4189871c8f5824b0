"""The multi-view video generator: a diffusers spatio-temporal UNet fine-tuned into orbit videos.

    from engine.mvgen import MultiViewVideoPipeline, default_checkpoint_path
    pipe = MultiViewVideoPipeline.from_pretrained(default_checkpoint_path())
    out = pipe(["a red mug", "a blue cube"], seed=0)   # out.frames uint8 [2, 8, 32, 32, 3]

Modules, read in this order: ``text`` (prompt -> conditioning), ``model`` (the UNet, spatial vs
temporal parameters), ``pipeline`` (sampling, save/load), ``data`` (orbit renders for training),
``train`` (the paper's fine-tuning recipe and the bootstrap of the embedded default).
"""

from engine.mvgen.errors import CheckpointError, GenerationError, TrainingError
from engine.mvgen.pipeline import (
    MultiViewConfig,
    MultiViewOutput,
    MultiViewVideoPipeline,
    default_checkpoint_path,
)

__all__ = [
    "CheckpointError",
    "GenerationError",
    "MultiViewConfig",
    "MultiViewOutput",
    "MultiViewVideoPipeline",
    "TrainingError",
    "default_checkpoint_path",
]
