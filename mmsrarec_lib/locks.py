"""Per-dataset write locks that work on a local warehouse and on S3: a lease object created with a conditional put.

Every job that reads a table and writes something derived from it (``ingest``, ``refresh-collab``, the publish step
of ``recommend``) holds the dataset's lock from its first read to its last commit, so two writers never rebuild
from the same snapshot and lose each other's rows. The API::

    from mmsrarec_lib.locks import dataset_lock

    with dataset_lock(warehouse, dataset, owner=run_id, purpose="recommend 2026-11-30") as lease:
        ...  # read what the write derives from, stage shards
        lease.check()  # right before the commit: raises LockLost if the lease expired or was taken over
        ...  # the one commit (and any side files, e.g. watermarks)

The lease is the object ``<warehouse>/<dataset>/_locks/<name>.lease`` (JSON: owner, purpose, token, expiry; no
secrets). ``name`` defaults to ``dataset``: one lock per dataset, shared by every writer. Creating it is atomic:

- **local disk**: the lease is written to a private file and hard-linked into place (``link`` is atomic and
  fails when the lease exists, like ``O_EXCL``, but a reader never sees a half-written lease);
- **S3**: ``PutObject`` with ``If-None-Match: *`` (AWS S3 and moto's server answer 412 to every other creator).

A background thread renews the lease every ``ttl_s / 3`` seconds (S3: ``PutObject`` with ``If-Match`` on the
lease's own ETag, so a renewal never overwrites someone else's lease). A holder that dies stops renewing; once
its lease is ``ttl_s`` old a waiter takes it over:

- **S3**: ``PutObject`` with ``If-Match: <the stale ETag>``: of several waiters exactly one succeeds;
- **local disk**: the waiter first creates ``<name>.lease.takeover-<stale token>`` with ``O_EXCL`` (one winner
  per stale lease), then atomically replaces the lease with its own
  (``os.replace``).

A waiter polls (every ``poll_s``) until ``wait_s`` has passed, then raises :class:`LockTimeout` naming the holder.
The guarantee is that of any lease: a holder paused for longer than ``ttl_s`` (it missed every renewal) can lose
its lease without noticing until its next :meth:`Lease.check`; keep ``ttl_s`` far above any pause, and call
``check()`` right before each commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)

LOCK_DIR = "_locks"
DEFAULT_TTL_S = 120.0
DEFAULT_WAIT_S = 3600.0
DEFAULT_POLL_S = 1.0


class LockTimeout(TimeoutError):
    """The lock stayed held by someone else for longer than the caller was willing to wait."""


class LockLost(RuntimeError):
    """The lease expired or was taken over while held: the holder must not commit."""


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease object says: who holds it, why, and until when (epoch seconds)."""

    owner: str
    purpose: str
    token: str
    expires_at: float
    acquired_at: float

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseInfo | None:
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in ("owner", "purpose", "token", "expires_at", "acquired_at")})
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign object: treated as expired

    def describe(self) -> str:
        left = self.expires_at - time.time()
        return f"{self.owner} ({self.purpose}; lease {'expires in' if left >= 0 else 'expired'} {abs(left):.0f}s)"


class _Store:
    """Conditional create / read / replace / delete of one small object (the lease)."""

    def create(self, data: bytes) -> str | None:  # a version tag when created, None when it exists
        raise NotImplementedError

    def read(self) -> tuple[bytes, str] | None:  # (content, version tag), None when absent
        raise NotImplementedError

    def replace_if(self, data: bytes, tag: str) -> str | None:  # new tag, or None when the tag no longer matches
        raise NotImplementedError

    def take_over(self, data: bytes, stale: LeaseInfo | None, tag: str) -> str | None:
        return self.replace_if(data, tag)

    def delete_if(self, tag: str) -> None:
        raise NotImplementedError


class _LocalStore(_Store):
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)

    @staticmethod
    def _tag(data: bytes) -> str:
        info = LeaseInfo.from_bytes(data)
        return f"{info.token}:{info.expires_at}" if info else f"torn:{len(data)}"

    def create(self, data: bytes) -> str | None:
        # written in full to a private file, then linked into place: link() fails when the lease exists, and a
        # reader never sees a half-written lease (an O_EXCL create would be visible while still empty)
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return None
        finally:
            os.remove(tmp)
        return self._tag(data)

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, self._tag(data)

    def _write(self, data: bytes) -> str:
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)  # atomic: readers see the old or the new lease, never a torn one
        return self._tag(data)

    def replace_if(self, data: bytes, tag: str) -> str | None:
        current = self.read()
        if current is None or current[1] != tag:
            return None
        return self._write(data)

    def take_over(self, data: bytes, stale: LeaseInfo | None, tag: str) -> str | None:
        marker = f"{self.path}.takeover-{(stale.token if stale else tag).replace(':', '_')}"
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return None  # another waiter is taking over this stale lease
        try:
            return self.replace_if(data, tag)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(marker)

    def delete_if(self, tag: str) -> None:
        current = self.read()
        if current is not None and current[1] == tag:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


