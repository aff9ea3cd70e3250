-- Latest top-K recommendations per user, with item titles and keyword explanations.
-- Grain: one row per (user_id, rank) from each user's most recent run_date (a user not recomputed on the newest
-- run_date keeps the list of their previous one). Ordered by user_id, rank.
-- Parameters: k (default 10), user_id (default: every user).
--   mmsrarec sql --dataset D -f sql/top_k_per_user.sql --param k=5 --param user_id=42
WITH latest AS (
    SELECT user_id, max(run_date) AS run_date
    FROM recommendations
    WHERE getvariable('user_id') IS NULL OR user_id = CAST(getvariable('user_id') AS VARCHAR)
    GROUP BY user_id
)
SELECT
    r.run_date,
    r.user_id,
    r.rank,
    r.item_id,
    i.title,
    r.score,
    r.explanation.history_keywords AS history_keywords,
    r.explanation.neighbor_keywords AS neighbor_keywords,
    r.explanation.neighbor_ids AS neighbor_ids,
    r.model_version
FROM recommendations AS r
JOIN latest AS l ON l.user_id = r.user_id AND l.run_date = r.run_date
LEFT JOIN items AS i ON i.item_id = r.item_id
WHERE r.rank <= coalesce(try_cast(getvariable('k') AS INTEGER), 10)
ORDER BY r.user_id, r.rank;
