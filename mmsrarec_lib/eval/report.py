"""The evaluation report: the latest run of each (model, protocol), mean ± std over its seeds, x100 for display.

"Latest" is the run_id whose rows were written last (max ``created_at``). The std is the sample standard deviation
over seeds (0 with a single seed). Output: a markdown table (printed and saved as ``report.md``) and one PNG bar
chart per protocol (``<protocol>.png``, matplotlib Agg) in the same folder.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass

import pandas as pd

from mmsrarec_lib.eval.protocols import PROTOCOL_METRICS, PROTOCOLS, metric_key
from mmsrarec_lib.eval.registry import EVALUATION_RUNS_TABLE
from mmsrarec_lib.storage import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    dataset: str
    summary: pd.DataFrame  # protocol, model, metric, mean, std, n_seeds, n_users, run_id, model_versions


def latest_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the most recent run_id per (model, protocol)."""
    if rows.empty:
        return rows
    last = rows.groupby(["model", "protocol", "run_id"], as_index=False)["created_at"].max()
    last = last.sort_values(["created_at", "run_id"]).groupby(["model", "protocol"], as_index=False).tail(1)
    return rows.merge(last[["model", "protocol", "run_id"]], on=["model", "protocol", "run_id"])


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds of each metric of the latest run per (model, protocol)."""
    rows = latest_runs(rows)
    if rows.empty:
        return pd.DataFrame(columns=["protocol", "model", "metric", "mean", "std", "n_seeds", "n_users", "run_id",
                                     "model_versions"])
    rows = rows.assign(key=[metric_key(m, None if pd.isna(k) else int(k)) for m, k in zip(rows.metric, rows.k)])
    # one value per seed (a run stores one row per metric and seed)
    per_seed = rows.sort_values("created_at").groupby(["protocol", "model", "run_id", "key", "seed"],
                                                      dropna=False).tail(1)
    g = per_seed.groupby(["protocol", "model", "run_id", "key"], dropna=False)
    out = g.agg(mean=("value", "mean"), std=("value", lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0),
                n_seeds=("value", "size"), n_users=("n_users", "max"),
                model_versions=("model_version", lambda v: ",".join(sorted(set(v))))).reset_index()
    return out.rename(columns={"key": "metric"})[
        ["protocol", "model", "metric", "mean", "std", "n_seeds", "n_users", "run_id", "model_versions"]]


def build_report(warehouse: Warehouse, dataset: str) -> Report:
    if not warehouse.has_table(dataset, EVALUATION_RUNS_TABLE):
        raise FileNotFoundError(f"no evaluation_runs for dataset {dataset!r}: run `mmsrarec evaluate` first")
    rows = warehouse.read_table(dataset, EVALUATION_RUNS_TABLE).to_pandas()
    rows = rows[rows["dataset"] == dataset]
    return Report(dataset=dataset, summary=summarize(rows))


def format_markdown(report: Report) -> str:
    """One table per protocol: a row per model, a column per metric, ``mean ± std`` x100."""
    parts = [f"# Evaluation report: {report.dataset}", ""]
    s = report.summary
    for protocol in PROTOCOLS:
        sub = s[s.protocol == protocol]
        if sub.empty:
            continue
        keys = [metric_key(m, k) for m, k in PROTOCOL_METRICS[protocol]]
        parts += [f"## protocol `{protocol}` (x100, mean ± std over seeds)", "",
                  "| model | " + " | ".join(keys) + " | seeds | users | run_id |",
                  "|---" * (len(keys) + 4) + "|"]
        for model, m in sub.groupby("model", sort=True):
            cells = []
            for key in keys:
                hit = m[m.metric == key]
                cells.append(f"{100 * hit['mean'].iloc[0]:.2f} ± {100 * hit['std'].iloc[0]:.2f}" if len(hit) else "-")
            parts.append(f"| {model} | " + " | ".join(cells)
                         + f" | {int(m.n_seeds.max())} | {int(m.n_users.max())} | {m.run_id.iloc[0]} |")
        parts.append("")
    return "\n".join(parts)


def plot_protocol(report: Report, protocol: str) -> bytes | None:
    """A grouped bar chart (metrics on x, one bar per model, std error bars) as PNG bytes; None without rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sub = report.summary[report.summary.protocol == protocol]
    if sub.empty:
        return None
    keys = [metric_key(m, k) for m, k in PROTOCOL_METRICS[protocol]]
    models = sorted(sub.model.unique())
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(keys), 4))
    for i, model in enumerate(models):
        m = sub[sub.model == model].set_index("metric")
        means = [100 * m["mean"].get(k, np.nan) for k in keys]
        stds = [100 * m["std"].get(k, 0.0) for k in keys]
        ax.bar(np.arange(len(keys)) + i * width - 0.4 + width / 2, means, width, yerr=stds, capsize=3, label=model)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_ylabel("x100")
    ax.set_title(f"{report.dataset}: protocol {protocol} (mean ± std over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def default_out_dir(warehouse: Warehouse, dataset: str) -> str:
    """``<cwd>/reports/<dataset>`` for a local warehouse, ``<warehouse>/<dataset>/reports`` for S3."""
    return warehouse.uri(dataset, "reports") if warehouse.is_s3 else os.path.join(os.getcwd(), "reports", dataset)


def write_report(warehouse: Warehouse, dataset: str, *, out_dir: str | None = None) -> tuple[str, list[str]]:
    """Build the report, write ``report.md`` and ``<protocol>.png`` into ``out_dir``; return (markdown, paths)."""
    report = build_report(warehouse, dataset)
    out_dir = out_dir or default_out_dir(warehouse, dataset)
    files = {"report.md": format_markdown(report).encode()}
    for protocol in PROTOCOLS:
        png = plot_protocol(report, protocol)
        if png is not None:
            files[f"{protocol}.png"] = png
    paths = []
    for name, data in files.items():
        path = f"{out_dir.rstrip('/')}/{name}"
        if out_dir.startswith("s3://"):
            warehouse.write_bytes(path, data)  # must lie inside the warehouse (its credentials)
        else:
            os.makedirs(out_dir, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        paths.append(path)
    log.info("report written to %s", out_dir)
    return files["report.md"].decode(), paths
