"""Image datasets: safe archive reading, image probing, manifest rows, decoding to tensors, and
the tensor step (no Dagster in the library parts)."""
