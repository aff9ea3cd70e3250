"""Issue 16's hostile inputs through the real CLI, on this checkout and (``--repo``) on another one: for each case
the exit code, the first line the user sees (stderr at WARNING, else stdout), rows per table and the
``ingest_runs`` accounting of the run.

Cases (every input generated here, nothing committed):

- ``drip_image``: one item image served one byte every 0.5 s for ``--drip-s`` seconds (default 90);
- ``timestamps``: a timestamp before year 1, one in year 3000 and a negative epoch among valid rows, then
  ``mmsrarec sql "SELECT * FROM interactions"`` in table and JSON output;
- ``big_field``: a 1 MB description; ``unclosed_quote``: an unbalanced quote followed by 200 KB of text;
- ``bad_byte``: one non-UTF-8 byte in the interactions file;
- ``whitespace_ids``: a user id of spaces and one of a tab;
- ``empty_items``: an items file with only its header; ``no_item_id``: an items file without ``item_id``;
- ``sql_hint``: the SQL error for ``CREATE SECRET`` (DuckDB suggests ``INSTALL httpfs``).

    python bench/hostile_inputs.py                     # this checkout
    python bench/hostile_inputs.py --repo /tmp/before  # e.g. a worktree of an older commit
"""

from __future__ import annotations

import argparse
import csv
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmsrarec_lib.storage import Warehouse  # noqa: E402

TABLES = ("items", "items_quarantine", "interactions", "interactions_quarantine", "user_sequences", "split_loo",
          "eval_candidates")


def _items(path: Path, *, n: int = 8, description: str = "plain", image: str = "") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "description", "image_uri"])
        for k in range(n):
            w.writerow([f"i{k}", f"Item {k}", description if k == 0 else "plain", image if k == 0 else ""])
    return path


def _inter(path: Path, extra: list[str] | None = None, *, raw: bytes = b"") -> Path:
    rows = [f"u{u},i{(u + j) % 8},{1_700_000_000 + 60 * j}" for u in range(4) for j in range(6)]
    path.write_bytes(("user_id,item_id,timestamp\n" + "\n".join(rows + (extra or [])) + "\n").encode() + raw)
    return path


def _drip_server(seconds: float):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)  # no Content-Length: the body ends when the server closes (HTTP/1.0)
            self.end_headers()
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cli(repo: str, *args: str) -> tuple[int, str, float, str]:
    env = {**os.environ, "MMSRAREC_LOG_LEVEL": "WARNING", "MMSRAREC_SPARK_DRIVER_MEMORY": "1g",
           "PYTHONPATH": repo}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=1200)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING: Using incubator",
             "Using Spark's", "Setting default log level", "To adjust logging", "[Stage"))
             and "NativeCodeLoader" not in ln]
    first = lines[0] if lines else (proc.stdout.splitlines() or [""])[0]
    return proc.returncode, first[:300], time.perf_counter() - t0, proc.stdout


