"""Multi-dimensional packing: where each value of a batched tensor sits in the CKKS slots.

Pure index arithmetic (numpy only, no crypto): the plan (block geometry, chunking, rotation-key
set) and the layouts (encode/decode, masks). See docs/packing.md.
"""

from rhode.packing.layout import (
    FORMS,
    LAYOUTS,
    decode_batch,
    decode_param,
    encode_batch,
    encode_param,
    mask,
    rotate,
    valid_region,
)
from rhode.packing.plan import PackingPlan, TransposeSchedule, next_pow2, plan

__all__ = [
    "FORMS", "LAYOUTS", "PackingPlan", "TransposeSchedule", "decode_batch", "decode_param",
    "encode_batch", "encode_param", "mask", "next_pow2", "plan", "rotate", "valid_region",
]
