-- Catalogue coverage and popularity bias of today's recommendations (the latest run_date in the table).
-- coverage: distinct recommended items / items in the catalogue.
-- popularity of an item: its number of interactions. avg_popularity_recommended averages it over the
-- recommendation rows; popularity_lift = avg_popularity_recommended / avg_popularity_catalogue (1 = no bias,
-- > 1 = the recommender favours popular items).
-- head_share: share of recommendation rows whose item is among the most popular 20% of the catalogue
-- (ceil(0.2 * catalogue_items) items, ranked by interactions, ties broken by item_id).
-- One row; no row when there are no recommendations.
WITH today AS (
    SELECT max(run_date) AS run_date FROM recommendations
),
recs AS (
    SELECT r.user_id, r.item_id, r.run_date
    FROM recommendations AS r, today
    WHERE r.run_date = today.run_date
),
popularity AS (
    SELECT i.item_id, count(x.item_id) AS n_interactions
    FROM items AS i
    LEFT JOIN interactions AS x ON x.item_id = i.item_id
    GROUP BY i.item_id
),
ranked AS (
    SELECT item_id, n_interactions,
           row_number() OVER (ORDER BY n_interactions DESC, item_id) AS popularity_rank
    FROM popularity
),
catalogue AS (
    SELECT count(*) AS n_items, avg(n_interactions) AS avg_popularity, ceil(0.2 * count(*)) AS head_size
    FROM popularity
)
SELECT
    recs.run_date,
    count(DISTINCT recs.user_id) AS n_users,
    count(*) AS n_recommendations,
    count(DISTINCT recs.item_id) AS distinct_items,
    catalogue.n_items AS catalogue_items,
    count(DISTINCT recs.item_id) / catalogue.n_items AS coverage,
    avg(coalesce(ranked.n_interactions, 0)) AS avg_popularity_recommended,
    catalogue.avg_popularity AS avg_popularity_catalogue,
    avg(coalesce(ranked.n_interactions, 0)) / nullif(catalogue.avg_popularity, 0) AS popularity_lift,
    avg(CASE WHEN ranked.popularity_rank <= catalogue.head_size THEN 1.0 ELSE 0.0 END) AS head_share
FROM recs
CROSS JOIN catalogue
LEFT JOIN ranked ON ranked.item_id = recs.item_id
GROUP BY recs.run_date, catalogue.n_items, catalogue.avg_popularity;
