"""End to end on a toy warehouse, the decoder path (``--base-model``; here its tiny random LLaVA fixture): train a run
(tiny LLaVA + LoRA), evaluate it through the registry under both protocols, recommend top-K (no seen item, explanations,
partition replaced on rerun, 'changed' users)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests import _recommend_warehouse as toy


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mmsrarec_lib.models.baselines import fit_baseline
    from mmsrarec_lib.recommend.finetune import TrainSettings
    from mmsrarec_lib.recommend.run_config import RecTrainConfig
    from mmsrarec_lib.recommend.training import train_recommender
    from mmsrarec_lib.storage import Warehouse

    wh = Warehouse.from_uri(str(tmp_path_factory.mktemp("wh")))
    seqs = toy.build(wh)
    gen = fit_baseline(wh, "toy", kind="sasrec", protocol="paper", seed=0,
                       sasrec_overrides={"epochs": 2, "dim": 16}, progress=False).run_id
    cfg = RecTrainConfig.for_variant("mmsrarec", dataset="toy", generator_run=gen, base_model="tiny-llava",
                                     train=TrainSettings(max_steps=6, batch_size=4, save_every=3, warmup_steps=1))
    meta = train_recommender(wh, config=cfg, run_id="mm-1", progress=False)
    return wh, seqs, meta


@pytest.mark.slow
def test_train_saves_adapter_config_and_lineage(trained):
    wh, _, meta = trained
    assert wh.exists(wh.uri("toy", "models", "mm-1", "adapter", "adapter_model.safetensors"))
    saved = json.loads(wh.read_bytes(wh.uri("toy", "models", "mm-1", "model.json")))
    assert saved["kind"] == "mmsrarec" and saved["training"]["steps"] == 6
    lin = saved["lineage"]
    assert lin["collab_index_version"] == "idx-1" and lin["generator_run"] == meta["generator_run"]
    assert lin["table_versions"]["items"] == 0 and lin["table_versions"]["item_keywords"] is None
    assert saved["config"]["train"]["lora"]["rank"] == 8
    assert set(saved["training"]["examples_per_task"]) == {"yesno", "next_kw", "grounding", "recovery"}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["paper", "full"])
def test_evaluate_through_the_registry(trained, protocol):
    from mmsrarec_lib.eval.registry import ModelRequest, evaluate_scorer, resolve_model
    from mmsrarec_lib.recommend.reranker import register_models

    register_models()
    wh, _, _ = trained
    resolved = resolve_model("mm-1", ModelRequest(warehouse=wh, dataset="toy", protocol=protocol))
    values = evaluate_scorer(wh, "toy", resolved.scorer, protocol, model=resolved.model,
                             model_version=resolved.model_version, seed=0, config=resolved.config, run_id="ev")
    assert resolved.model == "mmsrarec" and resolved.model_version == "mm-1"
    assert all(0.0 <= v <= 1.0 for v in values.values())
    rows = wh.read_table("toy", "evaluation_runs").to_pylist()
    assert {r["model"] for r in rows} == {"mmsrarec"} and protocol in {r["protocol"] for r in rows}


@pytest.mark.slow
def test_recommend_topk_never_seen_and_rerun_replaces_partition(trained):
    from mmsrarec_lib.recommend.batch import RecommendConfig, recommend
    from mmsrarec_lib.recommend.topk import TopKConfig

    wh, seqs, _ = trained
    day = dt.date(2026, 2, 1)
    cfg = RecommendConfig(dataset="toy", model_run="mm-1", run_date=day, users="changed",
                          topk=TopKConfig(top_m=6, top_k=3))
    first = recommend(wh, config=cfg, progress=False)
    assert first["users"] == len(seqs)  # no earlier run: 'changed' = everyone
    rows = wh.read_table("toy", "recommendations").to_pylist()
    assert len(rows) == 3 * len(seqs)
    for r in rows:
        assert r["item_id"] not in seqs[r["user_id"]]
        assert set(r["explanation"]) == {"history_keywords", "neighbor_keywords", "neighbor_ids"}
    again = recommend(wh, config=cfg, progress=False)  # rerun of the same date: same users, replaced
    assert again["users"] == len(seqs)
    rows2 = wh.read_table("toy", "recommendations").to_pylist()
    assert len(rows2) == len(rows)
    key = lambda r: (r["user_id"], r["rank"])  # noqa: E731
    assert [(r["item_id"], r["score"]) for r in sorted(rows2, key=key)] == \
        [(r["item_id"], r["score"]) for r in sorted(rows, key=key)]
    later = recommend(wh, config=RecommendConfig(dataset="toy", model_run="mm-1", run_date=day + dt.timedelta(1),
                                                 users="changed", topk=TopKConfig(top_m=6, top_k=3)),
                      progress=False)
    assert later["users"] == 0  # nothing newer than the previous run's watermark
    assert {r["run_date"] for r in wh.read_table("toy", "recommendations").to_pylist()} == {day}


@pytest.mark.slow
def test_an_item_ingested_after_training_is_recommended_to_users_whose_history_is_about_it(trained):
    """A new item no model was trained on reaches the top-K through the content index (its SASRec score is
    missing, not very low): it is the content candidate of users whose history matches its description only, and
    the next 'changed' run re-scores exactly the users it now reaches, without any new interaction."""
    import pyarrow as pa

    from mmsrarec_lib import schemas
    from mmsrarec_lib.candidates import ContentIndexConfig, load_content_index, refresh_content_index
    from mmsrarec_lib.models.baselines import load_baseline
    from mmsrarec_lib.recommend.batch import RecommendConfig, load_scorer, recommend, select_users
    from mmsrarec_lib.recommend.topk import TopKConfig

    wh, seqs, meta = trained
    content = ContentIndexConfig(text_encoder="hashing", image_weight=0.0, decay=0.3)
    # SASRec's best + content's best over all items (the "unscored" pool and fresh slots: test_cold_protocol.py)
    topk = TopKConfig(top_m=1, top_k=2, content_m=1, content_pool="all", fresh_slots=0)
    refresh_content_index(wh, "toy", config=content)
    day1, day2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    recommend(wh, config=RecommendConfig(dataset="toy", model_run="mm-1", run_date=day1, users="all",
                                         topk=TopKConfig(top_m=3, top_k=2, content_m=1, content_pool="all")),
              progress=False)

    items = {r["item_id"]: r for r in wh.read_table("toy", "items").to_pylist()}
    fan = next(u for u, s in sorted(seqs.items()) if items[s[-1]]["categories"][0] == "space")
    other = next(u for u, s in sorted(seqs.items()) if items[s[-1]]["categories"][0] == "comedy")
    latest = items[seqs[fan][-1]]
    new = {**latest, "item_id": "i_new", "source_row": 999, "image_status": "missing",
           "image_bytes": None}  # the fan's latest item relisted under a new id, without a photo
    wh.write_table("toy", "items", pa.Table.from_pylist([new], schema=schemas.ITEMS), mode="append")
    assert "i_new" not in load_baseline(wh, "toy", meta["generator_run"]).scorer.item_ids  # SASRec never saw it
    assert refresh_content_index(wh, "toy", config=content)["encoded"] == 1  # incremental: the new item only

    users = sorted(seqs)
    near = load_content_index(wh, "toy").candidates([seqs[u] for u in users], m=1,
                                                    exclude=[set(seqs[u]) for u in users])
    reached = {u for u, c in zip(users, near) if c and c[0][0] == "i_new"}
    selected, _ = select_users(wh, "toy", mode="changed", run_date=day2, content_m=1, content_pool="all")
    assert set(selected) == reached and fan in reached and other not in reached  # no new interaction at all

    cfg = RecommendConfig(dataset="toy", model_run="mm-1", run_date=day2, users="changed", topk=topk)
    rows = load_scorer(wh, config=cfg, progress=False)([fan, other])
    picked = {u: [r["item_id"] for r in rows if r["user_id"] == u] for u in (fan, other)}
    assert "i_new" in picked[fan], picked
    assert "i_new" not in picked[other], picked
    new_row = next(r for r in rows if r["item_id"] == "i_new")
    assert new_row["score"] == new_row["score"] and abs(new_row["score"]) < 1e5  # a real score, not a sunk one
    without = load_scorer(wh, config=RecommendConfig(dataset="toy", model_run="mm-1", run_date=day2, users="all",
                                                     topk=TopKConfig(top_m=2, top_k=2, content_m=0, fresh_slots=0)),
                          progress=False)([fan])
    assert "i_new" not in {r["item_id"] for r in without}  # SASRec's candidates alone never reach it
