"""A real training process for tests/test_finetune.py: tiny LLaVA + synthetic tasks, LoRA, checkpoints.

``python -m tests._finetune_worker MODEL_DIR CKPT_DIR OUT_DIR [--hang-at STEP]``: with ``--hang-at`` the process
writes ``CKPT_DIR/hanging`` after that checkpoint and sleeps, so the test can kill it at a known point.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def synthetic_examples():
    from mmsrarec_lib.recommend.prompts import Candidate, PromptConfig
    from mmsrarec_lib.recommend.tasks import build_grounding, build_recovery, build_yesno, mix_uniform

    items = {f"i{k}": Candidate(f"i{k}", f"Movie {k}", (f"space{k % 3}", f"war{k % 2}"), has_image=k % 2 == 0)
             for k in range(12)}
    rng = random.Random(0)
    seqs = {f"u{u}": [f"i{rng.randrange(12)}" for _ in range(5)] for u in range(6)}
    cfg = PromptConfig()
    pools = {
        "yesno": build_yesno(sequences=seqs, interacted={u: set(s) for u, s in seqs.items()}, neighbors={},
                             items=items, config=cfg, per_user=2, seed=0),
        "grounding": build_grounding(items=items, descriptions={}, config=cfg),
        "recovery": build_recovery(items=items, config=cfg),
    }
    return mix_uniform(pools, n_total=48, seed=0)


def jpeg(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 48), (seed * 20 % 255, 80, 160)).save(buf, "JPEG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("ckpt_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--hang-at", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()

    from mmsrarec_lib.mllm.loading import load_mllm
    from mmsrarec_lib.recommend.decoder_scoring import PromptEncoder
    from mmsrarec_lib.recommend.finetune import TrainSettings, finetune

    model, processor = load_mllm(args.model_dir)

    def on_checkpoint(path: Path) -> None:
        print(f"checkpoint {path.name}", flush=True)
        if args.hang_at and path.name == f"step-{args.hang_at:06d}":
            (Path(args.ckpt_dir) / "hanging").write_text(path.name)
            time.sleep(600)

    settings = TrainSettings(max_steps=args.steps, batch_size=4, save_every=2, warmup_steps=2, seed=3)
    model, summary = finetune(model=model, encoder=PromptEncoder(processor), examples=synthetic_examples(),
                              images=lambda item_id: jpeg(int(item_id[1:])), settings=settings,
                              checkpoint_dir=args.ckpt_dir, on_checkpoint=on_checkpoint, progress=False)
    model.save_pretrained(args.out_dir)
    print(f"done resumed_from={summary['resumed_from']}", flush=True)


if __name__ == "__main__":
    main()
