"""Image datasets: safe archive reading, image probing and manifest rows (no Dagster)."""
