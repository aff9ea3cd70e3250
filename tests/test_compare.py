"""``run_compare`` end to end on a toy warehouse: the cold protocol trains its own models without the held-out
items, SASRec cannot reach a cold target, the content index and the union of candidates can, and the union row is
scored on the catalogue protocols only. A tiny 2-layer BERT stands in for MiniLM."""

from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from tests import _recommend_warehouse as toy
from tests._backbone_worker import tiny_bert


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from mmsrarec_lib.candidates import ContentIndexConfig, refresh_content_index
    from mmsrarec_lib.models.minilm_effnet import BackboneConfig
    from mmsrarec_lib.recommend.compare import CompareConfig, run_compare
    from mmsrarec_lib.recommend.encoder_inputs import EncoderPromptConfig
    from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig
    from mmsrarec_lib.recommend.encoder_train import EncoderTrainSettings
    from mmsrarec_lib.recommend.topk import TopKConfig
    from mmsrarec_lib.storage import Warehouse

    wh = Warehouse.from_uri(str(tmp_path_factory.mktemp("wh")))
    toy.build(wh, n_items=40, n_users=30)
    refresh_content_index(wh, "toy", config=ContentIndexConfig(text_encoder="hashing", image_weight=0.0))
    bert = tiny_bert(tmp_path_factory.mktemp("bert"))
    encoder = EncoderRunConfig(
        backbone=BackboneConfig(text_model=bert, image_dim=16, block_dim=16, block_heads=2, block_ff=32),
        prompt=EncoderPromptConfig(max_user_tokens=40, max_item_tokens=12),
        train=EncoderTrainSettings(max_steps=4, batch_size=4, negatives=2, warmup_steps=1, save_every=4),
        fusion_users=20)
    cfg = CompareConfig(dataset="toy", run_id="cmp-1", seeds=(0,), protocols=("full", "sampled", "cold"),
                        models=("pop", "sasrec", "content", "mmsrarec", "mmsrarec-union"), encoder=encoder,
                        sasrec={"epochs": 2, "dim": 16}, union=TopKConfig(content_m=40, content_pool="all"),
                        progress=False)
    records = run_compare(wh, config=cfg)
    return wh, records


@pytest.mark.slow
def test_every_model_is_scored_on_its_protocols_and_the_union_only_on_catalogue_ones(compared):
    wh, records = compared
    got = {(r["model"], r["protocol"]) for r in records}
    want = {(m, p) for m in ("pop", "sasrec", "content", "mmsrarec", "mmsrarec-union") for p in ("full", "cold")}
    want |= {(m, "sampled") for m in ("pop", "sasrec", "content", "mmsrarec")}  # the union: catalogue protocols only
    assert got == want
    rows = wh.read_table("toy", "evaluation_runs", filter=pads.field("run_id") == "cmp-1").to_pylist()
    cold_metrics = {r["metric"] for r in rows if r["protocol"] == "cold"}
    assert cold_metrics == {"hr", "ndcg", "mrr", "cold_share"}


@pytest.mark.slow
def test_cold_targets_are_out_of_reach_of_sasrec_and_within_reach_of_content(compared):
    from mmsrarec_lib.eval.protocols import load_cold_split
    from mmsrarec_lib.models.baselines import load_baseline

    wh, records = compared
    by = {(r["model"], r["protocol"]): r for r in records}
    assert by[("sasrec", "cold")]["hr@10"] == 0.0 and by[("sasrec", "cold")]["cold_share@10"] == 0.0
    assert by[("mmsrarec", "cold")]["cold_share@10"] == 0.0  # SASRec's candidates alone: never a cold item
    assert by[("content", "cold")]["cold_share@10"] > 0
    # with content candidates (here the whole catalogue) every cold target is reranked instead of ranking last
    assert by[("mmsrarec-union", "cold")]["mrr"] > by[("mmsrarec", "cold")]["mrr"]
    # the cold protocol's SASRec never saw a held-out item
    rows = wh.read_table("toy", "evaluation_runs", filter=(pads.field("run_id") == "cmp-1")
                         & (pads.field("model") == "sasrec") & (pads.field("protocol") == "cold")).to_pylist()
    sasrec = load_baseline(wh, "toy", rows[0]["model_version"]).scorer
    assert not set(sasrec.item_ids) & load_cold_split(wh, "toy").held_out


