"""Tiny inputs the ingest tests build themselves: images, item/interaction files, a local HTTP server."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def jpeg_bytes(width: int = 40, height: int = 20, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="JPEG")
    return out.getvalue()


def png_rgba_bytes(width: int = 30, height: int = 60) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 128, 255, 100)).save(out, format="PNG")
    return out.getvalue()


def corrupt_jpeg_bytes() -> bytes:
    """A JPEG header followed by garbage: opens as JPEG, fails to decode."""
    good = jpeg_bytes()
    return good[:20] + b"\x00garbage" * 20


def write_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write ``rows`` as CSV/TSV (lists joined with |, None empty), JSONL or Parquet by ``path``'s extension."""
    suffix = path.suffix.lower()
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    if suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="," if suffix == ".csv" else "\t")
            w.writerow(columns)
            for r in rows:
                vals = [r.get(c) for c in columns]
                w.writerow(["|".join(v) if isinstance(v, list) else ("" if v is None else v) for v in vals])
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(suffix)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def failing_http_server(status: int) -> Iterator[tuple[str, list[str]]]:
    """A server answering every GET with ``status``; yields (base URL, list of requested paths)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def drip_http_server(*, byte_every_s: float = 0.2, total_s: float = 20.0,
                     declared_length: int = 100_000) -> Iterator[tuple[str, list[float]]]:
    """A server that answers 200 and then drips one byte every ``byte_every_s`` (each read stays under any
    per-read timeout). It gives up by itself after ``total_s``, so a test can never hang on it. Yields the base
    URL and the list of request start times."""
    import time

    started: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            started.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(declared_length))
            self.end_headers()
            end = time.monotonic() + total_s
            try:
                while time.monotonic() < end:
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(byte_every_s)
            except OSError:
                pass  # the client hung up

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", started
    finally:
        server.shutdown()
        server.server_close()
