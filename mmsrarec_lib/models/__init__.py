"""Every model of the project, one file each: the ID-based baselines popularity (``pop``) and SASRec
(``sasrec``), with ``baselines`` (fit/load them as runs), and ``minilm_effnet``, the stage-3 backbone (MiniLM +
LoRA, EfficientNet image tokens, interaction block; trained and scored by ``mmsrarec_lib.recommend``).

The baselines map string item ids to dense indices internally and expose the evaluation ``Scorer`` interface
(``mmsrarec_lib.eval.registry``). SASRec is also the user encoder of the collaborative retrieval stage:
``load_sasrec(warehouse, dataset, run_id).embed(histories)``.
"""

from __future__ import annotations

MODELS_DIR = "models"  # checkpoints live at <warehouse>/<dataset>/models/<run_id>/
