"""The names of a dataset's Delta tables (``<warehouse>/<dataset>/<name>/``): one constant each, the one place
library code spells them. Schemas are in :mod:`mmsrarec_lib.schemas`, the analysts' descriptions in
:mod:`mmsrarec_lib.sql.catalog`; ``tests/test_tables.py`` checks the three agree."""

from __future__ import annotations

# ingest (stage 0): the catalogue, the events and what evaluation is built on
ITEMS = "items"
ITEMS_QUARANTINE = "items_quarantine"  # item rows ingest rejected, with the reason
INTERACTIONS = "interactions"
INTERACTIONS_QUARANTINE = "interactions_quarantine"
USER_SEQUENCES = "user_sequences"
SPLIT_LOO = "split_loo"
EVAL_CANDIDATES = "eval_candidates"

# stage outputs
ITEM_KEYWORDS = "item_keywords"  # stage 1
ITEM_IMAGE_FEATURES = "item_image_features"  # image encoder features (mmsrarec encode-images)
USER_COLLAB_KEYWORDS = "user_collab_keywords"  # stage 2
RECOMMENDATIONS = "recommendations"  # stage 3

# run accounting
INGEST_RUNS = "ingest_runs"
DATASET_RUNS = "dataset_runs"  # runs that write a dataset (pinning manifest)
MODEL_RUNS = "model_runs"
EVALUATION_RUNS = "evaluation_runs"

# the load-test table of mmsrarec_lib.testing.writers (not part of the product)
USER_EVENT_COUNTS = "user_event_counts"

QUARANTINE = (ITEMS_QUARANTINE, INTERACTIONS_QUARANTINE)
ALL = (ITEMS, ITEMS_QUARANTINE, INTERACTIONS, INTERACTIONS_QUARANTINE, USER_SEQUENCES, SPLIT_LOO, EVAL_CANDIDATES,
       ITEM_KEYWORDS, ITEM_IMAGE_FEATURES, USER_COLLAB_KEYWORDS, RECOMMENDATIONS, INGEST_RUNS, DATASET_RUNS,
       MODEL_RUNS, EVALUATION_RUNS)  # the product's tables (every one in the SQL catalog)
