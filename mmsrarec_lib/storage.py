"""The warehouse: every table is a Delta table at ``<root>/<dataset>/<table>``, written with delta-rs.

One ``storage_options`` dict (delta-rs' own keys) is passed everywhere; for ``s3://`` roots it is filled from the
standard AWS environment variables when not given. Plain objects (model checkpoints, faiss indexes) go through the
same layer (``pyarrow.fs``), so a local path and ``s3://bucket/prefix`` behave alike.

Every commit carries lineage (:func:`commit_metadata`): delta-rs custom commit metadata under the key
``mmsrarec`` in the version's ``commitInfo`` (job, run id, Airflow dag/run/task/try when the job runs in a task,
code version, plus what the job added with :func:`set_commit_context`); ``mmsrarec sql`` shows it in the
``table_history`` view.

Secrets never leave this module: ``Warehouse.__repr__`` hides ``storage_options`` and errors name only URIs.
"""

from __future__ import annotations

import logging
import os
import posixpath
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

log = logging.getLogger(__name__)

ENV_WAREHOUSE = "MMSRAREC_WAREHOUSE"
DEFAULT_WAREHOUSE = "./warehouse"
# Appends retry a commit that lost a race (e.g. two writers creating the same table at once); a failed commit
# made nothing visible, so retrying cannot duplicate rows.
APPEND_COMMIT_ATTEMPTS = 5
# delta-rs' own commit retries (it rebases a commit onto a newer version when the conflict checker allows it).
MAX_COMMIT_RETRIES = 10
COMMIT_METADATA_KEY = "mmsrarec"
ENV_JOB = "MMSRAREC_JOB"
ENV_RUN_ID = "MMSRAREC_RUN_ID"
# Airflow sets these in a task's process (``AIRFLOW_CTX_*``); a job started by the task inherits them.
_AIRFLOW_ENV = {
    "airflow_dag_id": "AIRFLOW_CTX_DAG_ID",
    "airflow_run_id": "AIRFLOW_CTX_DAG_RUN_ID",
    "airflow_task_id": "AIRFLOW_CTX_TASK_ID",
    "airflow_try_number": "AIRFLOW_CTX_TRY_NUMBER",
}
_commit_context: dict[str, str] = {}
_process_ids: dict[str, str] = {}
# AWS environment variables read into delta-rs storage options for s3:// warehouses (the standard chain).
_AWS_ENV_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
)


def resolve_warehouse_uri(uri: str | None = None) -> str:
    """``--warehouse`` wins, then ``$MMSRAREC_WAREHOUSE``, then ``./warehouse``; local paths become absolute."""
    chosen = uri or os.environ.get(ENV_WAREHOUSE) or DEFAULT_WAREHOUSE
    if chosen.startswith("file://"):
        chosen = chosen[len("file://") :]
    if "://" in chosen:
        if not chosen.startswith("s3://"):
            raise ValueError(f"unsupported warehouse scheme in {chosen!r}: use a local path or s3://bucket/prefix")
        return chosen.rstrip("/")
    return str(Path(chosen).expanduser().resolve())


def storage_options_from_env(uri: str) -> dict[str, str]:
    """delta-rs storage options for ``uri`` from the environment (empty for local paths)."""
    if not uri.startswith("s3://"):
        return {}
    opts = {k: os.environ[k] for k in _AWS_ENV_KEYS if os.environ.get(k)}
    if "AWS_REGION" not in opts and "AWS_DEFAULT_REGION" in opts:
        opts["AWS_REGION"] = opts["AWS_DEFAULT_REGION"]
    opts.pop("AWS_DEFAULT_REGION", None)
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts.setdefault("AWS_ALLOW_HTTP", "true")
    if "AWS_ACCESS_KEY_ID" not in opts and opts.get("AWS_PROFILE"):
        opts = {**_profile_credentials(opts["AWS_PROFILE"]), **opts}
    return opts


