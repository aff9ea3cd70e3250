"""``mmsrarec``: one subcommand per job.

Each job module in ``jobs/`` defines ``COMMAND``, ``HELP``, ``add_arguments(parser)`` and ``main(args) -> int``.
Modules are imported when the parser is built; heavy libraries are imported inside ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jobs._common import setup_logging

# job modules, in the order the pipeline runs them
JOB_MODULES = (
    "ingest",
    "encode_images",
    "train_baseline",
    "train_summarizer",
    "summarize",
    "index_content",
    "build_collab",
    "refresh_collab",
    "train_recommender",
    "recommend",
    "publish_recommendations",
    "evaluate",
    "compare",
    "report",
    "runs",
    "sql",
    "maintain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsrarec", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in JOB_MODULES:
        try:
            module = importlib.import_module(f"jobs.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"jobs.{name}":
                continue  # that job has not landed yet
            raise
        p = sub.add_parser(module.COMMAND, help=module.HELP, description=module.HELP,
                           aliases=getattr(module, "ALIASES", ()))
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mmsrarec_lib.runtime_env import apply_offline_defaults

    apply_offline_defaults()  # offline hubs etc. for every command, before any job imports transformers
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "train":
        print("mmsrarec train: deprecated name, use `mmsrarec train-recommender` (same flags)", file=sys.stderr)
    # commit lineage (mmsrarec_lib.storage.commit_metadata): this command, for this call only (an in-process
    # caller, e.g. a test, runs several commands in one process)
    previous_job = os.environ.get("MMSRAREC_JOB")
    os.environ["MMSRAREC_JOB"] = args.command
    try:
        return int(args._main(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        # a clear one-line error for bad input; the traceback is in the debug log
        import logging

        logging.getLogger("mmsrarec").debug("failed", exc_info=True)
        print(f"mmsrarec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous_job is None:
            os.environ.pop("MMSRAREC_JOB", None)
        else:
            os.environ["MMSRAREC_JOB"] = previous_job


if __name__ == "__main__":
    sys.exit(main())
