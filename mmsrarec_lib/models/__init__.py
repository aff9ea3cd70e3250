"""ID-based baseline recommenders: popularity (``pop``) and SASRec (``sasrec``).

Both map string item ids to dense indices internally and expose the evaluation ``Scorer`` interface
(``mmsrarec_lib.eval.registry``). SASRec is also the user encoder of the collaborative retrieval stage:
``load_sasrec(warehouse, dataset, run_id).embed(histories)``.
"""

from __future__ import annotations

MODELS_DIR = "models"  # checkpoints live at <warehouse>/<dataset>/models/<run_id>/
