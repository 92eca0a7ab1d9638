"""Training defaults shared by every config (read by tools/lazyconfig_train_net.py)."""
import torch

train = dict(
    output_dir="./output",
    # ImageNet R-50 (torchvision weights in Detectron2 format); the official models start from it.
    init_checkpoint="detectron2://ImageNetPretrained/torchvision/R-50.pkl",
    max_iter=90000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    # gradient clipping of the official recipes: total L2 norm 0.1 (Conditional DETR main.py:36)
    clip_grad=dict(enabled=True, max_norm=0.1, norm_type=2.0),
    seed=42,
    # exponential moving average of the weights, as detrex's train.model_ema (sd_detr/engine/ema.py): updated
    # after every step, saved in the checkpoints (model_ema, continued by --resume) and evaluated in place of
    # the live weights; decay per iteration; device "" = beside the weights. Off for the paper configs.
    model_ema=dict(enabled=False, decay=0.999, device="", use_ema_weights_for_eval_only=False),
    device="cuda" if torch.cuda.is_available() else "cpu",
)
