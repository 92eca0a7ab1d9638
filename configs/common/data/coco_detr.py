"""COCO 2017 through Detectron2's built-in registration (``$DETECTRON2_DATASETS/coco``) with the DETR
augmentation: flip, then multi-scale resize or resize-crop-resize (p = 0.5 each); test 800/1333.

Batches are drawn as the official loaders draw them (Conditional DETR ``main.py:155-163``, the same in
DAB-DETR and SMCA-DETR): a uniform random shuffle of every train2017 image, annotated or not, cut into
batches with no aspect-ratio grouping. Detectron2's default groups each batch by aspect ratio
(``aspect_ratio_grouping=True``), which changes the padding, hence the features, of a batch of two or more
images per GPU. Detectron2's ``TrainingSampler`` is an endless stream of such shuffles (one per epoch,
all processes seeded alike), so only the last batch of an epoch differs from ``drop_last``: it continues
into the next shuffle.
"""
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
    aspect_ratio_grouping=False,  # official: RandomSampler/DistributedSampler + BatchSampler
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
