"""catalog: where every vf3d sample lives.

Owns the settings, the object store (local directory or S3/MinIO), the DuckLake catalog
(schema, migrations, atomic batch commits, snapshots), curators' read-only SQL, and subsets.
"""
