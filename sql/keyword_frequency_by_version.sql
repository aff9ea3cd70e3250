-- Keyword frequency by summarizer version: for each summarizer_version and modality, the most frequent keywords
-- (lower-cased, trimmed), the number of items carrying each, and its share of that version's items.
-- keyword_rank: 1 = most frequent (ties broken alphabetically). Parameter: top (default 20 per version/modality).
WITH keywords AS (
    SELECT summarizer_version, modality, item_id, lower(trim(unnest(keywords))) AS keyword
    FROM item_keywords
),
counts AS (
    SELECT summarizer_version, modality, keyword, count(DISTINCT item_id) AS n_items
    FROM keywords
    WHERE keyword <> ''
    GROUP BY summarizer_version, modality, keyword
),
totals AS (
    SELECT summarizer_version, modality, count(DISTINCT item_id) AS items_total
    FROM item_keywords
    GROUP BY summarizer_version, modality
),
ranked AS (
    SELECT c.summarizer_version, c.modality, c.keyword, c.n_items, t.items_total,
           c.n_items / t.items_total AS item_share,
           row_number() OVER (PARTITION BY c.summarizer_version, c.modality ORDER BY c.n_items DESC, c.keyword)
               AS keyword_rank
    FROM counts AS c
    JOIN totals AS t ON t.summarizer_version = c.summarizer_version AND t.modality = c.modality
)
SELECT summarizer_version, modality, keyword_rank, keyword, n_items, items_total, item_share
FROM ranked
WHERE keyword_rank <= coalesce(try_cast(getvariable('top') AS INTEGER), 20)
ORDER BY summarizer_version, modality, keyword_rank;
