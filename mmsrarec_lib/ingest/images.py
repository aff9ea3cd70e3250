"""Load one item image: resolve its URI safely, fetch the bytes, decode, bound, re-encode as JPEG.

Pure Python (no Spark) so it runs inside ``mapInArrow`` workers and is unit-testable. Every outcome is a status:

- ``ok``: decoded; stored as RGB JPEG with the longest side at most ``max_side`` (never upscaled);
- ``none``: the item has no ``image_uri``;
- ``missing``: the file/object/URL does not exist, the server kept failing after retries, or the fetch ran past
  its total deadline (``image_error`` says which);
- ``undecodable``: bytes were read but Pillow cannot decode them (corrupt/truncated/not an image);
- ``refused``: never read, by policy: a local path resolving outside the items file's folder (path traversal,
  symlink escape), an unsupported URI scheme, or an object larger than ``max_bytes``.

Local, relative and ``file://`` paths must resolve (symlinks followed) inside ``base_dir``. ``http(s)://`` uses
urllib with a timeout per connect/read and retries (with backoff) on connection errors and 5xx/429; 4xx is final.
``s3://`` uses boto3 with credentials (and ``AWS_ENDPOINT_URL``) from the environment.

Every remote fetch is bounded twice: ``deadline_s`` (default 30 s) is the total for one image, retries and backoff
included, and ``max_bytes`` caps the bytes read (a larger declared or actual body is ``refused``). A server that
drips bytes defeats a per-read timeout, so a watchdog shuts the HTTP socket down when the deadline passes (S3
bodies are read in chunks against the same deadline, each read bounded by ``timeout_s``); the item then keeps its
text with ``image_status = missing`` and ``image_error`` naming the deadline.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

OK, NONE, MISSING, UNDECODABLE, REFUSED = "ok", "none", "missing", "undecodable", "refused"
STATUSES = (OK, NONE, MISSING, UNDECODABLE, REFUSED)
JPEG_QUALITY = 90
USER_AGENT = "mmsrarec-ingest/0.1"


@dataclass(frozen=True)
class ImageConfig:
    """How images are fetched and stored (shipped to Spark workers)."""

    base_dir: str
    max_side: int = 512
    timeout_s: float = 10.0  # one connect or socket read
    retries: int = 2
    backoff_s: float = 0.5
    max_bytes: int = 50 * 1024 * 1024
    deadline_s: float = 30.0  # one image in total, retries and backoff included

    def __post_init__(self) -> None:
        if self.deadline_s <= 0 or self.timeout_s <= 0 or self.max_bytes < 1:
            raise ValueError("image deadline_s and timeout_s must be > 0, max_bytes >= 1")


@dataclass(frozen=True)
class ImageResult:
    status: str
    error: str | None = None
    data: bytes | None = None  # JPEG bytes
    sha256: str | None = None
    width: int | None = None
    height: int | None = None


class _Refused(Exception):
    pass


class _Missing(Exception):
    pass


def resolve_local(uri: str, base_dir: str) -> str:
    """The real path of a local/relative/``file://`` image URI; refused when it leaves ``base_dir``."""
    path = urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else uri
    path = os.path.expanduser(path)
    base = os.path.realpath(base_dir)
    full = os.path.realpath(path if os.path.isabs(path) else os.path.join(base, path))
    if os.path.commonpath([base, full]) != base:
        raise _Refused(f"path resolves outside the dataset folder {base}")
    return full


def _read_local(path: str, cfg: ImageConfig) -> bytes:
    if not os.path.isfile(path):
        raise _Missing(f"no such file: {path}")
    if os.path.getsize(path) > cfg.max_bytes:
        raise _Refused(f"file larger than {cfg.max_bytes} bytes")
    with open(path, "rb") as f:
        return f.read()


class _Deadline(Exception):
    pass


class _Tracked:
    """Mixin for urllib's connection classes: every connection opened is recorded, so a watchdog can cut it."""

    opened: list

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.opened.append(self)


def _opener(opened: list) -> urllib.request.OpenerDirector:
    http_conn = type("_HTTPConnection", (_Tracked, http.client.HTTPConnection), {"opened": opened})
    https_conn = type("_HTTPSConnection", (_Tracked, http.client.HTTPSConnection), {"opened": opened})

    class _HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(http_conn, req)

    class _HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(https_conn, req)

    return urllib.request.build_opener(_HTTP, _HTTPS)  # proxies and redirects as urllib does them