class _S3Store(_Store):
    def __init__(self, warehouse: Warehouse, uri: str) -> None:
        import boto3

        opts = {k.upper(): v for k, v in warehouse.storage_options.items()}
        self.bucket, _, self.key = uri[len("s3://") :].partition("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT") or None,
            aws_access_key_id=opts.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=opts.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=opts.get("AWS_SESSION_TOKEN"),
            region_name=opts.get("AWS_REGION"),
        )

    @staticmethod
    def _code(exc) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def _put(self, data: bytes, **cond) -> str | None:
        import botocore.exceptions

        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **cond)
        except botocore.exceptions.ClientError as exc:
            if self._code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409",
                                   "NoSuchKey", "404"):
                return None
            raise
        return resp["ETag"]

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        import botocore.exceptions

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except botocore.exceptions.ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return obj["Body"].read(), obj["ETag"]

    def replace_if(self, data: bytes, tag: str) -> str | None:
        return self._put(data, IfMatch=tag)

    def delete_if(self, tag: str) -> None:
        current = self.read()
        if current is not None and current[1] == tag:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


def lock_uri(warehouse: Warehouse, dataset: str, name: str = "dataset") -> str:
    return warehouse.uri(dataset, LOCK_DIR, f"{name}.lease")


def _store(warehouse: Warehouse, uri: str) -> _Store:
    if warehouse.is_s3:
        return _S3Store(warehouse, uri)
    return _LocalStore(uri)


class Lease:
    """A held lock: renewed in the background until released; :meth:`check` before every commit."""

    def __init__(self, store: _Store, info: LeaseInfo, tag: str, *, ttl_s: float, uri: str) -> None:
        self._store, self.info, self._tag, self.ttl_s, self.uri = store, info, tag, ttl_s, uri
        self._lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{posixpath.basename(uri)}",
                                        daemon=True)
        self._thread.start()

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except LockLost:
                return
            except Exception as exc:  # noqa: BLE001 (a transient storage error: try again next period)
                log.warning("renewing lock %s failed: %s", self.uri, exc)

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` ahead; raises :class:`LockLost` when the lease is no longer ours."""
        with self._mutex:
            if self._lost:
                raise LockLost(self._lost)
            info = LeaseInfo(**{**self.info.__dict__, "expires_at": time.time() + self.ttl_s})
            tag = self._store.replace_if(info.to_bytes(), self._tag)
            if tag is None:
                self._lost = f"lock {self.uri} held by {self.info.owner} was taken over (it expired)"
                log.error(self._lost)
                raise LockLost(self._lost)
            self.info, self._tag = info, tag

    def check(self) -> None:
        """Raise :class:`LockLost` unless the lease is still ours and not expired (renews it first)."""
        self.renew()
        if self.info.expires_at <= time.time():
            raise LockLost(f"lock {self.uri} expired")

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._mutex:
            if not self._lost:
                try:
                    self._store.delete_if(self._tag)
                except Exception as exc:  # noqa: BLE001 (the lease then simply expires)
                    log.warning("releasing lock %s failed (%s); it expires in %.0fs", self.uri, exc, self.ttl_s)
            self._lost = self._lost or "released"


def acquire(
    warehouse: Warehouse,
    dataset: str,
    *,
    owner: str,
    purpose: str = "",
    name: str = "dataset",
    ttl_s: float = DEFAULT_TTL_S,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = DEFAULT_POLL_S,
) -> Lease:
    """Take the lock (waiting up to ``wait_s``); the caller must :meth:`Lease.release` it (or use
    :func:`dataset_lock`)."""
    if ttl_s <= 0 or poll_s <= 0 or wait_s < 0:
        raise ValueError("ttl_s and poll_s must be > 0, wait_s >= 0")
    uri = lock_uri(warehouse, dataset, name)
    store = _store(warehouse, uri)
    deadline = time.monotonic() + wait_s
    waited_for: str | None = None
    while True:
        now = time.time()
        mine = LeaseInfo(owner=owner, purpose=purpose, token=uuid.uuid4().hex, expires_at=now + ttl_s,
                         acquired_at=now)
        tag = store.create(mine.to_bytes())
        if tag is None:
            current = store.read()
            if current is None:
                continue  # released between our create and read: try again at once
            held = LeaseInfo.from_bytes(current[0])
            if held is None or held.expires_at < time.time():
                tag = store.take_over(mine.to_bytes(), held, current[1])
                if tag is not None:
                    log.warning("lock %s: took over the expired lease of %s", uri,
                                held.describe() if held else "an unreadable lease")
            elif waited_for != held.token:
                waited_for = held.token
                log.info("lock %s is held by %s; waiting (up to %.0fs)", uri, held.describe(), wait_s)
        if tag is not None:
            log.info("lock %s acquired by %s (%s)", uri, owner, purpose)
            return Lease(store, mine, tag, ttl_s=ttl_s, uri=uri)
        if time.monotonic() >= deadline:
            current = store.read()
            held = LeaseInfo.from_bytes(current[0]) if current else None
            raise LockTimeout(f"dataset {dataset!r} is locked by {held.describe() if held else 'another writer'}"
                              f" ({uri}); gave up after {wait_s:.0f}s")
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())) * (0.5 + 0.5 * (uuid.uuid4().int % 100) / 100))


@contextlib.contextmanager
def dataset_lock(
    warehouse: Warehouse,
    dataset: str,
    *,
    owner: str,
    purpose: str = "",
    name: str = "dataset",
    ttl_s: float = DEFAULT_TTL_S,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = DEFAULT_POLL_S,
) -> Iterator[Lease]:
    """Hold the dataset's write lock for the block (see the module docstring); released on exit, even on error."""
    lease = acquire(warehouse, dataset, owner=owner, purpose=purpose, name=name, ttl_s=ttl_s, wait_s=wait_s,
                    poll_s=poll_s)
    try:
        yield lease
    finally:
        lease.release()
