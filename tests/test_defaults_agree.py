"""Defaults agree across commands: what one command writes by default is what the next one reads by default, so a
new user following each command's defaults in the README's order never meets 'no SASRec run for protocol paper'.

Parsing only (``mmsrarec`` parsers and config dataclasses): nothing is trained.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from jobs.cli import build_parser

DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
# the README's order ("Stages" table), each with only its required flags
README_ORDER = [
    ["ingest", "--source", "movielens-100k"],
    ["encode-images", "--dataset", "d"],
    ["index-content", "--dataset", "d"],
    ["train-baseline", "--dataset", "d", "--model", "sasrec"],
    ["evaluate", "--dataset", "d", "--model", "sasrec", "--protocol", "paper"],
    ["train-summarizer", "--dataset", "d"],
    ["summarize", "--dataset", "d", "--summarizer-version", "v1"],
    ["build-collab", "--dataset", "d"],
    ["refresh-collab", "--dataset", "d"],
    ["train-recommender", "--dataset", "d"],
    ["recommend", "--dataset", "d"],
]


@pytest.fixture(scope="module")
def parsed():
    parser = build_parser()
    return {argv[0]: parser.parse_args(argv) for argv in README_ORDER}


def _default(cls, name):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def test_every_command_parses_with_its_defaults_in_the_readme_order(parsed):
    assert list(parsed) == [argv[0] for argv in README_ORDER]


def test_train_finds_the_sasrec_run_that_train_baseline_writes_by_default(parsed):
    """train-baseline (producer of the SASRec generator) and train (its consumer) default to one protocol, the
    stage-3 config's own default."""
    from mmsrarec_lib.recommend.run_config import RecTrainConfig

    assert (parsed["train-baseline"].protocol == parsed["train-recommender"].protocol
            == _default(RecTrainConfig, "protocol"))


def test_train_recommender_trains_what_compare_evaluates_when_no_flag_is_given(parsed):
    """The model `train-recommender` serves (nightly top-K) and the one `compare` / `make eval` measures share the
    library's minilm-effnet settings: no job-side default of its own (it once trained LoRA on 2 layers, eval 1)."""
    from jobs._dataclass_args import dataclass_from_args
    from jobs.train_recommender import TrainJobConfig
    from mmsrarec_lib.recommend.encoder_pipeline import EncoderRunConfig

    job = dataclass_from_args(TrainJobConfig, parsed["train-recommender"]).to_encoder_config()
    lib = EncoderRunConfig()
    assert job.backbone == lib.backbone and job.prompt == lib.prompt
    assert job.train == lib.train


def test_build_collab_writes_the_neighbour_windows_train_and_recommend_read(parsed):
    from jobs.build_collab import collab_config

    protocols = collab_config(parsed["build-collab"]).protocols
    assert parsed["train-recommender"].protocol in protocols, "train reads neighbours of the paper windows"
    assert "latest" in protocols, "the nightly recommend reads the latest windows"
    assert parsed["build-collab"].keep_index_versions == parsed["refresh-collab"].keep_index_versions


def test_summarizer_training_and_summarizing_agree(parsed):
    tune, summarize = parsed["train-summarizer"], parsed["summarize"]
    assert (tune.backend, tune.encoder, tune.image_encoder) == (summarize.backend, summarize.encoder,
                                                                 summarize.image_encoder)
    assert parsed["build-collab"].summarizer_version is None and parsed["train-recommender"].keywords is None, \
        "stage 2 and 3 take the latest summarizer version the summarize step wrote"


def test_one_image_encoder_and_one_text_encoder_everywhere(parsed):
    """encode-images writes features of one image model; every reader of item_image_features defaults to it."""
    from jobs.build_collab import collab_config

    image = parsed["encode-images"].encoder
    embedder = collab_config(parsed["build-collab"]).embedder
    assert parsed["summarize"].image_encoder == image
    assert parsed["index-content"].image_encoder == image
    assert embedder.content_image_encoder == image
    assert parsed["summarize"].encoder == parsed["index-content"].text_encoder == embedder.content_encoder


def test_dag_defaults_agree_with_the_commands(parsed, tmp_path_factory):
    if "airflow" not in sys.modules:
        os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=DAGS_DIR, bundle_path=DAGS_DIR, bundle_name="dags-folder")
    assert bag.import_errors == {}
    train = bag.dags["mmsrarec_train"].params.dump()
    nightly = bag.dags["mmsrarec_nightly"].params.dump()
    assert train["protocol"] == parsed["train-recommender"].protocol == parsed["train-baseline"].protocol
    assert nightly["protocol"] == train["protocol"], "nightly evaluates on the protocol the model was trained for"
    assert (nightly["top_k"], nightly["users"]) == (parsed["recommend"].top_k, parsed["recommend"].users)
    assert bag.dags["mmsrarec_item_tables"].params.dump()["image_encoder"] == parsed["encode-images"].encoder
    backfill = bag.dags["mmsrarec_backfill_keywords"].params.dump()
    assert train["summarizer_backend"] == backfill["summarizer_backend"] == parsed["summarize"].backend \
        == parsed["train-summarizer"].backend


def test_the_old_train_command_name_still_parses_as_train_recommender(parsed, capsys):

    old = build_parser().parse_args(["train", "--dataset", "d"])
    assert old._main is parsed["train-recommender"]._main
    assert vars(old) | {"command": "x"} == vars(parsed["train-recommender"]) | {"command": "x"}