def _counts(root: str, dataset: str) -> dict:
    wh = Warehouse.from_uri(root)
    out = {t: wh.read_table(dataset, t).num_rows for t in TABLES if wh.has_table(dataset, t)}
    if wh.has_table(dataset, "ingest_runs"):
        runs = wh.read_table(dataset, "ingest_runs").to_pylist()
        last = max(runs, key=lambda r: r["finished_at"])["run_id"]
        out["ingest_runs"] = {r["table"]: f"in {r['rows_in']} = written {r['rows_written']} + quarantined "
                              f"{r['rows_quarantined']} + duplicate {r['rows_duplicate']}"
                              for r in runs if r["run_id"] == last and r["table"] in ("items", "interactions")}
    if wh.has_table(dataset, "items"):
        statuses = wh.read_table(dataset, "items", columns=["image_status", "image_error"]).to_pylist()
        out["image_status"] = sorted({(r["image_status"], (r["image_error"] or "")[:120]) for r in statuses})
    if wh.has_table(dataset, "interactions_quarantine"):
        out["interactions_quarantine_reasons"] = sorted(
            {(r["reason"], r["source_row"]) for r in wh.read_table(dataset, "interactions_quarantine").to_pylist()})
    if wh.has_table(dataset, "items_quarantine"):
        out["items_quarantine_reasons"] = sorted(
            {(r["reason"], r["source_row"]) for r in wh.read_table(dataset, "items_quarantine").to_pylist()})
    if wh.has_table(dataset, "dataset_runs"):
        from mmsrarec_lib.snapshots import run_states

        out["dataset_runs"] = [r["status"] for r in run_states(wh, dataset)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(REPO))
    parser.add_argument("--drip-s", type=float, default=90.0)
    parser.add_argument("--only", action="append")
    parser.add_argument("--recount", help="only print the tables of every case in this existing warehouse")
    args = parser.parse_args()
    repo = str(Path(args.repo).resolve())
    if args.recount:
        for ds in Warehouse.from_uri(args.recount).list_dir(args.recount):
            print(json.dumps({"dataset": ds, "tables": _counts(args.recount, ds)}, default=str), flush=True)
        return
    d = Path(tempfile.mkdtemp(prefix="hostile-"))
    wh = str(d / "wh")
    common = ["--warehouse", wh, "--spark-master", "local[1]", "--k-core", "0"]
    server = _drip_server(args.drip_s)
    url = f"http://127.0.0.1:{server.server_address[1]}/poster.jpg"
    cases = {
        "drip_image": (_items(d / "drip.csv", image=url), _inter(d / "i_drip.csv")),
        "timestamps": (_items(d / "ts.csv"), _inter(d / "i_ts.csv", ["u9,i1,-62135596801", "u9,i2,3000-01-01",
                                                                      "u9,i3,-5"])),
        "big_field": (_items(d / "big.csv", description="d" * 1_000_000), _inter(d / "i_big.csv")),
        "unclosed_quote": (d / "quote.csv", _inter(d / "i_quote.csv")),
        "bad_byte": (_items(d / "bb.csv"), _inter(d / "i_bb.csv", raw=b"u\xe97,i1,1700000000\nu8,i2,1700000000\n")),
        "whitespace_ids": (_items(d / "ws.csv"), _inter(d / "i_ws.csv", ["   ,i1,1700000000", "\t,i2,1700000000"])),
        "empty_items": (d / "empty.csv", _inter(d / "i_empty.csv")),
        "no_item_id": (d / "noid.csv", _inter(d / "i_noid.csv")),
    }
    _items(d / "quote.csv")
    with (d / "quote.csv").open("a") as f:
        f.write('i8,"unbalanced,plain,\n' + ("x" * 1000 + "\n") * 200 + "i9,after,plain,\n")
    (d / "empty.csv").write_text("item_id,title,description,image_uri\n")
    (d / "noid.csv").write_text("title,description\nA,a\n")
    print(f"repo {repo}; load average {os.getloadavg()}", flush=True)
    for name, (items, inter) in cases.items():
        if args.only and name not in args.only:
            continue
        ds = name.replace("_", "-")
        code, first, secs, _ = _cli(repo, "ingest", "--dataset", ds, "--items", str(items), "--interactions",
                                    str(inter), *common)
        result = {"case": name, "exit": code, "first_line": first, "seconds": round(secs, 1),
                  "tables": _counts(wh, ds)}
        if name == "timestamps" and code == 0:
            for fmt in ("table", "json"):
                c, line, _, _ = _cli(repo, "sql", "--dataset", ds, "--warehouse", wh, "--format", fmt,
                                     "SELECT * FROM interactions")
                result[f"sql_{fmt}"] = {"exit": c, "first_line": line}
        print(json.dumps(result, default=str), flush=True)
    if not args.only or "sql_hint" in args.only:
        c, line, _, _ = _cli(repo, "sql", "--dataset", "whitespace-ids", "--warehouse", wh, "CREATE SECRET s (TYPE s3)")
        print(json.dumps({"case": "sql_hint", "exit": c, "first_line": line}), flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
