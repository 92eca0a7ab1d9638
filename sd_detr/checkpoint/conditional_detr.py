"""Atten4Vis/ConditionalDETR checkpoints (``models/conditional_detr.py``, ``models/transformer.py``)."""
from .convert import CONDITIONAL_DECODER_LAYER_RULES, ENCODER_RULES, HEAD_RULES, RESNET_RULES, register_converter

CONDITIONAL_DETR_RULES = RESNET_RULES + ENCODER_RULES + CONDITIONAL_DECODER_LAYER_RULES + HEAD_RULES + [
    (r"^query_embed\.weight$", "query_init.query_embed.weight"),
    (r"^transformer\.decoder\.(norm|query_scale|ref_point_head)\.(.+)$", r"decoder.\1.\2"),
]

register_converter("conditional_detr", CONDITIONAL_DETR_RULES)