def _profile_credentials(profile: str) -> dict[str, str]:
    """Keys (and region) of an AWS profile, resolved by botocore's credential chain.

    delta-rs ignores ``AWS_PROFILE`` (it falls back to the instance metadata service), so a profile in
    ``~/.aws/credentials`` / ``config`` is resolved here and handed over as explicit keys.
    """
    import boto3

    session = boto3.Session(profile_name=profile)
    credentials = session.get_credentials()
    if credentials is None:
        return {}
    frozen = credentials.get_frozen_credentials()
    out = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        out["AWS_SESSION_TOKEN"] = frozen.token
    if session.region_name:
        out["AWS_REGION"] = session.region_name
    return out


def set_commit_context(**values: object) -> None:
    """Add job-specific lineage (e.g. ``run_date``, ``model_run``) to every later commit of this process."""
    _commit_context.update({k: str(v) for k, v in values.items() if v is not None})


def commit_metadata(*, extra: Mapping[str, object] | None = None) -> dict[str, str]:
    """The lineage written into a commit: job, run id, Airflow ids (when in a task), code version, context.

    ``job`` is ``$MMSRAREC_JOB`` (the CLI sets the command), ``run_id`` is ``$MMSRAREC_RUN_ID`` or one id per
    process. Never secrets: only these names and values end up in the log.
    """
    from mmsrarec_lib.runs import code_version, new_run_id

    if "run_id" not in _process_ids:  # one id for the whole process (not exported: child jobs get their own)
        _process_ids["run_id"] = new_run_id(os.environ.get(ENV_JOB, "run"))
    meta = {"job": os.environ.get(ENV_JOB, "library"), "run_id": os.environ.get(ENV_RUN_ID) or _process_ids["run_id"]}
    meta.update({key: os.environ[var] for key, var in _AIRFLOW_ENV.items() if os.environ.get(var)})
    meta["code_version"] = code_version()
    meta.update(_commit_context)
    meta.update({k: str(v) for k, v in (extra or {}).items() if v is not None})
    return meta


def commit_properties(*, extra: Mapping[str, object] | None = None) -> CommitProperties:
    """delta-rs commit properties of every write: lineage metadata and delta-rs' own conflict retries."""
    return CommitProperties(custom_metadata={COMMIT_METADATA_KEY: commit_metadata(extra=extra)},
                            max_commit_retries=MAX_COMMIT_RETRIES)


