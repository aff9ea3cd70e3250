"""``mmsrarec report``: the latest evaluation run of each model, mean ± std over seeds, plus a PNG per protocol."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from jobs._common import add_warehouse_args, warehouse_from_args

COMMAND = "report"
HELP = "print the latest evaluation of each model (mean ± std over seeds, x100) and write report.md + PNG charts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse_args(parser)
    parser.add_argument("--out", default=None,
                        help="output folder (default ./reports/<dataset>/, or <warehouse>/<dataset>/reports for S3)")


@dataclass(frozen=True)
class ReportConfig:
    warehouse: str | None
    dataset: str
    out: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReportConfig:
        return cls(warehouse=args.warehouse, dataset=args.dataset, out=args.out)


def main(args: argparse.Namespace) -> int:
    from mmsrarec_lib.eval.report import write_report

    cfg = ReportConfig.from_args(args)
    markdown, paths = write_report(warehouse_from_args(args), cfg.dataset, out_dir=cfg.out)
    print(markdown)
    for p in paths:
        print(f"wrote {p}")
    return 0
