"""trainer: learns feed-forward image-to-3D models (LRM) from catalog subsets.

Owns the sharded loader, the LRM, its losses, multi-stage training, real-data fine-tuning,
evaluation, mesh export and scaling experiments.
"""
