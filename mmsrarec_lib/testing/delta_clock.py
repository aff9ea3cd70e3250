"""Move a local Delta table's commits back in time, to simulate weeks of nightly runs in a test or bench.

Vacuum decides by the ``deletionTimestamp`` of ``remove`` actions and time travel by commit timestamps; both are
written as "now" by delta-rs. :func:`backdate_commits` rewrites them (and the commit files' mtimes) so that version
``v`` looks committed at ``when[v]``. Only for scratch warehouses built by a test or bench, never for real data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path

from mmsrarec_lib import tables


def backdate_commits(table_dir: str | Path, when: Mapping[int, dt.datetime]) -> None:
    """Rewrite commit ``v``'s commitInfo timestamp and its removes' deletionTimestamp to ``when[v]``."""
    log_dir = Path(table_dir) / "_delta_log"
    if (log_dir / "_last_checkpoint").exists():
        raise ValueError(f"{table_dir} has a checkpoint: backdating only the JSON commits would be inconsistent")
    for version, moment in when.items():
        path = log_dir / f"{version:020d}.json"
        ms = int(moment.timestamp() * 1000)
        lines = []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "commitInfo" in action:
                action["commitInfo"]["timestamp"] = ms
                action["commitInfo"].pop("inCommitTimestamp", None)
            if "remove" in action:
                action["remove"]["deletionTimestamp"] = ms
            if "add" in action:
                action["add"]["modificationTime"] = ms
            lines.append(json.dumps(action, separators=(",", ":")))
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (moment.timestamp(), moment.timestamp()))


def simulate_nights(
    warehouse,
    dataset: str,
    *,
    nights: int,
    users: int,
    items: int,
    top_k: int = 10,
    new_interactions: int = 200,
    now: dt.datetime | None = None,
    seed: int = 0,
) -> dict[str, dict[int, dt.datetime]]:
    """``nights`` nightly runs, night ``n`` backdated to ``now - (nights - n)`` days: what the nightly DAG commits.

    Each night appends ``new_interactions`` rows to ``interactions``, rewrites ``user_sequences`` (as ingest's
    append does) and publishes one ``recommendations`` partition of ``users`` x ``top_k`` rows through the real
    publish path (:func:`mmsrarec_lib.recommend.publish.replace_partition`). ``items`` is written once. Returns
    each table's commit time per version.
    """
    import random

    import pyarrow as pa

    from mmsrarec_lib import schemas
    from mmsrarec_lib.recommend.publish import replace_partition

    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    item_ids = [f"i{k}" for k in range(items)]
    user_ids = [f"u{k}" for k in range(users)]
    warehouse.write_table(dataset, tables.ITEMS, pa.Table.from_pylist(
        [{"item_id": i, "title": f"Item {i}", "categories": [], "attributes": [], "image_status": "none"}
         for i in item_ids], schema=schemas.ITEMS))
    history: dict[str, list[str]] = {u: [] for u in user_ids}
    when: dict[str, dict[int, dt.datetime]] = {tables.ITEMS: {0: now - dt.timedelta(days=nights + 1)}}
    for night in range(nights):
        moment = now - dt.timedelta(days=nights - night)
        day = moment.date()
        rows = []
        for n in range(new_interactions):
            u, i = rng.choice(user_ids), rng.choice(item_ids)
            history[u].append(i)
            rows.append({"user_id": u, "item_id": i, "timestamp": moment + dt.timedelta(seconds=n), "rating": 4.0,
                         "event": "rating", "source_row": n})
        v = warehouse.write_table(dataset, tables.INTERACTIONS, pa.Table.from_pylist(rows, schema=schemas.INTERACTIONS),
                                  mode="append")
        when.setdefault(tables.INTERACTIONS, {})[v] = moment
        seqs = [{"user_id": u, "item_ids": h, "timestamps": [moment] * len(h), "length": len(h)}
                for u, h in history.items()]
        v = warehouse.write_table(dataset, tables.USER_SEQUENCES,
                                  pa.Table.from_pylist(seqs, schema=schemas.USER_SEQUENCES))
        when.setdefault(tables.USER_SEQUENCES, {})[v] = moment
        recs = []
        for u in user_ids:
            seen = set(history[u])
            picks = [i for i in rng.sample(item_ids, top_k + len(seen)) if i not in seen][:top_k]
            recs += [{"run_date": day, "user_id": u, "rank": r, "item_id": i, "score": 1.0 / r,
                      "model_version": "sim", "explanation": {"history_keywords": [], "neighbor_keywords": [],
                                                              "neighbor_ids": []}, "created_at": moment}
                     for r, i in enumerate(picks, start=1)]
        v = replace_partition(warehouse, dataset, pa.Table.from_pylist(recs, schema=schemas.RECOMMENDATIONS),
                              run_date=day)
        when.setdefault(tables.RECOMMENDATIONS, {})[v] = moment
    for table, versions in when.items():
        backdate_commits(warehouse.table_uri(dataset, table), versions)
    return when
