"""SD-DETR-R50 (Zhang et al., ICCV 2023) with the paper's settings (Sec. 4.1): 300 queries, 6 + 6
layers, 256 channels, 8 heads, dropout 0.1, Hungarian matching with each ground truth repeated twice,
task-alignment loss alpha 0.25, beta 0.75, gamma 2, L1 + GIoU box losses.

Where the paper is silent: FFN 2048, matcher costs 2/5/2 and loss weights 2/5/2 as Conditional DETR and
DESTR (``main.py:76-88``); the mini-detector as DESTR (4 convs per tower, GroupNorm 32, loss weight 0.1:
``models/destr.py:69-72, 484-487``); M = 8 task-aware points (SAM-DETR's 8 salient points); the
repeated positives apply to every decoder layer but the last (measured on the synthetic data, see
projects/sd_detr/README.md); anchors are not refined between layers (DESTR keeps its references); the
shared self-attention reads and writes the 2C concatenation but attends in 256 channels (Sec. 4.1),
``model.decoder.self_attn_width = "full"`` makes it attend in 2C as DESTR does.

The ablations (projects/sd_detr/configs/ablations) switch the parts off one at a time:
``model.decoder.branches = ["shared"]`` (one branch read by both heads), ``model.decoder.shared_self_attn
= False`` (two complete decoders), ``model.query_init.task_aware = None`` (no TAQ),
``model.criterion.class_loss = FocalLoss`` with ``model.criterion.assigner.num_repeats = 1`` (no TAL).
"""
from detectron2.config import LazyCall as L

from sd_detr.layers import PositionEmbeddingSine
from sd_detr.modeling import (
    SDDETR,
    DisentangledDecoder,
    HungarianAssigner,
    HungarianMatcher,
    MiniDetector,
    MiniDetectorQueries,
    SetCriterion,
    TaskAlignmentLoss,
    TaskAwareQueryGenerator,
    TransformerEncoder,
    build_detr_resnet,
)

model = L(SDDETR)(
    backbone=L(build_detr_resnet)(depth=50, dc5=False, out_features=["res5"], freeze_at=2, norm="FrozenBN"),
    in_feature="res5",
    position_embedding=L(PositionEmbeddingSine)(d_model="${..hidden_dim}", temperature=10000, normalize=True),
    encoder=L(TransformerEncoder)(num_layers=6, d_model="${..hidden_dim}", nhead=8, dim_feedforward=2048, dropout=0.1, activation="relu"),
    query_init=L(MiniDetectorQueries)(
        mini_detector=L(MiniDetector)(
            d_model="${...hidden_dim}",
            num_classes="${...num_classes}",
            num_convs=4,
            norm_groups=32,
            box_head_layers=3,
            anchor_size=0.05,
            anchor_stride=8,
            prior_prob=0.01,
            reference_eps="${...reference_eps}",
        ),
        num_queries=300,
        branches="${..decoder.branches}",
        task_aware=L(TaskAwareQueryGenerator)(
            d_model="${...hidden_dim}",
            branches="${..branches}",
            num_points=8,
            roi_size=7,
            mlp_layers=3,
            init_radius=0.5,
        ),
        name="mini_detector",
    ),
    # the transformer's heads, FFN width, dropout and activation are written once, in the encoder
    decoder=L(DisentangledDecoder)(
        num_layers=6,
        d_model="${..hidden_dim}",
        nhead="${..encoder.nhead}",
        dim_feedforward="${..encoder.dim_feedforward}",
        dropout="${..encoder.dropout}",
        activation="${..encoder.activation}",
        branches=["cls", "loc"],
        shared_self_attn=True,
        # the shared self-attention over [q_cls | q_loc] (2C) attends in C = 256 channels, 8 heads of 32
        # (Sec. 4.1: "We keep the number of multi-head to 8 and the attention channel to 256");
        # "full": in 2C, 8 heads of 64, as DESTR (projects/sd_detr/README.md)
        self_attn_width="model",
        refine_anchors=False,
        reference_eps="${..reference_eps}",
    ),
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, focal_alpha=0.25, focal_gamma=2.0),
        # each ground truth matched twice in decoder layers 0-4, once in the last one
        assigner=L(HungarianAssigner)(num_repeats=2, repeat_stages=[0, 1, 2, 3, 4]),
        class_loss=L(TaskAlignmentLoss)(alpha=0.25, beta=0.75, gamma=2.0),
        weight_dict={"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        aux_loss="${..aux_loss}",
        extra_stage_weights={"mini_detector": 0.1},
    ),
    num_classes=80,
    hidden_dim=256,
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
    num_select=100,
    reference_eps=1e-5,
    aux_loss=True,
)
