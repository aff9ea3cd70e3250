"""Image loading outside Spark: every status, path safety, http with retries, s3 via a moto server."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from PIL import Image

from mmsrarec_lib.ingest.images import ImageConfig, load_image
from tests._ingest_helpers import (
    corrupt_jpeg_bytes,
    drip_http_server,
    failing_http_server,
    http_server,
    jpeg_bytes,
    png_rgba_bytes,
)


@pytest.fixture
def dataset_dir(tmp_path):
    d = tmp_path / "data"
    (d / "img").mkdir(parents=True)
    (d / "img" / "big.jpg").write_bytes(jpeg_bytes(1000, 250))
    (d / "img" / "small.jpg").write_bytes(jpeg_bytes(40, 20))
    (d / "img" / "rgba.png").write_bytes(png_rgba_bytes(30, 60))
    (d / "img" / "corrupt.jpg").write_bytes(corrupt_jpeg_bytes())
    (d / "img" / "text.jpg").write_bytes(b"this is not an image")
    (tmp_path / "secret.jpg").write_bytes(jpeg_bytes())  # outside the dataset folder
    return d


def _cfg(d, **kw) -> ImageConfig:
    return ImageConfig(base_dir=str(d), max_side=kw.pop("max_side", 64), timeout_s=kw.pop("timeout_s", 2.0),
                       backoff_s=0.01, **kw)


def test_ok_bounds_longest_side_keeps_aspect_and_hashes_stored_bytes(dataset_dir):
    r = load_image("img/big.jpg", _cfg(dataset_dir))
    assert r.status == "ok" and r.error is None
    assert (r.width, r.height) == (64, 16)  # 1000x250 bounded to 64 on the long side
    assert r.sha256 == hashlib.sha256(r.data).hexdigest()
    with Image.open(io.BytesIO(r.data)) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 16)


def test_small_image_is_not_upscaled_and_rgba_becomes_rgb(dataset_dir):
    small = load_image("img/small.jpg", _cfg(dataset_dir))
    assert (small.width, small.height) == (40, 20)
    rgba = load_image("img/rgba.png", _cfg(dataset_dir, max_side=30))
    assert rgba.status == "ok" and (rgba.width, rgba.height) == (15, 30)
    with Image.open(io.BytesIO(rgba.data)) as img:
        assert img.mode == "RGB"


def test_absolute_and_file_uri_inside_folder_are_read(dataset_dir):
    path = str(dataset_dir / "img" / "small.jpg")
    assert load_image(path, _cfg(dataset_dir)).status == "ok"
    assert load_image("file://" + path, _cfg(dataset_dir)).status == "ok"


@pytest.mark.parametrize("uri", [None, "", "   "])
def test_no_uri_is_none(dataset_dir, uri):
    r = load_image(uri, _cfg(dataset_dir))
    assert (r.status, r.data, r.sha256) == ("none", None, None)


def test_missing_file(dataset_dir):
    r = load_image("img/nope.jpg", _cfg(dataset_dir))
    assert r.status == "missing" and "no such file" in r.error and r.data is None


@pytest.mark.parametrize("name", ["corrupt.jpg", "text.jpg"])
def test_corrupt_or_non_image_bytes_are_undecodable(dataset_dir, name):
    r = load_image(f"img/{name}", _cfg(dataset_dir))
    assert r.status == "undecodable" and r.error and r.data is None and r.width is None
    # the error text is stable across runs (no object addresses), so reruns write identical rows
    assert " at 0x" not in r.error and load_image(f"img/{name}", _cfg(dataset_dir)).error == r.error


def test_path_traversal_absolute_outside_and_symlink_escape_are_refused(dataset_dir, tmp_path):
    secret = tmp_path / "secret.jpg"
    os.symlink(secret, dataset_dir / "img" / "link.jpg")
    for uri in ("../secret.jpg", "img/../../secret.jpg", str(secret), "file://" + str(secret), "img/link.jpg"):
        r = load_image(uri, _cfg(dataset_dir))
        assert r.status == "refused", uri
        assert "outside the dataset folder" in r.error and r.data is None


def test_unsupported_scheme_and_oversize_are_refused(dataset_dir):
    assert load_image("ftp://example.com/a.jpg", _cfg(dataset_dir)).status == "refused"
    r = load_image("img/big.jpg", _cfg(dataset_dir, max_bytes=10))
    assert r.status == "refused" and "larger than" in r.error


def test_http_image_from_local_server(dataset_dir):
    with http_server(dataset_dir / "img") as base:
        ok = load_image(f"{base}/big.jpg", _cfg(dataset_dir))
        missing = load_image(f"{base}/nope.jpg", _cfg(dataset_dir))
        corrupt = load_image(f"{base}/corrupt.jpg", _cfg(dataset_dir))
    assert ok.status == "ok" and (ok.width, ok.height) == (64, 16)
    local = load_image("img/big.jpg", _cfg(dataset_dir))
    assert ok.sha256 == local.sha256  # same source bytes, same stored bytes
    assert missing.status == "missing" and "HTTP 404" in missing.error
    assert corrupt.status == "undecodable"


def test_http_server_errors_are_retried_then_missing(dataset_dir):
    with failing_http_server(503) as (base, seen):
        r = load_image(f"{base}/x.jpg", _cfg(dataset_dir, retries=2))
    assert r.status == "missing" and "HTTP 503 after 3 attempt(s)" in r.error
    assert len(seen) == 3
    with failing_http_server(404) as (base, seen):
        load_image(f"{base}/x.jpg", _cfg(dataset_dir, retries=2))
    assert len(seen) == 1  # a client error is final


def test_drip_fed_image_stops_at_the_total_deadline_retries_included(dataset_dir):
    import time

    # every byte arrives well within the 1 s read timeout, so only the total deadline can stop the fetch
    with drip_http_server(byte_every_s=0.1, total_s=20) as (base, started):
        t0 = time.monotonic()
        r = load_image(f"{base}/slow.jpg", _cfg(dataset_dir, timeout_s=1.0, retries=2, deadline_s=1.5))
        elapsed = time.monotonic() - t0
    assert r.status == "missing" and "deadline of 1.5s exceeded" in r.error and "bytes received" in r.error
    assert 1.4 <= elapsed < 2.5, elapsed
    assert len(started) == 1  # no retry after the deadline passed


def test_declared_or_actual_body_over_the_cap_is_refused(dataset_dir):
    with drip_http_server(byte_every_s=0.001, total_s=2, declared_length=10_000_000) as (base, _):
        r = load_image(f"{base}/big.jpg", _cfg(dataset_dir, max_bytes=1_000_000))
    assert r.status == "refused" and "1000000-byte cap" in r.error
    with http_server(dataset_dir / "img") as base:
        r = load_image(f"{base}/big.jpg", _cfg(dataset_dir, max_bytes=100))
    assert r.status == "refused" and "cap" in r.error


def test_http_connection_refused_is_missing(dataset_dir):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = load_image(f"http://127.0.0.1:{port}/a.jpg", _cfg(dataset_dir, retries=1))
    assert r.status == "missing" and "after 2 attempt(s)" in r.error


def test_s3_image_through_moto_server(dataset_dir, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="imgs")
        client.put_object(Bucket="imgs", Key="p/a.jpg", Body=jpeg_bytes(100, 50))
        ok = load_image("s3://imgs/p/a.jpg", _cfg(dataset_dir))
        missing = load_image("s3://imgs/p/none.jpg", _cfg(dataset_dir))
    finally:
        server.stop()
    assert ok.status == "ok" and (ok.width, ok.height) == (64, 32)
    assert missing.status == "missing" and "NoSuchKey" in missing.error
