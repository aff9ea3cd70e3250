"""Bench: cached scoring vs one full pass per candidate (candidates/s at 21 and 50 candidates), and the
``recommend`` throughput (users/s) on a toy warehouse, on this CPU.

    .venv/bin/python bench/scoring.py [--quick] [--users 8] [--skip-decoder]

1. ``minilm-effnet`` (the CPU default, the real pretrained MiniLM): the user part once per user and each item's
   tokens once (``EncoderReranker.mllm_scores``) against ``reference_scores`` (text encoder over user and item
   text + the whole block, per candidate); realistic user text (5 items with keywords + neighbours, ~90 tokens).
2. the decoder path (``--base-model``, here the tiny LLaVA): KV-cache shared prefix vs one pass per candidate.
Prints one line per figure, with the speed-up ratio and the max |difference| of the scores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def bench_scoring(model_dir: Path, *, repeat: int, batch_size: int) -> None:
    import numpy as np

    from mmsrarec_lib.mllm.loading import load_mllm
    from mmsrarec_lib.recommend.decoder_scoring import PromptEncoder, score_naive, score_shared_prefix
    from mmsrarec_lib.recommend.prompts import Candidate, PromptConfig, build_suffix
    from mmsrarec_lib.recommend.tasks import user_prefix
    from mmsrarec_lib.runtime_env import configure_threads
    from tests._recommend_warehouse import GENRES, _jpeg

    print(f"torch threads: {configure_threads(default=1, cpu_only=True)}")
    model, processor = load_mllm(str(model_dir))
    enc = PromptEncoder(processor)
    cfg = PromptConfig()
    items = {f"i{k}": Candidate(f"i{k}", f"Movie title number {k}", tuple(GENRES[(k + j) % 8] + f" theme{j}"
                                                                           for j in range(6)), has_image=True)
             for k in range(60)}
    prefix_text = user_prefix(history=[f"i{k}" for k in range(5)],
                              neighbors=[[f"{g} neighbour keyword" for g in GENRES[:4]]] * 3, items=items, config=cfg)
    prefix = enc.encode_prefix(prefix_text)
    print(f"prefix tokens: {prefix.shape[0]}")
    for n in (21, 50):
        sufs = [enc.encode_suffix(build_suffix(candidate=items[f"i{k}"], config=cfg), _jpeg(k)) for k in range(n)]
        print(f"suffix tokens (mean, {n} candidates): {np.mean([s.input_ids.shape[0] for s in sufs]):.0f}")
        kw = dict(prefix_ids=prefix, suffixes=sufs, yes_id=enc.yes_id, no_id=enc.no_id)
        t_naive = _time(lambda: score_naive(model, **kw), repeat)
        t_shared = _time(lambda: score_shared_prefix(model, batch_size=batch_size, pad_id=enc.pad_id, **kw), repeat)
        diff = np.abs(score_naive(model, **kw) - score_shared_prefix(model, batch_size=batch_size,
                                                                     pad_id=enc.pad_id, **kw)).max()
        print(f"{n} candidates: naive {n / t_naive:.1f} cand/s, shared-prefix {n / t_shared:.1f} cand/s, "
              f"speed-up x{t_naive / t_shared:.2f} (max |diff| {diff:.1e})")


def bench_encoder(*, repeat: int) -> None:
    import numpy as np
    import torch

    from mmsrarec_lib.models.minilm_effnet import BackboneConfig, build_backbone
    from mmsrarec_lib.recommend.context import RecContext
    from mmsrarec_lib.recommend.encoder_inputs import EncoderPromptConfig, FeatureBank, InputBuilder
    from mmsrarec_lib.recommend.encoder_scorer import EncoderReranker
    from mmsrarec_lib.recommend.prompts import Candidate
    from mmsrarec_lib.runtime_env import configure_threads
    from tests._recommend_warehouse import GENRES

    print(f"minilm-effnet, torch threads: {configure_threads(default=1, cpu_only=True)}")
    model, tok = build_backbone(BackboneConfig(), seed=0)
    items = {f"i{k}": Candidate(f"i{k}", f"Movie title number {k}", tuple(GENRES[(k + j) % 8] + f" theme{j}"
                                                                           for j in range(6)), has_image=True)
             for k in range(60)}
    ctx = RecContext(items=items, descriptions={}, keywords={i: list(c.keywords) for i, c in items.items()},
                     images={})
    rng = np.random.default_rng(0)
    feats = {i: rng.standard_normal(1280).astype("float32") for i in items}
    builder = InputBuilder(tok, ctx, EncoderPromptConfig())
    from mmsrarec_lib.recommend.encoder_inputs import n_tokens

    neigh = [["space adventure", "robots", "war", "drama"]] * 3
    user = builder.user([f"i{k}" for k in range(5)], neigh)
    print(f"user tokens: {n_tokens(user)}, item tokens: {n_tokens(builder.item('i7'))}, block tokens per candidate: "
          f"{model.n_item_tokens}")
    with torch.no_grad():
        for n in (21, 50):
            cands = [f"i{k}" for k in range(n)]

            def cached():  # a fresh item cache each time: the per-run item encoding is part of the cost
                rr = EncoderReranker(model=model, builder=builder, features=FeatureBank(image=feats, image_dim=1280),
                                     progress=False)
                return rr.mllm_scores(None, [f"i{k}" for k in range(5)], cands)  # no neighbours: user_of=None

            ref_rr = EncoderReranker(model=model, builder=builder, features=FeatureBank(image=feats, image_dim=1280),
                                     progress=False)
            warm = EncoderReranker(model=model, builder=builder, features=FeatureBank(image=feats, image_dim=1280),
                                   progress=False)
            warm.item_tokens(cands)  # items already cached (every later user of a run)
            t_ref = _time(lambda: ref_rr.reference_scores(None, [f"i{k}" for k in range(5)], cands), repeat)
            t_cold = _time(cached, repeat)
            t_warm = _time(lambda: warm.mllm_scores(None, [f"i{k}" for k in range(5)], cands), repeat)
            diff = np.abs(cached() - ref_rr.reference_scores(None, [f"i{k}" for k in range(5)], cands)).max()
            print(f"{n} candidates: one full pass per candidate {n / t_ref:.1f} cand/s; cached user part "
                  f"{n / t_cold:.1f} cand/s (x{t_ref / t_cold:.2f}, items encoded in the call), "
                  f"{n / t_warm:.1f} cand/s (x{t_ref / t_warm:.2f}, items already cached); max |diff| {diff:.1e}")


def bench_recommend(users: int, steps: int) -> None:
    from mmsrarec_lib.models.baselines import fit_baseline
    from mmsrarec_lib.recommend.batch import RecommendConfig, recommend
    from mmsrarec_lib.recommend.finetune import TrainSettings
    from mmsrarec_lib.recommend.run_config import RecTrainConfig
    from mmsrarec_lib.recommend.topk import TopKConfig
    from mmsrarec_lib.recommend.training import train_recommender
    from mmsrarec_lib.storage import Warehouse
    from tests import _recommend_warehouse as toy

    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse.from_uri(tmp)
        toy.build(wh, n_items=80, n_users=users)
        gen = fit_baseline(wh, "toy", kind="sasrec", protocol="paper", seed=0,
                           sasrec_overrides={"epochs": 1, "dim": 16}, progress=False).run_id
        from dataclasses import replace

        from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig

        enc = EncoderRunConfig()
        enc = replace(enc, train=replace(enc.train, max_steps=steps, batch_size=4, save_every=steps))
        train_recommender(wh, config=RecTrainConfig.for_variant(
            "mmsrarec", dataset="toy", generator_run=gen,
            train=TrainSettings(max_steps=steps, batch_size=4, save_every=steps)), run_id="bench", progress=False,
            encoder=enc)
        out = recommend(wh, config=RecommendConfig(dataset="toy", model_run="bench", run_date=dt.date(2026, 1, 1),
                                                   users="all", topk=TopKConfig(top_m=50, top_k=10)), progress=False)
        print(f"recommend: {out['users']} users, top-M 50 -> top-K 10, {out['seconds']:.1f} s, "
              f"{out['users_per_second']:.2f} users/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and users")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--skip-decoder", action="store_true", help="only the minilm-effnet figures")
    args = ap.parse_args()
    repeat = 1 if args.quick else 3
    users = args.users or (6 if args.quick else 20)
    from mmsrarec_lib.mllm.tiny import build_tiny_mllm
    from mmsrarec_lib.recommend.prompts import ANSWER_CUE, INSTRUCTION
    from tests._recommend_warehouse import GENRES

    bench_encoder(repeat=repeat)
    bench_recommend(users, steps=2)
    if args.skip_decoder:
        return
    text = f"{INSTRUCTION} {ANSWER_CUE} yes no Candidate: Keywords: {' '.join(GENRES)} Movie title number theme"
    with tempfile.TemporaryDirectory() as tmp:
        d = build_tiny_mllm(Path(tmp) / "m", texts=[text] * 50)
        print("decoder path (tiny LLaVA):")
        bench_scoring(d, repeat=repeat, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
