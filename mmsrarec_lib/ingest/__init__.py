"""Ingest: input files -> Spark (validate, dedup, quarantine, load images) -> Delta tables via delta-rs.

Entry point: :func:`mmsrarec_lib.ingest.run.run_ingest`. The pieces:

- :mod:`.sources`: read CSV/TSV/JSONL/Parquet (plus the built-in movielens-100k source) into Arrow on the driver,
  every value a string (``categories`` a list), with a 1-based ``source_row``;
- :mod:`.images`: fetch/decode/bound/re-encode one image with a status (pure Python, runs inside Spark workers);
- :mod:`.items`: Spark job ``build_item_table``;
- :mod:`.interactions`: Spark job ``build_interactions`` and ``user_sequences``;
- :mod:`.splits`: k-core, ``split_loo`` and ``eval_candidates``.
"""
