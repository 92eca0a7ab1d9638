"""Conditional DETR-R50 (Meng et al., ICCV 2021): the paper's and the official code's settings
(Atten4Vis/ConditionalDETR main.py: 300 queries, 6+6 layers, 256-d, 8 heads, FFN 2048, dropout 0.1,
focal loss alpha 0.25, matcher costs 2/5/2 and loss weights 2/5/2, deep supervision)."""
from detectron2.config import LazyCall as L

from sd_detr.layers import PositionEmbeddingSine
from sd_detr.modeling import (
    ConditionalDecoder,
    ConditionalDETR,
    FocalLoss,
    HungarianMatcher,
    LearnedQueries,
    SetCriterion,
    TransformerEncoder,
    build_detr_resnet,
)

model = L(ConditionalDETR)(
    backbone=L(build_detr_resnet)(depth=50, dc5=False, out_features=["res5"], freeze_at=2, norm="FrozenBN"),
    in_feature="res5",
    position_embedding=L(PositionEmbeddingSine)(d_model="${..hidden_dim}", temperature=10000, normalize=True),
    encoder=L(TransformerEncoder)(num_layers=6, d_model="${..hidden_dim}", nhead=8, dim_feedforward=2048, dropout=0.1, activation="relu"),
    query_init=L(LearnedQueries)(num_queries=300, d_model="${..hidden_dim}"),
    # the transformer's heads, FFN width, dropout and activation are written once, in the encoder
    decoder=L(ConditionalDecoder)(
        num_layers=6, d_model="${..hidden_dim}", nhead="${..encoder.nhead}", dim_feedforward="${..encoder.dim_feedforward}",
        dropout="${..encoder.dropout}", activation="${..encoder.activation}",
    ),
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, focal_alpha=0.25, focal_gamma=2.0),
        class_loss=L(FocalLoss)(alpha=0.25, gamma=2.0),
        weight_dict={"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        aux_loss="${..aux_loss}",
    ),
    num_classes=80,
    hidden_dim=256,
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
    num_select=100,
    reference_eps=1e-5,
    aux_loss=True,
    box_head_init="zeros",  # official models/conditional_detr.py:58-60
    clip_boxes=False,  # official PostProcess does not clip (models/conditional_detr.py:311-314)
)
