-- No item is recommended twice to one user. Offending = surplus rows (rows beyond the first of each pair).
SELECT coalesce(sum(n - 1), 0) AS offending
FROM (SELECT user_id, item_id, count(*) AS n FROM staged GROUP BY user_id, item_id HAVING count(*) > 1);
