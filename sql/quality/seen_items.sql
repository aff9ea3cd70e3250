-- No recommended item is one the user already had (in user_sequences). Offending = such rows.
SELECT count(*) AS offending
FROM staged AS r
JOIN (SELECT DISTINCT user_id, unnest(item_ids) AS item_id FROM user_sequences) AS h
    ON h.user_id = r.user_id AND h.item_id = r.item_id;
