"""IDEA-Research/DAB-DETR checkpoints (``models/DAB_DETR/{DABDETR,transformer}.py``), all variants of
``-m dab_detr``: R50 / R50-DC5, 0 or 3 patterns, random_refpoints_xy.

The official model registers its shared box head twice (``DABDETR.py:124`` assigns ``bbox_embed`` to
``transformer.decoder.bbox_embed`` too), so the state dict holds ``bbox_embed.*`` and
``transformer.decoder.bbox_embed.*``. Here the head exists once (the detector's ``bbox_embed``, passed
to the decoder): the copy is checked equal to the original and dropped.
"""
from .convert import CONDITIONAL_DECODER_LAYER_RULES, ENCODER_RULES, HEAD_RULES, RESNET_RULES, register_converter

DAB_DETR_RULES = RESNET_RULES + ENCODER_RULES + CONDITIONAL_DECODER_LAYER_RULES + HEAD_RULES + [
    # PReLU activations, one scalar per layer (transformer_activation='prelu')
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.activation\.weight$", r"\1.layers.\2.ffn.activation.weight"),
    # the encoder's position-embedding scale MLP
    (r"^transformer\.encoder\.query_scale\.(.+)$", r"encoder.query_scale.\1"),
    (r"^transformer\.decoder\.(norm|query_scale|ref_point_head|ref_anchor_head)\.(.+)$", r"decoder.\1.\2"),
    (r"^refpoint_embed\.weight$", "query_init.refpoint_embed.weight"),
    (r"^transformer\.patterns\.weight$", "query_init.patterns.weight"),
]

register_converter(
    "dab_detr",
    DAB_DETR_RULES,
    duplicates=[(r"^transformer\.decoder\.bbox_embed\.(.+)$", r"bbox_embed.\1")],
)
