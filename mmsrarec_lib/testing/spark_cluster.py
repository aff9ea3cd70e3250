"""A standalone Spark cluster (one master, one worker) from the installed pyspark on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmsrarec_lib.testing.env import free_port

log = logging.getLogger(__name__)


def spark_home() -> Path:
    """``$SPARK_HOME`` if set, else the installed pyspark package folder (it ships ``bin/spark-class`` and jars)."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True)
class SparkCluster:
    """A running standalone cluster: ``master_url`` is what ``--spark-master``/``SPARK_MASTER`` take."""

    master_url: str
    master_ui: str
    work_dir: Path
    cores: int


def _alive_workers(master_ui: str) -> int:
    """Number of ALIVE workers the master reports on its JSON endpoint (0 when the master is not up yet)."""
    try:
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=2) as resp:  # noqa: S310 (127.0.0.1 only)
            state = json.load(resp)
    except (OSError, ValueError):
        return 0
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def _stop_group(proc: subprocess.Popen, *, timeout: float = 15.0) -> None:
    """Stop a process we started in its own session, with everything it spawned (executors), TERM then KILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def spark_standalone(
    *,
    cores: int = 2,
    worker_memory: str = "2g",
    start_timeout: float = 90.0,
    work_dir: str | Path | None = None,
) -> Iterator[SparkCluster]:
    """Start a Spark master and one worker on 127.0.0.1 (random free ports) and stop both when the block ends.

    The processes run ``spark-class`` from :func:`spark_home` in their own process groups (so stopping them also
    stops the executors they launched); their logs go to ``<work_dir>/master.log`` / ``worker.log``. Executors run
    Python with this interpreter (``PYSPARK_PYTHON``), so they see the same packages as the driver.
    """
    home = spark_home()
    spark_class = home / "bin" / "spark-class"
    if not spark_class.exists():
        raise FileNotFoundError(f"no spark-class under SPARK_HOME={home}")
    tmp_ctx = tempfile.TemporaryDirectory(prefix="mmsrarec-spark-") if work_dir is None else None
    root = Path(tmp_ctx.name if tmp_ctx else work_dir)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_WORKER_DIR": str(root / "work"),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "SPARK_NO_DAEMONIZE": "1",
    }
    ports: list[int] = []
    while len(ports) < 4:  # four distinct ports
        if (port := free_port()) not in ports:
            ports.append(port)
    master_port, master_ui_port, worker_port, worker_ui_port = ports
    master_url = f"spark://127.0.0.1:{master_port}"
    master_ui = f"http://127.0.0.1:{master_ui_port}"
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        master_log = open(root / "master.log", "wb")  # noqa: SIM115 (closed in finally)
        logs.append(master_log)
        procs.append(
            subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(master_port), "--webui-port", str(master_ui_port)],
                env=env, stdout=master_log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
        worker_log = open(root / "worker.log", "wb")  # noqa: SIM115
        logs.append(worker_log)
        procs.append(
            subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--port", str(worker_port), "--webui-port", str(worker_ui_port), "--cores", str(cores),
                 "--memory", worker_memory, "--work-dir", str(root / "work")],
                env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
        deadline = time.monotonic() + start_timeout
        while _alive_workers(master_ui) < 1:
            for p, name in zip(procs, ("master", "worker")):
                if p.poll() is not None:
                    tail = (root / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Spark {name} exited with {p.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Spark worker registered with {master_url} within {start_timeout:.0f}s")
            time.sleep(0.5)
        log.info("Spark standalone cluster at %s (%d cores)", master_url, cores)
        yield SparkCluster(master_url=master_url, master_ui=master_ui, work_dir=root, cores=cores)
    finally:
        for p in reversed(procs):  # worker (and its executors) first, then the master
            _stop_group(p)
        for f in logs:
            f.close()
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
