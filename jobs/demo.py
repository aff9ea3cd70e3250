"""``make demo``: run the pipeline end to end on the default data and show a few rows (grows as stages land)."""
