"""``mmsrarec compare``: Pop, SASRec, MMSRARec and its three ablations, N seeds, both protocols, one run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "compare"
HELP = ("train and evaluate Pop, SASRec, MMSRARec, the MLLM alone, the id-token variant and the ablations over N "
        "seeds under the paper, full and sampled protocols into evaluation_runs (one run id), then print mean ± std "
        "and paired intervals against SASRec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--protocols", default="paper,full,sampled",
                        help="comma list of paper, full, sampled, cold (sampled reuses the full protocol's models; "
                             "cold trains its own without the held-out items)")
    parser.add_argument("--models", default="all", help="'all' or a comma list (pop,sasrec,mmsrarec,...)")
    parser.add_argument("--run-id", default=None, help="evaluation run id; the same id again resumes")
    parser.add_argument("--steps", type=int, default=None,
                        help="fine-tuning steps per MMSRARec variant (default: 150)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 minilm-effnet, 8 decoder")
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-3 minilm-effnet, 2e-3 decoder")
    parser.add_argument("--top-m", type=int, default=50, help="full protocol: SASRec candidates reranked")
    parser.add_argument("--fusion-weight", type=float, default=None,
                        help="fixed fusion weight (default: each run's weight, chosen on its validation users)")
    parser.add_argument("--sasrec-epochs", type=int, default=None)
    parser.add_argument("--base-model", default=None, help="HF id or path (default: tiny LLaVA per run)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run in parallel as separate processes (one run id; each seed's rows on their own)")
    parser.add_argument("--no-progress", action="store_true")


@dataclass(frozen=True)
class CompareJobConfig:
    dataset: str
    seeds: tuple[int, ...]
    protocols: tuple[str, ...]
    models: tuple[str, ...] | None
    run_id: str | None
    steps: int | None
    batch_size: int | None
    lr: float | None
    top_m: int
    fusion_weight: float | None
    sasrec_epochs: int | None
    base_model: str | None
    progress: bool
    jobs: int = 1

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> CompareJobConfig:
        if a.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {a.seeds}")
        models = None if a.models == "all" else tuple(m.strip() for m in a.models.split(",") if m.strip())
        return cls(dataset=a.dataset, seeds=tuple(range(a.seed, a.seed + a.seeds)),
                   protocols=tuple(p.strip() for p in a.protocols.split(",") if p.strip()), models=models,
                   run_id=a.run_id, steps=a.steps, batch_size=a.batch_size, lr=a.lr, top_m=a.top_m,
                   fusion_weight=a.fusion_weight, sasrec_epochs=a.sasrec_epochs, base_model=a.base_model,
                   progress=not a.no_progress, jobs=max(1, a.jobs))


def run_seeds_in_parallel(argv: list[str], *, seeds: tuple[int, ...], run_id: str, jobs: int) -> None:
    """One ``compare --seed s --seeds 1 --run-id RUN`` subprocess per seed, ``jobs`` at a time; each writes its own
    rows (concurrent Delta appends are safe) and its output lines are prefixed with the seed."""
    import subprocess
    import sys
    import threading

    base = [a for a in argv]
    pending, running, failed = list(seeds), [], []

    def pump(proc, seed):
        for line in proc.stdout:
            print(f"[seed {seed}] {line}", end="", flush=True)

    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            cmd = [sys.executable, "-m", "jobs.cli", "compare", *base, "--seed", str(seed), "--seeds", "1",
                   "--run-id", run_id, "--jobs", "1"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            t = threading.Thread(target=pump, args=(proc, seed), daemon=True)
            t.start()
            running.append((proc, seed, t))
        proc, seed, t = running.pop(0)
        if proc.wait() != 0:
            failed.append(seed)
        t.join()
    if failed:
        raise RuntimeError(f"compare failed for seed(s) {failed}: see the [seed N] lines above")


def _strip(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """argv without the given options (and their values)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        if any(a.startswith(n + "=") for n in names):
            continue
        out.append(a)
    return out


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.runtime_env import configure_threads

    configure_threads(default=1, cpu_only=True)  # the offline defaults are set once by jobs/cli.py
    from dataclasses import replace

    from mmsrarec_lib.recommend.compare import ALL_MODELS, CompareConfig, intervals_table, run_compare, summary_table
    from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig
    from mmsrarec_lib.recommend.finetune import TrainSettings
    from mmsrarec_lib.recommend.fusion import ScoringConfig
    from mmsrarec_lib.runs import new_run_id

    c = CompareJobConfig.from_args(args)
    wh = warehouse_from_args(args)
    if c.models is None:  # "all": the rows that need a content index only when one exists
        from mmsrarec_lib.candidates.store import latest_content_version
        from mmsrarec_lib.recommend.compare import CONTENT, UNION

        if latest_content_version(wh, c.dataset) is None:
            print(f"no content index for {c.dataset!r} (mmsrarec index-content): skipping {CONTENT} and {UNION}")
            c = replace(c, models=tuple(m for m in ALL_MODELS if m not in (CONTENT, UNION)))
    run_id = c.run_id or new_run_id("compare")
    print(f"comparison run {run_id} on {c.dataset}: seeds {list(c.seeds)}, protocols {list(c.protocols)}")
    if c.jobs > 1 and len(c.seeds) > 1:
        import sys

        from mmsrarec_lib.recommend.encoder_pipeline import warm_piece_cache

        if c.base_model is None:  # once here, so the parallel seeds only load the frozen piece vectors
            warm_piece_cache(wh, c.dataset)
        argv = _strip(sys.argv[sys.argv.index("compare") + 1 :], ("--seed", "--seeds", "--run-id", "--jobs"))
        run_seeds_in_parallel(argv, seeds=c.seeds, run_id=run_id, jobs=c.jobs)
        print(summary_table(wh, c.dataset, run_id))
        print(intervals_table(wh, c.dataset, run_id, models=c.models or ALL_MODELS, protocols=c.protocols,
                              seeds=c.seeds))
        return 0
    steps = c.steps or 150
    enc = EncoderRunConfig()
    enc = replace(enc, train=replace(enc.train, **{k: v for k, v in (("max_steps", c.steps), ("batch_size",
                  c.batch_size), ("lr", c.lr)) if v is not None}))
    cfg = CompareConfig(
        dataset=c.dataset, run_id=run_id, seeds=c.seeds, protocols=c.protocols, models=c.models or ALL_MODELS,
        train=TrainSettings(max_steps=steps, batch_size=c.batch_size or 8, lr=c.lr or 2e-3,
                            warmup_steps=min(20, steps), save_every=max(1, steps // 3)),
        encoder=replace(enc, train=replace(enc.train, save_every=max(1, enc.train.max_steps // 3))),
        scoring=ScoringConfig(fusion_weight=c.fusion_weight, top_m=c.top_m),
        sasrec={"epochs": c.sasrec_epochs} if c.sasrec_epochs else {}, base_model=c.base_model, progress=c.progress)
    run_compare(wh, config=cfg)
    print(summary_table(wh, c.dataset, run_id))
    print(intervals_table(wh, c.dataset, run_id, models=cfg.models, protocols=c.protocols, seeds=c.seeds))
    return 0
