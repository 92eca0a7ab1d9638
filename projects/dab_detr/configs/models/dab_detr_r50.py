"""DAB-DETR-R50 (Liu et al., ICLR 2022): the paper's and the official code's settings
(IDEA-Research/DAB-DETR main.py defaults and README commands: 300 anchor queries, 6+6 layers, 256-d,
8 heads, FFN 2048, dropout 0, PReLU, image position embedding temperature 20 (H and W), anchor sine
embedding temperature 10000 (hard-coded in the official gen_sineembed_for_position), focal loss
alpha 0.25, matcher costs 2/5/2, loss weights 1/5/2, deep supervision, 300 detections kept,
inverse-sigmoid eps 1e-3). Where they differ from Conditional DETR's: dropout 0 (official ``main.py:79``),
PReLU (l. 89), class loss weight 1 (l. 121), 300 detections kept (l. 87), eps 1e-3 (``util/misc.py:575``,
also the eps of the anchor update)."""
from detectron2.config import LazyCall as L

from sd_detr.layers import PositionEmbeddingSine
from sd_detr.modeling import (
    AnchorQueries,
    DABDecoder,
    DABDETR,
    FocalLoss,
    HungarianMatcher,
    SetCriterion,
    TransformerEncoder,
    build_detr_resnet,
)

model = L(DABDETR)(
    backbone=L(build_detr_resnet)(depth=50, dc5=False, out_features=["res5"], freeze_at=2, norm="FrozenBN"),
    in_feature="res5",
    position_embedding=L(PositionEmbeddingSine)(d_model="${..hidden_dim}", temperature_h=20, temperature_w=20, normalize=True),
    encoder=L(TransformerEncoder)(
        num_layers=6, d_model="${..hidden_dim}", nhead=8, dim_feedforward=2048, dropout=0.0, activation="prelu",
        scale_pos_by_content=True,
    ),
    query_init=L(AnchorQueries)(num_queries=300, d_model="${..hidden_dim}", num_patterns=0, random_xy=False),
    # the transformer's heads, FFN width, dropout and activation are written once, in the encoder
    decoder=L(DABDecoder)(
        num_layers=6, d_model="${..hidden_dim}", nhead="${..encoder.nhead}", dim_feedforward="${..encoder.dim_feedforward}",
        dropout="${..encoder.dropout}", activation="${..encoder.activation}",
        query_temperature=10000, modulate_hw_attn=True, update_anchors=True, anchor_eps="${..reference_eps}",
    ),
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, focal_alpha=0.25, focal_gamma=2.0),
        class_loss=L(FocalLoss)(alpha=0.25, gamma=2.0),
        weight_dict={"loss_class": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        aux_loss="${..aux_loss}",
    ),
    num_classes=80,
    hidden_dim=256,
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
    num_select=300,
    reference_eps=1e-3,
    aux_loss=True,
    box_head_init="zeros",  # official models/DAB_DETR/DABDETR.py:133-140
    clip_boxes=False,  # official PostProcess does not clip (models/DAB_DETR/DABDETR.py:428-431)
)
