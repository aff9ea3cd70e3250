"""GPU check: on a machine with CUDA, run the summarizer and the recommender on a larger tiny-architecture MLLM and
print their throughput; without CUDA, say so and exit 0.

What it runs (real project code, random weights; the figures are throughput, not quality):
1. ``build_tiny_mllm`` with a larger config (LLaVA: 8-layer 1024-d Llama + 4-layer CLIP tower, 224 px images,
   196 image tokens; ~150 M parameters) and ``load_mllm`` on the GPU (bfloat16).
2. Summarizer: ``MllmSummarizer.summarize`` (batched greedy generation, text and image prompts separately, plus
   the R_recon scoring pass) over synthetic items -> items/s per modality.
3. Recommender: ``score_shared_prefix`` vs ``score_naive`` for each user's candidates (with images) -> candidates/s,
   speed-up and max |difference|.
4. faiss-gpu (when the GPU build is installed): exact inner-product search -> queries/s.

    python bench/gpu_check.py                   # skips cleanly without CUDA
    python bench/gpu_check.py --allow-cpu --quick   # the same code path on the CPU with the small tiny model
Exit code: 0 when every stage ran (or CUDA is absent), 1 when a stage failed (its error is printed).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsrarec_lib.runtime_env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()  # offline hubs, no tokenizer threads: the jobs' defaults (mmsrarec_lib/runtime_env.py)

GENRES = ("drama", "comedy", "action", "thriller", "romance", "science fiction", "animation", "documentary")


@dataclass(frozen=True)
class CheckConfig:
    device: str
    items: int
    users: int
    candidates: int
    batch_size: int
    max_new_tokens: int
    large: bool


def _jpeg(seed: int, side: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (side, side), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _items(n: int, side: int):
    from mmsrarec_lib.summarize.types import ItemInput

    return [ItemInput(item_id=str(i), title=f"Movie number {i}",
                      description=f"A {GENRES[i % 8]} film about a {GENRES[(i * 3) % 8]} journey, part {i}.",
                      categories=(GENRES[i % 8], GENRES[(i + 1) % 8]), image_bytes=_jpeg(i, side))
            for i in range(n)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def model_config(large: bool):
    """The larger tiny-architecture config for the GPU; the default tiny one for ``--allow-cpu``."""
    from mmsrarec_lib.mllm.tiny import TinyMllmConfig

    if not large:
        return TinyMllmConfig()
    return replace(TinyMllmConfig(), vocab_size=8000, hidden_size=1024, intermediate_size=2816, num_layers=8,
                   num_heads=16, num_kv_heads=8, vision_hidden_size=256, vision_layers=4, vision_heads=8,
                   image_size=224, patch_size=16, init_std=0.02)


def check_summarizer(model, processor, cfg: CheckConfig, side: int) -> dict:
    from mmsrarec_lib.summarize.backends import MllmSummarizer
    from mmsrarec_lib.summarize.encoders import make_encoder
    from mmsrarec_lib.summarize.rewards import MllmScorer

    summarizer = MllmSummarizer(model=model, processor=processor, encoder=make_encoder("hashing"),
                                scorer=MllmScorer(model, processor), batch_size=cfg.batch_size,
                                max_new_tokens=cfg.max_new_tokens)
    items = _items(cfg.items, side)
    summarizer.summarize(items[:2])  # warm-up (kernels, caches)
    out = {}
    for modality in ("text", "image"):
        _sync(cfg.device)
        t0 = time.perf_counter()
        results = summarizer.summarize_modality(items, modality)
        _sync(cfg.device)
        seconds = time.perf_counter() - t0
        out[modality] = {"items": len(results), "seconds": round(seconds, 3),
                         "items_per_s": round(len(results) / seconds, 2),
                         "example": results[0].keywords[:5] if results else []}
        print(f"summarizer {modality:5}: {len(results)} items in {seconds:.2f}s = {len(results) / seconds:.1f} "
              f"items/s (batch {cfg.batch_size}, {cfg.max_new_tokens} new tokens)", flush=True)
    return out


def check_recommender(model, processor, cfg: CheckConfig, side: int) -> dict:
    import numpy as np
    import torch

    from mmsrarec_lib.recommend.decoder_scoring import EncodedSuffix, PromptEncoder, score_naive, score_shared_prefix
    from mmsrarec_lib.recommend.prompts import Candidate, PromptConfig, build_suffix
    from mmsrarec_lib.recommend.tasks import user_prefix

    enc = PromptEncoder(processor)
    pcfg = PromptConfig()
    dev = torch.device(cfg.device)
    catalogue = {f"i{k}": Candidate(f"i{k}", f"Movie number {k}", tuple(f"{GENRES[(k + j) % 8]} theme {j}"
                                                                        for j in range(6)), has_image=True)
                 for k in range(cfg.candidates + 5)}
    prefixes, suffix_sets = [], []
    for u in range(cfg.users):
        text = user_prefix(history=[f"i{(u + k) % 5}" for k in range(5)],
                           neighbors=[[f"{g} neighbour keyword" for g in GENRES[u % 4: u % 4 + 4]]] * 3,
                           items=catalogue, config=pcfg)
        prefixes.append(enc.encode_prefix(text).to(dev))
        sufs = [enc.encode_suffix(build_suffix(candidate=catalogue[f"i{5 + k}"], config=pcfg), _jpeg(k, side))
                for k in range(cfg.candidates)]
        suffix_sets.append([EncodedSuffix(s.input_ids.to(dev), None if s.pixel_values is None
                                          else s.pixel_values.to(dev, model.dtype)) for s in sufs])
    kw = {"yes_id": enc.yes_id, "no_id": enc.no_id}
    timings: dict[str, float] = {}
    max_diff = 0.0
    shared: list = []  # the shared-prefix scores, set by the first pass and compared against by the naive pass
    # decoder_scoring.py builds its batch tensors with torch defaults; the default-device context puts them on the GPU
    with dev:
        score_shared_prefix(model, prefix_ids=prefixes[0], suffixes=suffix_sets[0][:2], pad_id=enc.pad_id, **kw)
        for name in ("shared_prefix", "naive"):
            _sync(cfg.device)
            t0 = time.perf_counter()
            scores = []
            for prefix, sufs in zip(prefixes, suffix_sets):
                if name == "naive":
                    scores.append(score_naive(model, prefix_ids=prefix, suffixes=sufs, **kw))
                else:
                    scores.append(score_shared_prefix(model, prefix_ids=prefix, suffixes=sufs,
                                                      batch_size=cfg.batch_size, pad_id=enc.pad_id, **kw))
            _sync(cfg.device)
            timings[name] = time.perf_counter() - t0
            if name == "naive":
                max_diff = float(max(np.abs(a - b).max() for a, b in zip(scores, shared)))
            else:
                shared = scores
    n = cfg.users * cfg.candidates
    out = {"users": cfg.users, "candidates_per_user": cfg.candidates, "prefix_tokens": int(prefixes[0].shape[0]),
           "suffix_tokens": int(suffix_sets[0][0].input_ids.shape[0]),
           "shared_prefix_cand_per_s": round(n / timings["shared_prefix"], 1),
           "naive_cand_per_s": round(n / timings["naive"], 1),
           "speedup": round(timings["naive"] / timings["shared_prefix"], 2), "max_abs_diff": max_diff}
    print(f"recommender: {cfg.users} users x {cfg.candidates} candidates: shared-prefix "
          f"{out['shared_prefix_cand_per_s']} cand/s, naive {out['naive_cand_per_s']} cand/s "
          f"(x{out['speedup']}), max |diff| {max_diff:.1e}", flush=True)
    return out


def check_faiss(device: str) -> dict:
    import faiss
    import numpy as np

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if not device.startswith("cuda") or gpus == 0:
        print(f"faiss: {gpus} GPUs visible to faiss (faiss-cpu build or no CUDA): GPU search skipped")
        return {"gpus": gpus}
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((100_000, 64), dtype=np.float32)
    xq = rng.standard_normal((10_000, 64), dtype=np.float32)
    index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(64))
    index.add(xb)
    index.search(xq[:100], 10)
    t0 = time.perf_counter()
    index.search(xq, 10)
    seconds = time.perf_counter() - t0
    print(f"faiss-gpu: exact search 10k queries over 100k x 64 in {seconds:.3f}s = {len(xq) / seconds:,.0f} q/s")
    return {"gpus": gpus, "queries_per_s": round(len(xq) / seconds)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU (small tiny model) when CUDA is absent")
    ap.add_argument("--quick", action="store_true", help="fewer items, users and candidates")
    ap.add_argument("--items", type=int, default=None, help="items summarized (default 256; 8 with --quick)")
    ap.add_argument("--users", type=int, default=None, help="users scored (default 32; 2 with --quick)")
    ap.add_argument("--candidates", type=int, default=21, help="candidates per user (paper protocol: 21)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    a = ap.parse_args(argv)
    import torch

    if torch.cuda.is_available():
        device = "cuda"
        props = torch.cuda.get_device_properties(0)
        print(f"CUDA: {torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
              f" (CUDA {torch.version.cuda})", flush=True)
    elif a.allow_cpu:
        device = "cpu"
        print("no CUDA device: running on the CPU with the small tiny model (--allow-cpu)", flush=True)
    else:
        print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False): skipped")
        return 0
    cfg = CheckConfig(device=device, items=a.items or (8 if a.quick else 256), users=a.users or (2 if a.quick else 32),
                      candidates=a.candidates, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                      large=device == "cuda")
    from mmsrarec_lib.mllm.loading import load_mllm
    from mmsrarec_lib.mllm.tiny import build_tiny_mllm

    report: dict = {"device": device}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        mcfg = model_config(cfg.large)
        texts = [f"{' '.join(GENRES)} movie number {i} keywords film journey theme neighbour" for i in range(200)]
        t0 = time.perf_counter()
        model_dir = build_tiny_mllm(Path(tmp) / "model", texts=texts, config=mcfg)
        model, processor = load_mllm(str(model_dir), device=device)
        n_params = sum(p.numel() for p in model.parameters())
        report["model"] = {"parameters": n_params, "hidden": mcfg.hidden_size, "layers": mcfg.num_layers,
                           "image_size": mcfg.image_size, "dtype": str(model.dtype),
                           "build_load_s": round(time.perf_counter() - t0, 1)}
        print(f"model: tiny LLaVA, {n_params / 1e6:.1f} M parameters, {mcfg.num_layers} layers x {mcfg.hidden_size}, "
              f"{mcfg.image_size} px images, {model.dtype}", flush=True)
        for name, fn in (("summarizer", lambda: check_summarizer(model, processor, cfg, mcfg.image_size)),
                         ("recommender", lambda: check_recommender(model, processor, cfg, mcfg.image_size)),
                         ("faiss", lambda: check_faiss(device))):
            try:
                report[name] = fn()
            except Exception as exc:  # report every stage, then fail
                traceback.print_exc()
                print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                failed.append(name)
    if device == "cuda":
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print(f"peak GPU memory: {report['peak_gpu_memory_gib']} GiB")
    print(json.dumps(report, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
