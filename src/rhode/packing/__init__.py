"""Multi-dimensional packing: where each value of a batched tensor sits in the CKKS slots.

Pure index arithmetic (numpy only, no crypto): the plan (block geometry, chunking, rotation-key
set), the layouts (encode/decode, masks) and the layout policy (:mod:`rhode.packing.policy`: the
:class:`Layout` and :class:`Form` enums, and which layout each tensor is held in, e.g.
:func:`input_layout` for a recurrence's input at timestep t). See docs/packing.md.
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
from rhode.packing.policy import (
    CANONICAL_FORM,
    Form,
    Layout,
    aligned_form,
    bias_form,
    contract_levels,
    input_layout,
    input_layouts,
    layout_of,
    product_layout,
    weight_form,
)

__all__ = [
    "CANONICAL_FORM", "FORMS", "Form", "LAYOUTS", "Layout", "PackingPlan", "TransposeSchedule",
    "aligned_form", "bias_form", "contract_levels", "decode_batch", "decode_param", "encode_batch",
    "encode_param", "input_layout", "input_layouts", "layout_of", "mask", "next_pow2", "plan",
    "product_layout", "rotate", "valid_region", "weight_form",
]
