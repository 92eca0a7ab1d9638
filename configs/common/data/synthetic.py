"""The project's synthetic shapes dataset (generated on first use, not when this file is loaded: see
sd_detr/data/synthetic.py), registered as COCO instances (the metadata of register_coco_instances) so it
runs through the same loaders and COCOEvaluator as COCO.

Images are 128-192 px, so the DETR augmentation is scaled down: flip, then multi-scale resize
(short side 128..192 step 16, long side <= 320) or resize 112/128/144 -> random crop 96..144 ->
multi-scale resize, p = 0.5 each; test resize 160/320.

Evaluation runs on the seen-domain val split (``sd_detr_synthetic_val``) only, to keep the tiny runs
short. The domain-shifted split ``sd_detr_synthetic_val_shift`` (checkerboard backgrounds, two-colour
striped objects: never seen in training) is registered too; evaluate a trained model on it with
``--eval-only train.init_checkpoint=.../model_final.pth dataloader.test.dataset.names=sd_detr_synthetic_val_shift``
(the evaluator follows the test set's name), as tools/run_ablations.py does for every run. So are its
one-change twins ``sd_detr_synthetic_val_shift_objects`` (the striped objects on the seen smooth
backgrounds) and ``sd_detr_synthetic_val_shift_background`` (the checkerboards behind the seen
flat-coloured objects), which tell which of the two changes a detector fails on.
"""
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from omegaconf import OmegaConf

from sd_detr.data import DetrDatasetMapper, build_detr_augmentations, get_detr_dataset_dicts
from sd_detr.data.synthetic import SYNTHETIC_TRAIN_NAME, SYNTHETIC_VAL_NAME, register_synthetic_dataset
from sd_detr.evaluation import build_coco_evaluator

# registers the splits under $SD_DETR_SYNTHETIC_ROOT (or datasets/) and writes nothing: the data (or only
# a missing split) are generated when a split is first loaded or evaluated (sd_detr/data/synthetic.py)
register_synthetic_dataset()

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detr_dataset_dicts)(names=SYNTHETIC_TRAIN_NAME, filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=True,
        augmentations=L(build_detr_augmentations)(
            is_train=True,
            min_sizes=(128, 144, 160, 176, 192),
            max_size=320,
            crop_resize=(112, 128, 144),
            crop_size=(96, 144),
        ),
        image_format="RGB",
    ),
    total_batch_size=8,
    num_workers=1,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detr_dataset_dicts)(names=SYNTHETIC_VAL_NAME, filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        is_train=False,
        augmentations=L(build_detr_augmentations)(is_train=False, test_min_size=160, test_max_size=320),
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=1,
)

dataloader.evaluator = L(build_coco_evaluator)(dataset_name="${..test.dataset.names}", output_dir=None)
