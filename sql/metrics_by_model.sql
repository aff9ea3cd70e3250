-- Evaluation metrics by model over runs: one row per (dataset, protocol, metric, k, model) with the number of runs
-- and seeds, the mean, sample standard deviation, min and max of the metric over them, and the most recent value.
-- Values are raw (0..1); k is NULL for metrics without a cut-off (auc, mrr).
-- Ordered so that, within a metric, the best model (highest mean) comes first.
SELECT
    dataset,
    protocol,
    metric,
    k,
    model,
    count(DISTINCT run_id) AS n_runs,
    count(DISTINCT seed) AS n_seeds,
    avg(value) AS mean_value,
    stddev_samp(value) AS std_value,
    min(value) AS min_value,
    max(value) AS max_value,
    arg_max(value, created_at) AS latest_value,
    arg_max(model_version, created_at) AS latest_model_version,
    max(created_at) AS latest_at
FROM evaluation_runs
GROUP BY dataset, protocol, metric, k, model
ORDER BY dataset, protocol, metric, k NULLS FIRST, mean_value DESC, model;