@pytest.mark.slow
def test_each_evaluation_protocol_is_scored_with_the_fusion_weight_chosen_for_it(compared):
    """A full-protocol run chooses one weight for ``full`` and one for ``sampled``, each on that protocol's own
    validation users; the compare scores each protocol with its own and records it in evaluation_runs."""
    import json

    wh, _records = compared
    rows = wh.read_table("toy", "evaluation_runs", filter=(pads.field("run_id") == "cmp-1")
                         & (pads.field("model") == "mmsrarec")).to_pylist()
    by_protocol = {r["protocol"]: r for r in rows}
    for protocol, trained in (("full", "full"), ("sampled", "full"), ("cold", "cold")):
        run = by_protocol[protocol]["model_version"]
        meta = json.loads(wh.read_bytes(wh.uri("toy", "models", run, "model.json")))
        assert meta["protocol"] == trained
        chosen = meta["fusion"]["by_protocol"][protocol]
        assert chosen["metric"] == ("ndcg@5" if protocol == "sampled" else "ndcg@10")
        assert chosen["n_users"] > 0 and set(chosen["grid"]) >= {"0.0", "1.0", "16.0"}
        assert json.loads(by_protocol[protocol]["config_json"])["fusion_weight"] == chosen["weight"]
    full_run = json.loads(wh.read_bytes(wh.uri("toy", "models", by_protocol["full"]["model_version"], "model.json")))
    assert set(full_run["fusion"]["by_protocol"]) == {"full", "sampled"}
    assert full_run["config"]["fusion_weight"] == full_run["fusion"]["weight"] == full_run["fusion"]["by_protocol"][
        "full"]["weight"]  # the training protocol's weight is the run's default (the nightly top-K's)
    # `mmsrarec evaluate --model <run id>` resolves the saved run with the weight it chose for the protocol asked
    from mmsrarec_lib.eval.registry import ModelRequest, resolve_model
    from mmsrarec_lib.recommend.reranker import register_models

    register_models()
    uri = wh.uri("toy", "models", full_run["run_id"], "model.json")
    original = wh.read_bytes(uri)
    edited = json.loads(original)  # a sampled weight unlike the full one, so the two cannot be confused
    edited["fusion"]["by_protocol"]["sampled"]["weight"] = full_run["fusion"]["weight"] + 3.0
    wh.write_bytes(uri, json.dumps(edited).encode())
    try:
        for protocol in ("full", "sampled"):
            resolved = resolve_model(full_run["run_id"], ModelRequest(wh, "toy", protocol, progress=False))
            want = edited["fusion"]["by_protocol"][protocol]["weight"]
            assert resolved.config["scoring"]["fusion_weight"] == want
    finally:
        wh.write_bytes(uri, original)


def test_fusion_weight_for_reads_the_protocol_s_own_weight_and_falls_back_to_the_run_s():
    from mmsrarec_lib.recommend.fusion import fusion_weight_for

    meta = {"config": {"fusion_weight": 8.0},
            "fusion": {"weight": 8.0, "by_protocol": {"full": {"weight": 8.0}, "sampled": {"weight": 2.0}}}}
    assert fusion_weight_for(meta, "sampled") == 2.0
    assert fusion_weight_for(meta, "full") == 8.0
    assert fusion_weight_for(meta) == 8.0
    assert fusion_weight_for(meta, "paper") == 8.0  # not chosen for it: the run's own
    old = {"config": {"fusion_weight": 4.0}, "fusion": {"weight": 4.0, "metric": "ndcg@10"}}  # before by_protocol
    assert fusion_weight_for(old, "sampled") == 4.0
