"""Own COCO-format data through config keys: a COCO detection JSON and its image folder per split.

    dataloader.custom.train_json=/data/mine/train.json dataloader.custom.train_images=/data/mine/train
    dataloader.custom.val_json=/data/mine/val.json     dataloader.custom.val_images=/data/mine/val

The train loop (``sd_detr.engine.do_train`` / ``do_eval_only``) calls
:func:`sd_detr.data.apply_custom_datasets`, which registers both with ``register_coco_instances``,
sets the dataset names below and makes every ``num_classes`` of the model follow the JSON's categories
(train and val must have the same ones). Augmentation, batch size and workers are those of
``coco_detr.py`` (DETR's: flip, multi-scale 480-800 / resize-crop-resize; test 800/1333).

With a project config, the train tool's flags are the shorter way (they call the same function):
``tools/lazyconfig_train_net.py --config-file projects/sd_detr/configs/sd_detr_r50_12ep.py
--dataset-train JSON:IMAGES --dataset-val JSON:IMAGES``. This file is for a config of one's own::

    from sd_detr.config import get_config
    from .sd_detr_r50_12ep import model, optimizer, train   # a file next to the project's configs

    dataloader = get_config("common/data/custom_coco.py").dataloader
    dataloader.custom.update(train_json="/data/mine/train.json", train_images="/data/mine/train",
                             val_json="/data/mine/val.json", val_images="/data/mine/val")
    lr_multiplier = get_config("common/schedule.py").constant_schedule
"""
from sd_detr.config import get_config
from sd_detr.data.custom import UNSET_NAMES

dataloader = get_config("common/data/coco_detr.py").dataloader
# placeholders until the paths are set: apply_custom_datasets names the missing keys
dataloader.train.dataset.names = UNSET_NAMES["train"]
dataloader.test.dataset.names = UNSET_NAMES["val"]
dataloader.custom = dict(train_json="", train_images="", val_json="", val_images="")