def _s3_filesystem(options: Mapping[str, str]) -> pafs.S3FileSystem:
    opts = {k.upper(): v for k, v in options.items()}
    endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT")
    kwargs: dict = {}
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        kwargs["endpoint_override"] = rest or scheme
        kwargs["scheme"] = scheme if rest else "https"
    if opts.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = opts["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = opts.get("AWS_SECRET_ACCESS_KEY", "")
        if opts.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = opts["AWS_SESSION_TOKEN"]
    if opts.get("AWS_REGION"):
        kwargs["region"] = opts["AWS_REGION"]
    return pafs.S3FileSystem(**kwargs)


def _is_view(type_: pa.DataType) -> bool:
    return pa.types.is_string_view(type_) or pa.types.is_binary_view(type_)


def _plain(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(type_):
        return pa.string()
    return pa.binary() if pa.types.is_binary_view(type_) else type_


def _declare_view_columns(data: pads.FileSystemDataset) -> pads.FileSystemDataset:
    """delta-rs' MERGE writes string columns as Arrow ``string_view``; files of one table then disagree with the
    log's ``string``, and a filtered scan fails ("no kernel matching (string, string_view)"). Declare such columns
    as view types, so every file reads (plain strings are cast up); :meth:`Warehouse.read_table` casts back."""
    fragments = list(data.get_fragments())
    views = {f.name for frag in fragments for f in frag.physical_schema if _is_view(f.type)}
    if not views:
        return data
    schema = pa.schema(
        [f.with_type(pa.string_view() if pa.types.is_string(f.type) else pa.binary_view())
         if f.name in views and (pa.types.is_string(f.type) or pa.types.is_binary(f.type)) else f
         for f in data.schema]
    )
    return pads.FileSystemDataset.from_paths(
        [frag.path for frag in fragments],
        schema=schema,
        format=data.format,
        filesystem=data.filesystem,
        partitions=[frag.partition_expression for frag in fragments],
    )


@dataclass(frozen=True)
class Warehouse:
    """A warehouse root (local path or ``s3://bucket/prefix``) plus the storage options used for every access."""

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_uri(cls, uri: str | None = None, *, storage_options: Mapping[str, str] | None = None) -> Warehouse:
        root = resolve_warehouse_uri(uri)
        opts = dict(storage_options) if storage_options is not None else storage_options_from_env(root)
        return cls(root=root, storage_options=opts)

    # ------------------------------------------------------------------ paths
    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, *parts: str) -> str:
        """URI of a path below the root, e.g. ``uri("ml", "models", run_id)``."""
        clean = [p.strip("/") for p in parts if p]
        return posixpath.join(self.root, *clean) if clean else self.root

    def table_uri(self, dataset: str, table: str) -> str:
        return self.uri(dataset, table)

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the root's path inside it."""
        if self.is_s3:
            return _s3_filesystem(self.storage_options), self.root[len("s3://") :]
        return pafs.LocalFileSystem(), self.root

    def _fs_path(self, uri: str) -> tuple[pafs.FileSystem, str]:
        fs, root_path = self.filesystem()
        if not uri.startswith(self.root):
            raise ValueError(f"{uri!r} is not inside the warehouse {self.root!r}")
        return fs, root_path + uri[len(self.root) :]

    # ------------------------------------------------------------------ tables
    def delta_table(self, dataset: str, table: str, *, version: int | None = None) -> DeltaTable:
        uri = self.table_uri(dataset, table)
        try:
            return DeltaTable(uri, version=version, storage_options=dict(self.storage_options) or None)
        except TableNotFoundError as exc:
            raise FileNotFoundError(f"no Delta table {table!r} for dataset {dataset!r} at {uri}") from exc

    def has_table(self, dataset: str, table: str) -> bool:
        try:
            self.delta_table(dataset, table)
        except FileNotFoundError:
            return False
        return True

    def table_version(self, dataset: str, table: str) -> int | None:
        return self.delta_table(dataset, table).version() if self.has_table(dataset, table) else None

    def dataset(self, dataset: str, table: str, *, version: int | None = None) -> pads.Dataset:
        """A pyarrow dataset over the table's current files (through the Delta log, never a directory scan).

        A native filesystem is passed explicitly: delta-rs' own object store can abort a short process at exit.
        Without ``version``, the version comes from :func:`mmsrarec_lib.pinning.pinned_version`: the latest,
        except for a table that an unfinished multi-table run (e.g. an ingest in progress, or killed) is writing.
        """
        if version is None:
            from mmsrarec_lib.pinning import pinned_version

            version = pinned_version(self, dataset, table)
        dt = self.delta_table(dataset, table, version=version)
        fs, path = self._fs_path(self.table_uri(dataset, table))
        return _declare_view_columns(dt.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(path, fs)))

    def read_table(
        self,
        dataset: str,
        table: str,
        *,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        filter: pads.Expression | None = None,
    ) -> pa.Table:
        data = self.dataset(dataset, table, version=version)
        if not any(_is_view(f.type) for f in data.schema):
            return data.to_table(columns=columns, filter=filter)
        # pyarrow has no comparison kernels between string and string_view: filter after casting back
        table_ = data.to_table()
        table_ = table_.cast(pa.schema([f.with_type(_plain(f.type)) for f in table_.schema]))
        if filter is not None:
            table_ = table_.filter(filter)
        return table_.select(list(columns)) if columns is not None else table_

    def write_table(
        self,
        dataset: str,
        table: str,
        data: pa.Table,
        *,
        mode: Literal["overwrite", "append"] = "overwrite",
        partition_by: Sequence[str] | None = None,
        predicate: str | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> int:
        """Write ``data`` in one atomic Delta commit and return the new version.

        ``mode="overwrite"`` replaces the table (or, with ``predicate``, only the rows matching it, e.g. one
        partition); ``"append"`` adds rows. A crash before the commit leaves the previous version current.
        ``metadata`` adds to the commit's lineage (:func:`commit_metadata`).
        """
        uri = self.table_uri(dataset, table)
        kwargs: dict = {}
        if mode == "overwrite" and predicate is None:
            kwargs["schema_mode"] = "overwrite"
        for attempt in range(1, APPEND_COMMIT_ATTEMPTS + 1):
            try:
                write_deltalake(
                    uri,
                    data,
                    mode=mode,
                    partition_by=list(partition_by) if partition_by else None,
                    predicate=predicate,
                    storage_options=dict(self.storage_options) or None,
                    commit_properties=commit_properties(extra=metadata),
                    **kwargs,
                )
                break
            except CommitFailedError as exc:
                if mode != "append" or attempt == APPEND_COMMIT_ATTEMPTS:
                    raise
                log.warning("append to %s/%s lost a commit race (%s); retry %d", dataset, table, exc, attempt)
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        version = self.delta_table(dataset, table).version()
        log.info("wrote %s rows to %s/%s (version %s, %s)", data.num_rows, dataset, table, version, mode)
        return version

    def merge_table(
        self,
        dataset: str,
        table: str,
        data: pa.Table,
        *,
        keys: Sequence[str],
        metadata: Mapping[str, object] | None = None,
    ) -> int:
        """Upsert ``data`` on ``keys`` (update matched rows, insert new ones); creates the table when missing."""
        if not self.has_table(dataset, table):
            return self.write_table(dataset, table, data, mode="overwrite", metadata=metadata)
        if data.num_rows == 0:
            return self.delta_table(dataset, table).version()
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        dt = self.delta_table(dataset, table)
        (
            dt.merge(source=data, predicate=predicate, source_alias="s", target_alias="t",
                     commit_properties=commit_properties(extra=metadata))
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        version = self.delta_table(dataset, table).version()
        log.info("merged %s rows into %s/%s on %s (version %s)", data.num_rows, dataset, table, keys, version)
        return version

    # ------------------------------------------------------------------ plain objects
    def write_bytes(self, uri: str, data: bytes | memoryview) -> None:
        fs, path = self._fs_path(uri)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        tmp = path + ".tmp"
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, path)  # atomic rename locally; S3 has no partial objects anyway

    def read_bytes(self, uri: str) -> bytes:
        fs, path = self._fs_path(uri)
        with fs.open_input_stream(path) as f:
            return f.read()

    def exists(self, uri: str) -> bool:
        fs, path = self._fs_path(uri)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def list_dir(self, uri: str) -> list[str]:
        """Names directly below ``uri`` (empty when it does not exist)."""
        fs, path = self._fs_path(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(posixpath.basename(i.path) for i in infos)

    def delete_dir(self, uri: str) -> None:
        """Delete ``uri`` and everything below it (nothing happens when it does not exist)."""
        fs, path = self._fs_path(uri)
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)

    def upload_dir(self, local_dir: str | Path, uri: str) -> None:
        """Copy a local folder (e.g. a model checkpoint) to ``uri``; a local warehouse gets a plain copy."""
        local_dir = Path(local_dir)
        for f in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.write_bytes(posixpath.join(uri, f.relative_to(local_dir).as_posix()), f.read_bytes())

    def download_dir(self, uri: str, local_dir: str | Path) -> Path:
        """Copy the objects below ``uri`` to ``local_dir`` and return it."""
        fs, path = self._fs_path(uri)
        local_dir = Path(local_dir)
        for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
            if info.type != pafs.FileType.File:
                continue
            target = local_dir / info.path[len(path) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as f:
                target.write_bytes(f.read())
        return local_dir

    def local_path(self, uri: str) -> Path | None:
        """The local filesystem path for ``uri`` in a local warehouse, else None."""
        return None if self.is_s3 else Path(uri)
