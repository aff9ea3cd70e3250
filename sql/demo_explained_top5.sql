-- Top-5 of a few users on one run_date, with titles and the keywords that explain them: the users whose top-5 carry
-- the most explanation terms (keyword overlaps are rare with short keyword lists), then by user id.
-- Grain: one row per (user_id, rank <= 5), ordered by user_id, rank.
-- Parameters: run_date (YYYY-MM-DD, default: the newest run_date), users (default 3).
--   mmsrarec sql --dataset D -f sql/demo_explained_top5.sql --param run_date=1998-04-23 --param users=3
WITH day AS (
    SELECT *
    FROM recommendations
    WHERE run_date = coalesce(CAST(getvariable('run_date') AS DATE), (SELECT max(run_date) FROM recommendations))
),
shown AS (
    SELECT user_id
    FROM day
    WHERE rank <= 5
    GROUP BY user_id
    ORDER BY sum(len(explanation.history_keywords) + len(explanation.neighbor_keywords)
                 + len(explanation.neighbor_ids)) DESC, user_id
    LIMIT coalesce(CAST(getvariable('users') AS INTEGER), 3)
)
SELECT d.user_id, d.rank, d.item_id, i.title, round(d.score, 3) AS score,
       array_to_string(d.explanation.history_keywords[1:4], ', ') AS history_keywords,
       array_to_string(d.explanation.neighbor_keywords[1:4], ', ') AS neighbor_keywords,
       array_to_string(d.explanation.neighbor_ids[1:3], ', ') AS neighbors
FROM day d JOIN shown USING (user_id) LEFT JOIN items i USING (item_id)
WHERE d.rank <= 5
ORDER BY d.user_id, d.rank
