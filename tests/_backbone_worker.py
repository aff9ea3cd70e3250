"""A real training process for tests/test_backbone.py: a tiny BERT as the text encoder of ``minilm-effnet``,
synthetic items and sequences, ``transformers.Trainer`` with checkpoints.

``python -m tests._backbone_worker BERT_DIR CKPT_DIR OUT_FILE [--hang-at STEP] [--steps N]``: with ``--hang-at``
the process writes ``CKPT_DIR/hanging`` once that checkpoint is saved and sleeps, so the test can kill it at a known
point. Writes the trained parts to OUT_FILE (safetensors) and prints ``done resumed_from=... loss=...``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_bert(folder: str | Path, *, seed: int = 0) -> str:
    """A 2-layer 32-d BERT with MiniLM's tokenizer, saved to ``folder`` (deterministic for a seed)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmsrarec_lib.models.minilm_effnet import minilm_path

    folder = Path(folder)
    if not (folder / "config.json").exists():
        torch.manual_seed(seed)
        BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                             max_position_embeddings=128)).save_pretrained(folder)
        AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return str(folder)


def synthetic(n_items: int = 16, n_users: int = 8):
    """(RecContext, sequences, image features) of a small synthetic catalogue."""
    import numpy as np

    from mmsrarec_lib.recommend.context import RecContext
    from mmsrarec_lib.recommend.prompts import Candidate

    genres = ["space", "war", "robots", "drama", "comedy", "love"]
    items = {f"i{k}": Candidate(f"i{k}", f"Movie {k}", (genres[k % 6], genres[(k * 5 + 1) % 6]), has_image=k % 2 == 0)
             for k in range(n_items)}
    rng = random.Random(0)
    seqs = {f"u{u}": [f"i{rng.randrange(n_items)}" for _ in range(6)] for u in range(n_users)}
    ctx = RecContext(items=items, descriptions={}, keywords={i: list(c.keywords) for i, c in items.items()},
                     images={})
    feats = {i: np.random.default_rng(int(i[1:])).standard_normal(16).astype("float32")
             for i, c in items.items() if c.has_image}
    return ctx, seqs, feats


class FakeGenerator:
    """A deterministic stand-in for the SASRec generator: catalogue scores are a fixed function of the history."""

    def __init__(self, item_ids):
        self.item_ids = list(item_ids)

    def score_catalogue(self, histories):
        import numpy as np

        out = np.zeros((len(histories), len(self.item_ids)), dtype=np.float32)
        for r, h in enumerate(histories):
            key = sum(int(i[1:]) for i in h)
            out[r] = [((key * 7 + 3 * k) % 17) + 0.01 * k for k in range(len(self.item_ids))]
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bert_dir")
    ap.add_argument("ckpt_dir")
    ap.add_argument("out_file")
    ap.add_argument("--hang-at", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()

    from safetensors.torch import save_file
    from transformers import TrainerCallback

    from mmsrarec_lib.models.minilm_effnet import BackboneConfig, build_backbone
    from mmsrarec_lib.recommend.encoder_inputs import EncoderPromptConfig, FeatureBank, InputBuilder
    from mmsrarec_lib.recommend.encoder_train import (
        EncoderTrainSettings,
        generator_top_m,
        train_backbone,
        training_points,
    )

    class Hang(TrainerCallback):
        def on_save(self, _args, state, _control, **_kw):
            print(f"checkpoint {state.global_step}", flush=True)
            if args.hang_at and state.global_step == args.hang_at:
                (Path(args.ckpt_dir) / "hanging").write_text(str(state.global_step))
                time.sleep(600)

    ctx, seqs, feats = synthetic()
    cfg = BackboneConfig(text_model=tiny_bert(args.bert_dir), lora_layers=1, image_dim=16, block_heads=4, block_dim=16,
                         block_ff=32, image_tokens=2)
    model, tok = build_backbone(cfg, seed=1)
    builder = InputBuilder(tok, ctx, EncoderPromptConfig(max_user_tokens=48, max_item_tokens=16))
    settings = EncoderTrainSettings(max_steps=args.steps, batch_size=4, save_every=2, warmup_steps=2, seed=3,
                                    negatives=2, positions_per_user=3, hard_negative_share=0.5, hard_negative_pool=4)
    points = training_points(seqs, per_user=3, known=set(ctx.items))
    interacted = {u: set(s) for u, s in seqs.items()}
    hard_pool = generator_top_m(FakeGenerator(sorted(ctx.items)), points, interacted, top_m=4)  # hard negatives too
    summary = train_backbone(backbone=model, builder=builder, features=FeatureBank(image=feats, image_dim=16),
                             points=points, interacted=interacted, catalogue=sorted(ctx.items),
                             tasks=("yesno", "next_kw", "grounding", "recovery"), settings=settings,
                             output_dir=args.ckpt_dir, progress=False, callbacks=[Hang()], hard_pool=hard_pool)
    save_file(model.trainable_state(), args.out_file)
    print(f"done resumed_from={summary['resumed_from']} loss={summary['loss_curve'][-1][1]!r}", flush=True)


if __name__ == "__main__":
    main()
