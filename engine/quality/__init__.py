"""Quality scores for multi-view orbit samples (consistency, framing, sharpness, prompt colour, CLIP)."""

from catalog.errors import Vf3dError


class QualityConfigError(Vf3dError, ValueError):
    """A quality setting (CLIP model path, weights) cannot be used; the message says the fix."""


from engine.quality.scores import (  # noqa: E402
    DEFAULT_WEIGHTS,
    SCORE_NAMES,
    SCORER_VERSION,
    QualityScorer,
    SampleScores,
    overall_score,
    score_batch,
)

__all__ = [
    "DEFAULT_WEIGHTS", "QualityConfigError", "QualityScorer", "SCORER_VERSION", "SCORE_NAMES", "SampleScores",
    "overall_score", "score_batch",
]
