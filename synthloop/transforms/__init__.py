"""Reversible, vectorized encoders shared by the synthesizers."""
from synthloop.transforms.encoders import FrequencyEncoder, QuantileNormalEncoder
from synthloop.transforms.table import TableCodec

__all__ = ["FrequencyEncoder", "QuantileNormalEncoder", "TableCodec"]
