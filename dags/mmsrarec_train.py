"""# mmsrarec_train: train and evaluate the models, then write the report

- `train_baseline` (SASRec, `mmsrarec train-baseline`, saved as model run `sasrec-<airflow run>`) →
  `evaluate_baseline`; the same SASRec embeds users for the collaborative index;
- `train_summarizer` (stage 1: GRPO-tuned keyword summarizer, `summarizer_backend`) → `summarize` with that policy
  run (writes `item_keywords` for `summarizer_version`);
- both → `build_collab` (stage 2: SASRec user embeddings, faiss index, `user_collab_keywords`) →
  `train_recommender` (stage 3: LoRA fine-tuning of the MLLM recommender, model run `mmsrarec-<airflow run>`) →
  `evaluate_recommender`;
- `report` (metrics table and plots from `evaluation_runs`) after both evaluations.

Model and evaluation run ids derive from the Airflow run id, so a retried task overwrites its own failed try.

GPU-heavy tasks (training, MLLM summarizing, MLLM evaluation) run in the pool `$MMSRAREC_GPU_POOL` (default
`default_pool`) and, when `$MMSRAREC_GPU_QUEUE` is set, on that executor queue (e.g. `gpu` workers).

Params: `dataset`, `warehouse`, `seed`, `summarizer_version`, `summarizer_backend` (`extractive`, the CLI's
default, or `mllm`),
`protocol` (`paper`: 1 positive + 20 negatives; `full`: all items), typed knobs to size a run (`baseline_epochs`,
`summarizer_steps`, `summarizer_limit`, `keyword_encoder`, `collab_k`, `train_steps`; empty = the job's default),
`progress` (false: no progress bars in the task logs) and the escape hatch `extra_args`, extra flags per command for
settings without a param (e.g. `{"train-recommender": "--lora-rank 16"}`). Manual (no schedule); `max_active_runs=1`
because runs write the same model versions. Every job overwrites what it wrote for its version, so a retried or repeated
run leaves no duplicates.
"""

from __future__ import annotations

import _mmsrarec_common as common
from airflow.sdk import DAG, Param, task

GPU = common.gpu_task_kwargs()

with DAG(
    dag_id="mmsrarec_train",
    doc_md=__doc__,
    schedule=None,
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*common.TAGS, "train", "gpu"],
    default_args=common.default_args(),
    params={
        **common.warehouse_params(),
        "seed": Param(42, type="integer", description="random seed of every training job"),
        "summarizer_version": Param("v1", type="string", minLength=1, description="version of the keywords"),
        "summarizer_backend": Param("extractive", enum=["extractive", "mllm"],
                                    description="keyword summarizer (mllm: --base-model style HF model)"),
        "protocol": Param("paper", enum=["paper", "full"], description="evaluation protocol"),
        "baseline_epochs": common.optional_int("train-baseline: SASRec epochs"),
        "summarizer_steps": common.optional_int("train-summarizer: GRPO steps"),
        "summarizer_limit": common.optional_int("train-summarizer: only the first N items"),
        "keyword_encoder": common.optional_string("train-summarizer and summarize: phi of R_info (minilm, hashing, "
                                                  "a path)"),
        "collab_k": common.optional_int("build-collab: neighbours per user"),
        "train_steps": common.optional_int("train: fine-tuning steps"),
        "progress": Param(True, type="boolean", description="progress bars in the task logs"),
        "extra_args": common.extra_args_param('{"train-recommender": "--lora-rank 16", "evaluate": "--seeds 3"}'),
    },
) as dag:

    @task(**GPU)
    def train_baseline(run_id=None, params=None) -> str:
        sasrec_run = common.tag("sasrec", run_id)
        argv = common.wh_args(params) + ["--model", "sasrec", "--protocol", params["protocol"]]
        argv += ["--seed", str(params["seed"]), "--run-id", sasrec_run]
        argv += common.flags(params, {"baseline_epochs": "--epochs", "progress": "--no-progress"})
        common.run("train-baseline", argv + common.extra(params, "train-baseline"))
        return sasrec_run

    @task(outlets=[common.table_asset("evaluation_runs")])
    def evaluate_baseline(sasrec_run: str, params=None) -> None:
        argv = common.wh_args(params) + ["--model", sasrec_run, "--protocol", params["protocol"]]
        argv += ["--run-id", f"eval-{sasrec_run}"] + common.flags(params, {"progress": "--no-progress"})
        common.run("evaluate", argv + common.extra(params, "evaluate"))

    @task(**GPU)
    def train_summarizer(params=None) -> str | None:
        argv = common.wh_args(params) + ["--backend", params["summarizer_backend"], "--seed", str(params["seed"])]
        argv += common.flags(params, {"summarizer_steps": "--steps", "summarizer_limit": "--limit",
                                      "keyword_encoder": "--encoder"})
        summary = common.run("train-summarizer", argv + common.extra(params, "train-summarizer"))
        return (summary or {}).get("run_id")

    @task(**GPU, outlets=[common.table_asset("item_keywords")])
    def summarize(policy_run: str | None, params=None) -> None:
        argv = common.wh_args(params) + ["--summarizer-version", params["summarizer_version"]]
        argv += ["--backend", params["summarizer_backend"]]
        if policy_run:  # the policy / tuned MLLM just trained (else the job takes the latest one)
            argv += ["--policy-run", policy_run]
        argv += common.flags(params, {"keyword_encoder": "--encoder", "progress": "--no-progress"})
        common.run("summarize", argv + common.extra(params, "summarize"))

    @task(outlets=[common.table_asset("user_collab_keywords")])
    def build_collab(sasrec_run: str, params=None) -> None:
        argv = common.wh_args(params) + ["--summarizer-version", params["summarizer_version"]]
        argv += ["--sasrec-run", sasrec_run] + common.flags(params, {"collab_k": "--k"})
        common.run("build-collab", argv + common.extra(params, "build-collab"))

    @task(**GPU)
    def train_recommender(sasrec_run: str, run_id=None, params=None) -> str:
        model_run = common.tag("mmsrarec", run_id)  # the same id on a retry: training resumes its checkpoint
        argv = common.wh_args(params) + ["--keywords", params["summarizer_version"], "--generator-run", sasrec_run]
        argv += ["--protocol", params["protocol"], "--seed", str(params["seed"]), "--run-id", model_run]
        argv += common.flags(params, {"train_steps": "--steps", "progress": "--no-progress"})
        common.run("train-recommender", argv + common.extra(params, "train-recommender"))
        return model_run

    @task(**GPU, outlets=[common.table_asset("evaluation_runs")])
    def evaluate_recommender(model_run: str, params=None) -> None:
        argv = common.wh_args(params) + ["--model", model_run, "--protocol", params["protocol"]]
        argv += ["--run-id", f"eval-{model_run}"] + common.flags(params, {"progress": "--no-progress"})
        common.run("evaluate", argv + common.extra(params, "evaluate"))

    @task
    def report(params=None) -> None:
        common.run("report", common.wh_args(params) + common.extra(params, "report"))

    sasrec_run = train_baseline()
    keywords = summarize(train_summarizer())
    collab = build_collab(sasrec_run)
    keywords >> collab
    model_run = train_recommender(sasrec_run)
    collab >> model_run
    [evaluate_baseline(sasrec_run), evaluate_recommender(model_run)] >> report()
