"""COCO 2017 through Detectron2's built-in registration (``$DETECTRON2_DATASETS/coco``) with the DETR
augmentation: flip, then multi-scale resize or resize-crop-resize (p = 0.5 each); test 800/1333."""
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from omegaconf import OmegaConf

from sd_detr.data import DetrDatasetMapper, build_detr_augmentations, get_detr_dataset_dicts
from sd_detr.evaluation import build_coco_evaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detr_dataset_dicts)(names="coco_2017_train", filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=True,
        augmentations=L(build_detr_augmentations)(is_train=True),
        image_format="RGB",
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detr_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=False,
        augmentations=L(build_detr_augmentations)(is_train=False),
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(build_coco_evaluator)(dataset_name="${..test.dataset.names}", output_dir=None)
