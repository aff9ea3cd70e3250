-- Ingest run history, newest run first: one row per job run and table written, with its duration, the row
-- accounting and whether it balances (rows_in = rows_written + rows_quarantined + rows_duplicate).
-- Parameter: runs (default 50: the newest runs shown).
WITH runs AS (
    SELECT run_id, min(started_at) AS run_started_at
    FROM ingest_runs
    GROUP BY run_id
    ORDER BY run_started_at DESC, run_id DESC
    LIMIT coalesce(try_cast(getvariable('runs') AS INTEGER), 50)
)
SELECT
    i.run_id,
    i.dataset,
    i."table",
    i.started_at,
    i.finished_at,
    date_diff('millisecond', i.started_at, i.finished_at) / 1000.0 AS duration_s,
    i.rows_in,
    i.rows_written,
    i.rows_quarantined,
    i.rows_duplicate,
    i.rows_in = i.rows_written + i.rows_quarantined + i.rows_duplicate AS balanced,
    i.code_version
FROM ingest_runs AS i
JOIN runs AS r ON r.run_id = i.run_id
ORDER BY r.run_started_at DESC, i.run_id DESC, i."table";
