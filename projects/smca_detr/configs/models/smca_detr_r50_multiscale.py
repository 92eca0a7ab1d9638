"""SMCA-DETR-R50 with multi-scale features, the paper's design (Sec. 3.3 and 4.3):

- levels of strides 16, 32, 64 from the backbone, no FPN: 1x1 projections of res4 and res5 and a 3x3
  stride-2 convolution of res5 (three convolutions to 256 channels);
- encoder: 5 layers, 2 intra-scale (weights shared across scales), 1 multi-scale, 2 intra-scale; FFN 1024
  (also in the decoder: the released multi-scale command uses --enc_layers 5 --dim_feedforward 1024);
- decoder: scale-selection attention (per-level key / value projections, per-query softmax weights over
  the levels) with multi-head spatial modulation; the rest as the single-scale model.

The released multi-scale code (Multi_scale_SMCA.zip) is a different architecture (depthwise-convolution
encoder, strides 8-64, shared key / value projections); its checkpoints do not load into this config.
"""
from detectron2.config import LazyCall as L

from sd_detr.modeling import IntraMultiScaleEncoder

from .smca_detr_r50 import model

model.backbone.out_features = ["res4", "res5"]
model.in_features = ["res4", "res5"]
model.num_extra_levels = 1  # stride 64
model.encoder = L(IntraMultiScaleEncoder)(
    # FFN 1024 for the decoder too: the decoder reads the encoder's (smca_detr_r50.py)
    num_layers=5, d_model="${..hidden_dim}", nhead=8, dim_feedforward=1024, dropout=0.1, activation="relu", multi_scale_layers=[2],
)
model.decoder.num_levels = 3
