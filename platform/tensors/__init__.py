"""Tensor shards: uint8 NHWC .npy shards with an index, a dataset reader and checks.

    from data_platform.tensors import open_dataset
    ds = open_dataset("s3://lake/tensors/photos", split="train")   # or a local folder

The reader (and pyarrow with it) is imported on first use: the decode workers import this
package for `pool` and must start fast (a forkserver preloads it before every pool).
"""

__all__ = ["TensorDataset", "open_dataset"]


def __getattr__(name: str):
    if name in __all__:
        from . import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
