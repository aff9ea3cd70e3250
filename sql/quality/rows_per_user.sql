-- Every selected user has exactly K rows, or one row per unseen catalogue item when fewer than K items are unseen;
-- no rows for a user outside the selection. Offending = users with the wrong number of rows.
-- Views: staged (the rows to publish), selected_users (user_id), items, user_sequences; variable top_k.
WITH history AS (
    SELECT DISTINCT s.user_id, h.item_id
    FROM (SELECT user_id, unnest(item_ids) AS item_id FROM user_sequences) AS h
    JOIN selected_users AS s ON s.user_id = h.user_id
    JOIN items AS i ON i.item_id = h.item_id
),
expected AS (
    SELECT s.user_id,
           least(CAST(getvariable('top_k') AS BIGINT),
                 (SELECT count(*) FROM items) - count(h.item_id)) AS n
    FROM selected_users AS s LEFT JOIN history AS h ON h.user_id = s.user_id
    GROUP BY s.user_id
),
got AS (SELECT user_id, count(*) AS n FROM staged GROUP BY user_id)
SELECT count(*) AS offending
FROM expected AS e FULL JOIN got AS g ON g.user_id = e.user_id
WHERE coalesce(e.n, 0) <> coalesce(g.n, 0);
