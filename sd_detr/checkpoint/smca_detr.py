"""gaopengcuhk/SMCA-DETR single-scale checkpoints (``models/detr.py``, ``models/transformer.py``,
``--dynamic_scale type3``) -> :class:`~sd_detr.modeling.SMCADETR` with ``projects/smca_detr`` R50 configs.

The official class head has 92 outputs: index = COCO category id (91) plus a last "no object" row that
the focal loss only ever trains as negative (``models/detr.py:43,140-143``). Converting to 80 classes
keeps the rows of the 80 COCO ids and drops the others, the "no object" row included; ``num_classes=92``
keeps the head as is (to compare raw logits with the official model).

The released multi-scale checkpoints (Multi_scale_SMCA.zip) belong to a different architecture than the
paper's multi-scale design built here and are not converted.
"""
from .convert import ENCODER_RULES, HEAD_RULES, RESNET_RULES, register_converter

_L = r"^transformer\.decoder\.layers\.(\d+)\."

SMCA_DECODER_LAYER_RULES = [
    (_L + r"self_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$", r"decoder.layers.\1.self_attn.\2"),
    (_L + r"multihead_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$", r"decoder.layers.\1.cross_attn.\2"),
    (_L + r"linear([12])\.(weight|bias)$", r"decoder.layers.\1.ffn.linear\2.\3"),
    (_L + r"norm([12])\.(weight|bias)$", r"decoder.layers.\1.norm\2.\3"),
    (_L + r"norm3\.(weight|bias)$", r"decoder.layers.\1.ffn.norm.\2"),
    (_L + r"norm4\.(weight|bias)$", r"decoder.layers.\1.prior_norm.\2"),
    (_L + r"point2\.(weight|bias)$", r"decoder.layers.\1.offset_head.\2"),
    (_L + r"point3\.(weight|bias)$", r"decoder.layers.\1.scale_head.\2"),
    # the centre MLP lives in the first layer officially; here it belongs to the decoder
    (r"^transformer\.decoder\.layers\.0\.point1\.layers\.(\d)\.(weight|bias)$", r"decoder.center_head.layers.\1.\2"),
]

SMCA_DETR_RULES = RESNET_RULES + ENCODER_RULES + SMCA_DECODER_LAYER_RULES + HEAD_RULES + [
    (r"^query_embed\.weight$", "query_init.query_embed.weight"),
    (r"^transformer\.decoder\.norm\.(weight|bias)$", r"decoder.norm.\1"),
]

register_converter("smca_detr", SMCA_DETR_RULES)
