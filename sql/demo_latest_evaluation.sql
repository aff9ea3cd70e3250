-- The latest evaluation run of each (model, protocol): one row per model, its metrics x100 in one column (mean over
-- the run's seeds). Grain: one row per (protocol, model), ordered by protocol, model. No parameters.
--   mmsrarec sql --dataset D -f sql/demo_latest_evaluation.sql
WITH latest AS (
    SELECT model, protocol, arg_max(run_id, created_at) AS run_id
    FROM evaluation_runs
    GROUP BY model, protocol
),
m AS (
    SELECT e.protocol, e.model, e.metric, e.k, avg(e.value) AS value, max(e.n_users) AS n_users,
           any_value(e.model_version) AS model_version
    FROM evaluation_runs e JOIN latest USING (model, protocol, run_id)
    GROUP BY ALL
)
SELECT protocol, model, any_value(model_version) AS model_version, max(n_users) AS n_users,
       string_agg(upper(metric) || coalesce('@' || k, '') || ' ' || printf('%.2f', 100 * value), '  '
                  ORDER BY metric, k) AS metrics_x100
FROM m
GROUP BY protocol, model
ORDER BY protocol, model
