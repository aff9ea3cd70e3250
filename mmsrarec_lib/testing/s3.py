"""A real S3 endpoint for tests and benches: moto's server on 127.0.0.1 with a bucket and traffic counters."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Fake credentials for moto: moto accepts any; tests that check secret hygiene pass their own distinctive secret.
DEFAULT_ACCESS_KEY = "mmsrarec-test-access"
DEFAULT_SECRET_KEY = "mmsrarec-test-secret"
DEFAULT_REGION = "us-east-1"


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
    The server thread is stopped when the block ends; ``endpoint.traffic`` counts requests and body bytes.
    ``os.environ`` is not changed: use ``endpoint.env`` (e.g.
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
