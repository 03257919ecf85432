"""Tensor shards: uint8 NHWC .npy shards with an index, a dataset reader and checks."""
