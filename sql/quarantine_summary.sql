-- Quarantine summary by reason: the input rows ingest rejected, per source table and reason, over all runs and in
-- each table's latest ingest run, with the first few input row numbers to look at (1-based, in the input file).
-- Ordered by source_table, then the most frequent reason first.
WITH quarantined AS (
    SELECT 'items' AS source_table, run_id, reason, source_row, created_at FROM items_quarantine
    UNION ALL
    SELECT 'interactions' AS source_table, run_id, reason, source_row, created_at FROM interactions_quarantine
),
latest AS (
    SELECT source_table, arg_max(run_id, created_at) AS latest_run_id
    FROM quarantined
    GROUP BY source_table
)
SELECT
    q.source_table,
    q.reason,
    count(*) AS n_rows,
    count(DISTINCT q.run_id) AS n_runs,
    count(*) FILTER (WHERE q.run_id = l.latest_run_id) AS n_rows_latest_run,
    min(q.created_at) AS first_seen,
    max(q.created_at) AS last_seen,
    list_sort(list_distinct(list(q.source_row) FILTER (WHERE q.run_id = l.latest_run_id)))[1:5]
        AS example_source_rows
FROM quarantined AS q
JOIN latest AS l ON l.source_table = q.source_table
GROUP BY q.source_table, q.reason
ORDER BY q.source_table, n_rows DESC, q.reason;
