-- Each user's ranks are exactly 1..n (n = the user's row count). Offending = users whose ranks are not.
SELECT count(*) AS offending
FROM (
    SELECT user_id
    FROM staged
    GROUP BY user_id
    HAVING min(rank) <> 1 OR max(rank) <> count(*) OR count(DISTINCT rank) <> count(*) OR count(rank) <> count(*)
);
