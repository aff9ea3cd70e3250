-- Every row belongs to the run_date being published (variable run_date). Offending = rows of another date.
SELECT count(*) AS offending
FROM staged
WHERE run_date IS DISTINCT FROM CAST(getvariable('run_date') AS DATE);
