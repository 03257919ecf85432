"""Image datasets: safe archive reading, image probing and manifest rows (pure Python, no Dagster)."""
