"""What names and configures a stage-3 run, and where it lives: the bottom of the stage-3 training modules.

``KIND`` (``model.json``'s and ``model_runs``' kind), the ``VARIANTS``, ``RecTrainConfig`` (and its JSON form,
``config_dict``/``config_from_dict``), the run folder ``<warehouse>/<dataset>/models/<run_id>/`` (``run_uri``,
``start_run``, ``refuse_complete``), the training sequences of a protocol and the runs stage 3 builds on
(``latest_generator``, ``latest_run``). Imported by both backbones' training modules (``training``,
``encoder_run``, ``encoder_pipeline``) and by the scorers; imports none of them.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmsrarec_lib.model_runs import latest_complete_run, latest_serving_run
from mmsrarec_lib.recommend.finetune import LoraSettings, TrainSettings
from mmsrarec_lib.recommend.prompts import PromptConfig
from mmsrarec_lib.runs import new_run_id
from mmsrarec_lib.storage import Warehouse

KIND = "mmsrarec"
TINY_LLAVA = "tiny-llava"  # --base-model value that builds the tiny random LLaVA (decoder-path test fixture)
# variant name -> (keyword source, use neighbours, tasks)
VARIANTS: dict[str, tuple[str, bool, str]] = {
    "mmsrarec": ("summary", True, "all"),
    "mmsrarec-no-retrieval": ("summary", False, "all"),
    "mmsrarec-no-summary": ("raw", True, "all"),
    "mmsrarec-no-multitask": ("summary", True, "yesno"),
    "mmsrarec-id-token": ("summary", True, "all"),
}
ID_TOKEN_VARIANTS = ("mmsrarec-id-token",)  # + the candidate's SASRec item vector as one input token


@dataclass(frozen=True)
class RecTrainConfig:
    """One training run. ``base_model``: None = the minilm-effnet backbone; a HF id or path = the decoder path
    (``"tiny-llava"`` builds the tiny random LLaVA into the run folder: the decoder path's test fixture).
    ``choose_fusion``: the minilm-effnet path picks ``fusion_weight`` on validation users after training."""

    dataset: str
    protocol: str = "paper"
    variant: str = "mmsrarec"
    keyword_source: str = "summary"
    use_neighbors: bool = True
    tasks: str = "all"
    base_model: str | None = None  # None = the minilm-effnet backbone
    id_token: bool = False
    positions_per_user: int = 3
    fusion_weight: float = 1.0
    choose_fusion: bool = True
    generator_run: str | None = None
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainSettings = field(default_factory=TrainSettings)

    @classmethod
    def for_variant(cls, variant: str, **kwargs: Any) -> RecTrainConfig:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")
        source, neigh, tasks = VARIANTS[variant]
        return cls(variant=variant, keyword_source=source, use_neighbors=neigh, tasks=tasks,
                   id_token=variant in ID_TOKEN_VARIANTS, **kwargs)


def run_uri(warehouse: Warehouse, dataset: str, run_id: str) -> str:
    return warehouse.uri(dataset, "models", run_id)


def refuse_complete(warehouse: Warehouse, dataset: str, run_id: str) -> None:
    """A ValueError when ``run_id`` already finished (its ``model.json`` exists): a complete run is never resumed."""
    base_uri = run_uri(warehouse, dataset, run_id)
    if warehouse.exists(f"{base_uri}/model.json"):
        raise ValueError(f"run {run_id!r} is already complete at {base_uri}")


def start_run(warehouse: Warehouse, dataset: str, run_id: str | None) -> tuple[str, str, Path | None, Path]:
    """(run id, its warehouse URI, its local folder or None on object storage, the folder to work in) of a new or
    resumed training run; refuses a run that is already complete."""
    run_id = run_id or new_run_id(KIND)
    base_uri = run_uri(warehouse, dataset, run_id)
    refuse_complete(warehouse, dataset, run_id)
    local = warehouse.local_path(base_uri)
    work = local if local is not None else Path(tempfile.mkdtemp(prefix=f"mmsrarec-{run_id}-"))
    return run_id, base_uri, local, work


def training_sequences(warehouse: Warehouse, dataset: str, protocol: str) -> dict[str, list[str]]:
    """user_id -> training sequence, by the harness' rule (``mmsrarec_lib.eval.protocols.training_data``)."""
    from mmsrarec_lib.eval.protocols import training_data

    data = training_data(warehouse, dataset, protocol)
    return dict(zip(data.user_ids, data.sequences, strict=True))


def latest_generator(warehouse: Warehouse, dataset: str, protocol: str) -> str:
    """The SASRec run trained for ``protocol`` that stage 3 uses (candidate generator and fusion signal)."""
    return latest_complete_run(warehouse, dataset=dataset, kind="sasrec", protocol=protocol)


def config_dict(config: RecTrainConfig) -> dict:
    d = asdict(config)
    d["train"]["lora"]["target_modules"] = list(config.train.lora.target_modules)
    return d


def config_from_dict(d: dict) -> RecTrainConfig:
    train = dict(d["train"])
    train["lora"] = LoraSettings(**{**train["lora"], "target_modules": tuple(train["lora"]["target_modules"])})
    return RecTrainConfig(**{**d, "prompt": PromptConfig(**d["prompt"]), "train": TrainSettings(**train)})


def latest_run(warehouse: Warehouse, dataset: str, *, variant: str = "mmsrarec") -> str:
    """The stage-3 run ``mmsrarec recommend`` uses by default (:func:`mmsrarec_lib.model_runs.latest_serving_run`)."""
    return latest_serving_run(warehouse, dataset=dataset, variant=variant)
