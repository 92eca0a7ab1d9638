"""A small Conditional DETR for the synthetic shapes data, trained from scratch on CPU in minutes.

Same architecture as the paper's model, scaled down: a narrow ResNet-18 up to res4 (stride 16,
64 channels, trainable BatchNorm), 64-d transformer with 4 heads, 2 encoder and 3 decoder layers, 30 queries. No ImageNet
initialisation (nothing can be downloaded), so the backbone trains from scratch with the full lr.
"""
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

from sd_detr.config import get_config

from .models.conditional_detr_r50 import model

dataloader = get_config("common/data/synthetic.py").dataloader
optimizer = get_config("common/optim.py").optimizer
train = get_config("common/train.py").train

# trainable BatchNorm: a from-scratch backbone with FrozenBN (identity at init) barely learns here
model.backbone.update(depth=18, out_features=["res4"], stem_out_channels=16, res2_out_channels=16, freeze_at=0, norm="BN")
model.in_feature = "res4"
model.hidden_dim = 64
model.num_classes = 5
model.num_select = 50
model.encoder.update(num_layers=2, d_model=64, nhead=4, dim_feedforward=256, dropout=0.0)
model.decoder.update(num_layers=3, nhead=4, dim_feedforward=256, dropout=0.0)
model.query_init.num_queries = 30
model.position_embedding.num_pos_feats = 32

optimizer.lr = 4e-4
optimizer.params.backbone_lr_factor = 1.0

train.max_iter = 1500
lr_multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[1200, 1500])
train.init_checkpoint = ""
train.output_dir = "./output/conditional_detr_tiny_synthetic"
train.eval_period = 1500
train.checkpointer.period = 500
train.log_period = 50
