"""SD-DETR-R50, 12 epochs, trained with StageInteractor's cross-stage label assigner
(appendix J: every stage, range [i-1, L], IoU >= 0.5; see sd_detr/modeling/assigner.py).
SD-DETR keeps its repeated positives (the bags gather the k matches of each stage) and its
task-alignment loss: each bag label's soft target uses the IoU with the ground truth that
brought it (see CrossStageAssigner)."""
from detectron2.config import LazyCall as L

from sd_detr.modeling import CrossStageAssigner

from .sd_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.criterion.assigner = L(CrossStageAssigner)(iou_threshold=0.5, lower_offset=-1, upper_offset=None,
                                                 num_repeats=model.criterion.assigner.num_repeats,
                                                 repeat_stages=model.criterion.assigner.repeat_stages)
train.output_dir = "./output/sd_detr_r50_12ep_stage_assigner"
