"""Errors of the multi-view generator; each message names the problem and the fix."""

from catalog.errors import Vf3dError


class CheckpointError(Vf3dError):
    """A generator checkpoint is missing, incomplete or corrupt."""


class GenerationError(Vf3dError, ValueError):
    """A generation request the checkpoint cannot serve (bad views, missing image, ...)."""


class TrainingError(Vf3dError, ValueError):
    """A fine-tuning request that cannot run as given (bad freeze mode, empty data, ...)."""
