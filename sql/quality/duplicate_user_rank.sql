-- No (user_id, rank) appears twice. Offending = surplus rows (rows beyond the first of each pair).
SELECT coalesce(sum(n - 1), 0) AS offending
FROM (SELECT user_id, rank, count(*) AS n FROM staged GROUP BY user_id, rank HAVING count(*) > 1);
