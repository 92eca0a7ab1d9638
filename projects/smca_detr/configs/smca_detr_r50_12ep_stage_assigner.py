"""SMCA-DETR-R50, 12 epochs, trained with StageInteractor's cross-stage label assigner
(appendix J: every stage, range [i-1, L], IoU >= 0.5; see sd_detr/modeling/assigner.py)."""
from detectron2.config import LazyCall as L

from sd_detr.modeling import CrossStageAssigner

from .smca_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.criterion.assigner = L(CrossStageAssigner)(iou_threshold=0.5, lower_offset=-1, upper_offset=None)
train.output_dir = "./output/smca_detr_r50_12ep_stage_assigner"
