"""engine: turns captions into scored multi-view samples.

Owns prompts (ingest, object-centric filter, dedup), the durable prompt queue, 3D assets and
the orbit renderer, the multi-view video model (diffusers) and its fine-tuning, quality
scoring, and the dispatcher that feeds the generator fleet.
"""
