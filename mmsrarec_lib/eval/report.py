"""The evaluation report: the latest run of each (model, protocol), mean ± std over its seeds, x100 for display,
and the paired bootstrap 95% interval of (model - SASRec) on each metric (``mmsrarec_lib.eval.paired``: the same
test users, seeds pooled, from the per-user ranks stored with the run).

"Latest" is the run_id whose rows were written last (max ``created_at``). The std is the sample standard deviation
over seeds (0 with a single seed). Output: markdown tables (printed and saved as ``report.md``) and one PNG per
protocol (``<protocol>.png``, matplotlib Agg): left, mean ± std bars; middle, the paired differences against SASRec
with their 95% intervals; right, when some models are far off (Pop, the content index, the MLLM alone), the same
for the models whose interval stays within ``NEAR_POINTS`` of SASRec, on a scale where their intervals are
readable.
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


BASELINE = "sasrec"
NEAR_POINTS = 5.0  # x100: the zoomed panel shows models whose whole interval is within this of SASRec


@dataclass(frozen=True)
class Report:
    dataset: str
    summary: pd.DataFrame  # protocol, model, metric, mean, std, n_seeds, n_users, run_id, model_versions
    intervals: pd.DataFrame | None = None  # protocol, model, metric, mean_diff, low, high, n_users, seeds


def paired_intervals(warehouse: Warehouse, dataset: str, summary: pd.DataFrame, rows: pd.DataFrame,
                     *, baseline: str = BASELINE) -> pd.DataFrame:
    """(model - baseline) per (protocol, model, metric) of the summary, within each model's latest run."""
    from mmsrarec_lib.eval.paired import RANK_METRICS, paired_interval

    out = []
    for (protocol, model, run_id), part in summary.groupby(["protocol", "model", "run_id"]):
        if model == baseline:
            continue
        seeds = sorted(int(s) for s in rows[(rows.run_id == run_id) & (rows.model == model)
                                            & (rows.protocol == protocol)].seed.dropna().unique())
        for metric in part.metric:
            if metric.partition("@")[0] not in RANK_METRICS:  # e.g. cold_share@10: not a per-user rank metric
                continue
            iv = paired_interval(warehouse, dataset, run_id=run_id, protocol=protocol, model=model,
                                 baseline=baseline, metric=metric, seeds=seeds)
            if iv is not None:
                out.append({"protocol": protocol, "model": model, "metric": metric, "mean_diff": iv.mean_diff,
                            "low": iv.low, "high": iv.high, "n_users": iv.n_users,
                            "seeds": ",".join(map(str, iv.seeds))})
    return pd.DataFrame(out, columns=["protocol", "model", "metric", "mean_diff", "low", "high", "n_users", "seeds"])


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
    summary = summarize(rows)
    return Report(dataset=dataset, summary=summary, intervals=paired_intervals(warehouse, dataset, summary, rows))


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
        iv = report.intervals[report.intervals.protocol == protocol] if report.intervals is not None else None
        if iv is not None and not iv.empty:
            parts += [f"paired (model - {BASELINE}), x100, bootstrap 95% interval over the same test users, "
                      "seeds pooled:", "", "| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            for model, m in iv.groupby("model", sort=True):
                cells = []
                for key in keys:
                    hit = m[m.metric == key]
                    cells.append(f"{100 * hit.mean_diff.iloc[0]:+.2f} [{100 * hit.low.iloc[0]:+.2f}, "
                                 f"{100 * hit.high.iloc[0]:+.2f}]" if len(hit) else "-")
                parts.append(f"| {model} | " + " | ".join(cells) + " |")
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
    iv = report.intervals[report.intervals.protocol == protocol] if report.intervals is not None else None
    has_iv = iv is not None and not iv.empty
    diff_models = sorted(iv.model.unique()) if has_iv else []
    near = [m for m in diff_models if iv[iv.model == m][["low", "high"]].abs().max().max() * 100 <= NEAR_POINTS]
    zoom = has_iv and 0 < len(near) < len(diff_models)
    n_panels = 1 + has_iv + zoom
    fig, axes = plt.subplots(1, n_panels, figsize=(n_panels * (1.8 + 1.6 * len(keys)), 4.2), squeeze=False)
    ax = axes[0][0]
    for i, model in enumerate(models):
        m = sub[sub.model == model].set_index("metric")
        means = [100 * m["mean"].get(k, np.nan) for k in keys]
        stds = [100 * m["std"].get(k, 0.0) for k in keys]
        ax.bar(np.arange(len(keys)) + i * width - 0.4 + width / 2, means, width, yerr=stds, capsize=3, label=model)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_ylabel("x100")
    ax.set_title(f"{report.dataset}: protocol {protocol} (mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    if has_iv:
        _diff_panel(axes[0][1], iv, diff_models, keys, models,
                    "paired difference vs SASRec, 95% bootstrap interval (users, seeds pooled)")
    if zoom:
        _diff_panel(axes[0][2], iv, near, keys, models, f"zoom: the models within ±{NEAR_POINTS:g} points of SASRec")
        axes[0][2].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _diff_panel(ax, iv, diff_models: list[str], keys: list[str], models: list[str], title: str) -> None:
    """Bars of the paired mean difference (model - SASRec) with the 95% interval as error bars."""
    import numpy as np

    w2 = 0.8 / len(diff_models)
    for i, model in enumerate(diff_models):
        m = iv[iv.model == model].set_index("metric")
        mean = np.array([100 * m["mean_diff"].get(k, np.nan) for k in keys])
        low = np.array([100 * m["low"].get(k, np.nan) for k in keys])
        high = np.array([100 * m["high"].get(k, np.nan) for k in keys])
        x = np.arange(len(keys)) + i * w2 - 0.4 + w2 / 2
        ax.bar(x, mean, w2, label=model, color=f"C{models.index(model) if model in models else i}")
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_ylabel(f"model - {BASELINE} (x100)")
    ax.set_title(title, fontsize=9)


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
