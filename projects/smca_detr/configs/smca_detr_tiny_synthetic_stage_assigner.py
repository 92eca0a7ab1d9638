"""The tiny synthetic SMCA-DETR trained with StageInteractor's cross-stage label assigner
(appendix J defaults; same model and budget as smca_detr_tiny_synthetic.py)."""
from detectron2.config import LazyCall as L

from sd_detr.modeling import CrossStageAssigner

from .smca_detr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.criterion.assigner = L(CrossStageAssigner)(iou_threshold=0.5, lower_offset=-1, upper_offset=None)
train.output_dir = "./output/smca_detr_tiny_synthetic_stage_assigner"
