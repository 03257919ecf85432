"""Tensor shards: uint8 NHWC .npy shards with an index, a dataset reader and checks.

    from data_platform.tensors import open_dataset
    ds = open_dataset("s3://lake/tensors/photos", split="train")   # or a local folder
"""

from .reader import TensorDataset, open_dataset

__all__ = ["TensorDataset", "open_dataset"]
