-- Every score is a finite number (not NULL, NaN or infinite). Offending = rows with another score.
SELECT count(*) AS offending
FROM staged
WHERE score IS NULL OR isnan(score) OR isinf(score);
