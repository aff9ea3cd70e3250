"""Shared fixtures: a temporary warehouse, one Spark session per test run, offline model hubs."""

from __future__ import annotations

import os

from mmsrarec_lib.runtime_env import apply_offline_defaults

apply_offline_defaults()  # before anything imports transformers / huggingface_hub
os.environ.setdefault("AIRFLOW_HOME", os.path.join(os.path.dirname(__file__), "..", "airflow_home"))

import pytest  # noqa: E402 - after apply_offline_defaults(): transformers reads the environment at import

from mmsrarec_lib.storage import Warehouse  # noqa: E402 - after apply_offline_defaults(), as above


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse.from_uri(str(tmp_path / "warehouse"))


@pytest.fixture(scope="session")
def spark():
    from mmsrarec_lib.spark import get_spark

    session = get_spark("local[2]", app_name="mmsrarec-tests", shuffle_partitions=2)
    yield session
    session.stop()
