"""The one place for the process environment every MMSRARec job runs with.

- **offline hubs**: ``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` (models are packaged or local paths; nothing
  is downloaded at run time), ``TOKENIZERS_PARALLELISM=false`` (no tokenizer thread pool fighting torch's);
- **threads**: torch's CPU threads from an explicit value, else ``$MMSRAREC_TORCH_THREADS``, else the caller's
  default (stage 3 uses 1: on a shared 2-core machine two OpenMP threads made a small matmul 4x slower than one);
- **progress bars in logs**: a job started by Airflow writes to a pipe, where every tqdm refresh becomes a log line;
  ``TQDM_MININTERVAL`` (read by tqdm >= 4.66 as its default) keeps it to one line every 30 s.

A value already set in the environment always wins. ``jobs/cli.py`` applies :func:`apply_offline_defaults` once
for every command; ``mmsrarec_lib.orchestration.run_job`` gives a job's child process :func:`job_env`; benchmarks
call :func:`apply_offline_defaults` before importing a model library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

ENV_TORCH_THREADS = "MMSRAREC_TORCH_THREADS"
OFFLINE_DEFAULTS: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# a job whose output goes to a log (a pipe), not a terminal: unbuffered lines, sparse progress bars
LOG_DEFAULTS: Mapping[str, str] = {
    "PYTHONUNBUFFERED": "1",
    "TQDM_MININTERVAL": "30",
}


def offline_env(base: Mapping[str, str] | None = None, *, logs: bool = False) -> dict[str, str]:
    """``base`` (default: this process's environment) with the offline defaults (and, with ``logs``, the
    log-friendly ones) added where ``base`` does not set them."""
    defaults = {**OFFLINE_DEFAULTS, **(LOG_DEFAULTS if logs else {})}
    return {**defaults, **dict(os.environ if base is None else base)}


def job_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a job run as a child process whose output is logged (an Airflow task): this process's
    environment over the offline and log defaults, then ``extra`` (e.g. credentials) over everything."""
    return {**offline_env(logs=True), **dict(extra or {})}


def apply_offline_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the offline defaults in ``environ`` (default ``os.environ``) where unset; call before importing
    transformers / huggingface_hub, which read them at import."""
    env = os.environ if environ is None else environ
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)


def configure_threads(threads: int | None = None, *, default: int | None = None, cpu_only: bool = False) -> int | None:
    """Set torch's intra-op CPU threads (process-wide, so only at a job's or benchmark's edge).

    ``threads`` (a flag) wins, else ``$MMSRAREC_TORCH_THREADS``, else ``default``; when all are None torch keeps its
    own choice and torch is not even imported. ``cpu_only``: leave torch alone when a GPU is present. Returns the
    thread count in effect (None when nothing was set).
    """
    n = threads if threads is not None else os.environ.get(ENV_TORCH_THREADS) or default
    if n is None:
        return None
    n = int(n)
    if n < 1:
        raise ValueError(f"torch threads must be >= 1, got {n}")
    import torch

    if not (cpu_only and torch.cuda.is_available()):
        torch.set_num_threads(n)
    return torch.get_num_threads()
