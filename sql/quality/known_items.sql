-- Every recommended item exists in the items catalogue. Offending = rows whose item_id is not in items.
SELECT count(*) AS offending
FROM staged AS r
WHERE r.item_id IS NULL OR NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = r.item_id);
