"""Reusable test and bench utilities: a real S3 endpoint (moto server mode) and a standalone Spark cluster.

Both run entirely on 127.0.0.1 with random free ports and are torn down when their ``with`` block ends, so tests
and benches exercise the same code paths as production (an S3 endpoint over HTTP, ``spark://host:port``) without
Docker or the internet.

- :func:`moto_s3` starts moto's ``ThreadedMotoServer`` (a real HTTP S3 endpoint that boto3, delta-rs, pyarrow and
  DuckDB all talk to; the in-process ``mock_aws`` would fool only boto3), creates a bucket and yields its warehouse
  URI, delta-rs ``storage_options`` and the environment variables a subprocess needs.
- :func:`spark_standalone` starts ``org.apache.spark.deploy.master.Master`` and one ``Worker`` from the installed
  pyspark (``spark-class``), waits until the worker has registered and yields ``spark://127.0.0.1:PORT``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Fake credentials for moto: moto accepts any; tests that check secret hygiene pass their own distinctive secret.
DEFAULT_ACCESS_KEY = "mmsrarec-test-access"
DEFAULT_SECRET_KEY = "mmsrarec-test-secret"
DEFAULT_REGION = "us-east-1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0, read, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def patched_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block and restore the previous values afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------------------------------- S3 (moto)
class S3Traffic:
    """Thread-safe counters of the HTTP traffic an S3 endpoint served: requests and body bytes per method.

    ``bytes_read`` is what clients downloaded (GET response bodies), ``bytes_written`` what they uploaded (PUT/POST
    request bodies): the storage I/O a job caused, measured at the server.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes_in: dict[str, int] = {}  # request bodies, by HTTP method
        self.bytes_out: dict[str, int] = {}  # response bodies, by HTTP method

    def add(self, method: str, *, bytes_in: int = 0, bytes_out: int = 0, request: bool = False) -> None:
        with self._lock:
            if request:
                self.requests[method] = self.requests.get(method, 0) + 1
            self.bytes_in[method] = self.bytes_in.get(method, 0) + bytes_in
            self.bytes_out[method] = self.bytes_out.get(method, 0) + bytes_out

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_in.clear()
            self.bytes_out.clear()

    @property
    def bytes_read(self) -> int:
        return self.bytes_out.get("GET", 0)

    @property
    def bytes_written(self) -> int:
        return self.bytes_in.get("PUT", 0) + self.bytes_in.get("POST", 0)

    def snapshot(self) -> dict[str, int]:
        """Totals for printing: requests per method, bytes read and written."""
        with self._lock:
            out = {f"requests_{m.lower()}": n for m, n in sorted(self.requests.items())}
        return {**out, "bytes_read": self.bytes_read, "bytes_written": self.bytes_written}


class _CountingInput:
    """A ``wsgi.input`` wrapper that counts the request body bytes the app actually reads (chunked uploads too)."""

    def __init__(self, stream, on_bytes) -> None:
        self._stream, self._on_bytes = stream, on_bytes

    def read(self, *args):
        data = self._stream.read(*args)
        self._on_bytes(len(data))
        return data

    def readline(self, *args):
        data = self._stream.readline(*args)
        self._on_bytes(len(data))
        return data

    def __iter__(self):
        for line in self._stream:
            self._on_bytes(len(line))
            yield line


def _counting_app(app, traffic: S3Traffic):
    """WSGI middleware that adds every request's and response's body size to ``traffic``."""

    def wrapped(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        traffic.add(method, request=True)
        environ["wsgi.input"] = _CountingInput(environ["wsgi.input"], lambda n: traffic.add(method, bytes_in=n))
        for chunk in app(environ, start_response):
            traffic.add(method, bytes_out=len(chunk))
            yield chunk

    return wrapped


def _moto_server(traffic: S3Traffic):
    """moto's ThreadedMotoServer on 127.0.0.1:0 with the counting middleware around its WSGI app."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class CountingMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:  # ThreadedMotoServer's own body, with the app wrapped
            app = _counting_app(DomainDispatcherApplication(create_backend_app), traffic)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return CountingMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3 endpoint with one bucket. ``env`` is the standard AWS chain for subprocesses and delta-rs."""

    endpoint_url: str
    bucket: str
    prefix: str
    env: Mapping[str, str] = field(repr=False)
    traffic: S3Traffic = field(default_factory=S3Traffic, repr=False, compare=False)

    @property
    def warehouse_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options (the same keys :func:`mmsrarec_lib.storage.storage_options_from_env` reads)."""
        return {
            "AWS_ACCESS_KEY_ID": self.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": self.env["AWS_SECRET_ACCESS_KEY"],
            "AWS_REGION": self.env["AWS_REGION"],
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
        }

    def boto3_client(self):
        """A boto3 S3 client for this endpoint (for listing objects and counting bytes in tests)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_REGION"],
        )

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket below ``prefix`` (paginated)."""
        paginator = self.boto3_client().get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(keys)


@contextlib.contextmanager
def moto_s3(
    *,
    bucket: str | None = None,
    prefix: str = "warehouse",
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    region: str = DEFAULT_REGION,
) -> Iterator[S3Endpoint]:
    """Start moto's S3 server on 127.0.0.1 (random port), create ``bucket`` and yield the endpoint.

    moto keeps its state per process, so the default bucket name is unique per call (names need 3+ characters).
    The server thread is stopped when the block ends. ``endpoint.traffic`` counts requests and body bytes. ``os.environ`` is not changed: use ``endpoint.env`` (e.g.
    with :func:`patched_env` or as a subprocess environment) or ``endpoint.storage_options``.
    """
    bucket = bucket or f"mmsrarec-{uuid.uuid4().hex[:12]}"
    request_log = logging.getLogger("werkzeug")  # one line per HTTP request: keep it out of test and bench output
    saved_level = request_log.level
    request_log.setLevel(logging.WARNING)
    traffic = S3Traffic()
    server = _moto_server(traffic)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        env = {
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ALLOW_HTTP": "true",
        }
        endpoint = S3Endpoint(
            endpoint_url=endpoint_url, bucket=bucket, prefix=prefix.strip("/"), env=env, traffic=traffic
        )
        endpoint.boto3_client().create_bucket(Bucket=bucket)
        log.info("moto S3 server at %s, bucket %s", endpoint_url, bucket)
        yield endpoint
    finally:
        server.stop()
        request_log.setLevel(saved_level)


# ----------------------------------------------------------------------------------------- Spark standalone
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
