-- Recommendation explanations exploded to one keyword per row, for each user's most recent run_date.
-- source: 'history' (keywords of the user's own recent items) or 'neighbor' (keywords of what similar users chose
-- next); position: 1-based place of the keyword in its list. Recommendations with empty lists give no rows.
-- Ordered by user_id, rank, source, position.
-- Parameter: user_id (default: every user).
WITH latest AS (
    SELECT user_id, max(run_date) AS run_date
    FROM recommendations
    WHERE getvariable('user_id') IS NULL OR user_id = CAST(getvariable('user_id') AS VARCHAR)
    GROUP BY user_id
),
recs AS (
    SELECT r.run_date, r.user_id, r.rank, r.item_id, r.explanation
    FROM recommendations AS r
    JOIN latest AS l ON l.user_id = r.user_id AND l.run_date = r.run_date
),
exploded AS (
    SELECT run_date, user_id, rank, item_id, 'history' AS source,
           unnest(explanation.history_keywords) AS keyword,
           generate_subscripts(explanation.history_keywords, 1) AS position
    FROM recs
    UNION ALL
    SELECT run_date, user_id, rank, item_id, 'neighbor' AS source,
           unnest(explanation.neighbor_keywords) AS keyword,
           generate_subscripts(explanation.neighbor_keywords, 1) AS position
    FROM recs
)
SELECT run_date, user_id, rank, item_id, source, position, keyword
FROM exploded
ORDER BY user_id, rank, source, position;