def _cut(opened: list, fired: threading.Event) -> None:
    """The watchdog: shut every socket of the fetch down, so a blocked read returns at once."""
    fired.set()
    for conn in list(opened):
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _read_body(resp, cfg: ImageConfig, deadline: float) -> bytes:
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > cfg.max_bytes:
        raise _Refused(f"response of {length} bytes is larger than the {cfg.max_bytes}-byte cap")
    chunks, size = [], 0
    while True:
        if time.monotonic() >= deadline:
            raise _Deadline(f"{size} bytes received")
        chunk = resp.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cfg.max_bytes:
            raise _Refused(f"response larger than the {cfg.max_bytes}-byte cap")
        chunks.append(chunk)


def _read_http(url: str, cfg: ImageConfig) -> bytes:
    start = time.monotonic()
    deadline = start + cfg.deadline_s
    last, attempt = "no attempt", 0
    for attempt in range(cfg.retries + 1):
        if attempt:
            pause = cfg.backoff_s * 2 ** (attempt - 1)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        opened: list = []
        fired = threading.Event()
        watchdog = threading.Timer(remaining, _cut, args=(opened, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with _opener(opened).open(req, timeout=min(cfg.timeout_s, remaining)) as resp:
                data = _read_body(resp, cfg, deadline)
            if fired.is_set():  # the watchdog cut the body short: what arrived is not the image
                raise _Deadline(f"{len(data)} bytes received")
            return data
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # a client error will not change on retry
        except _Deadline as exc:
            last = f"stalled ({exc})"
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        finally:
            watchdog.cancel()
            for conn in opened:
                conn.close()
        if fired.is_set() or time.monotonic() >= deadline:
            raise _Missing(f"deadline of {cfg.deadline_s:g}s exceeded after {attempt + 1} attempt(s) "
                           f"({time.monotonic() - start:.1f}s; last: {last})")
    raise _Missing(f"{last} after {attempt + 1} attempt(s)")


def _read_s3(uri: str, cfg: ImageConfig) -> bytes:
    import boto3
    import botocore.config
    import botocore.exceptions

    start = time.monotonic()
    deadline = start + cfg.deadline_s
    parsed = urllib.parse.urlparse(uri)
    timeout = min(cfg.timeout_s, cfg.deadline_s)
    client = boto3.client(
        "s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=botocore.config.Config(connect_timeout=timeout, read_timeout=timeout,
                                      retries={"total_max_attempts": cfg.retries + 1, "mode": "standard"}),
    )
    try:
        obj = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        if obj.get("ContentLength", 0) > cfg.max_bytes:
            obj["Body"].close()
            raise _Refused(f"object of {obj['ContentLength']} bytes is larger than the {cfg.max_bytes}-byte cap")
        chunks, size = [], 0
        for chunk in obj["Body"].iter_chunks(65536):
            size += len(chunk)
            if size > cfg.max_bytes:
                raise _Refused(f"object larger than the {cfg.max_bytes}-byte cap")
            chunks.append(chunk)
            if time.monotonic() >= deadline:
                obj["Body"].close()
                raise _Missing(f"deadline of {cfg.deadline_s:g}s exceeded ({size} bytes received)")
        return b"".join(chunks)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise _Missing(f"s3 {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise _Missing(f"s3: {type(exc).__name__} after {time.monotonic() - start:.1f}s") from None


_OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fetch(uri: str, cfg: ImageConfig) -> bytes:
    """The raw bytes behind ``uri`` (raises _Refused / _Missing)."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        return _read_http(uri, cfg)
    if scheme == "s3":
        return _read_s3(uri, cfg)
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        return _read_local(resolve_local(uri, cfg.base_dir), cfg)
    raise _Refused(f"unsupported URI scheme {scheme!r}")


def encode(data: bytes, max_side: int) -> tuple[bytes, int, int]:
    """Decode ``data``, convert to RGB, shrink so the longest side <= ``max_side``; JPEG bytes, width, height."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        rgb = img.convert("RGB")
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return out.getvalue(), rgb.width, rgb.height


def load_image(uri: str | None, cfg: ImageConfig) -> ImageResult:
    """Load and normalise the image at ``uri``; never raises for a bad image, returns its status instead."""
    if uri is None or not uri.strip():
        return ImageResult(NONE)
    try:
        raw = fetch(uri.strip(), cfg)
    except _Refused as exc:
        return ImageResult(REFUSED, str(exc))
    except _Missing as exc:
        return ImageResult(MISSING, str(exc))
    try:
        data, width, height = encode(raw, cfg.max_side)
    except Exception as exc:  # noqa: BLE001 (Pillow raises many types for bad input; all mean "undecodable")
        # Pillow names in-memory objects by address ("<_io.BytesIO object at 0x7f..>"): drop it, so reruns
        # store the same error text
        message = _OBJECT_ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
        return ImageResult(UNDECODABLE, message[:500])
    return ImageResult(OK, None, data, hashlib.sha256(data).hexdigest(), width, height)
