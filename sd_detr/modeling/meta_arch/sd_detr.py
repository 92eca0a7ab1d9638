"""SD-DETR (Zhang et al., "Decoupled DETR: Spatially Disentangling Localization and Classification for
Improved End-to-End Object Detection", ICCV 2023) as a Detectron2 meta-architecture.

The detector is :class:`DETRDetector` with SD-DETR's parts: a mini-detector on the encoder memory
gives the anchor boxes and initial queries (:class:`~sd_detr.modeling.queries.MiniDetectorQueries`),
task-aware query generation gives each branch its content query and reference
(:class:`~sd_detr.modeling.queries.TaskAwareQueryGenerator`), the disentangled decoder has a shared
self-attention on the 2C concatenation of the branches (attending in C channels by default,
``MODEL.SD_DETR.SELF_ATTN_WIDTH``) and per-branch cross-attention
(:class:`~sd_detr.modeling.decoder.DisentangledDecoder`), the class head reads the classification
branch and the box head the localisation branch, and the criterion uses the task-alignment loss with
repeated positives (:class:`~sd_detr.modeling.losses.TaskAlignmentLoss`, ``HungarianAssigner(num_repeats=2)``).
"""
from detectron2.config import LazyCall as L
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..decoder.disentangled import SELF_ATTN_WIDTHS
from ..losses import FocalLoss, TaskAlignmentLoss
from .build import apply_detr_keys, apply_keys, instantiate_parts, load_model_file, target_of
from .detr import DETRDetector

# decoder layout name -> (branches, shared self-attention)
DECODER_LAYOUTS = {
    "split_cross_attention": (("cls", "loc"), True),
    "shared": (("shared",), True),
    "split_decoder": (("cls", "loc"), False),
}


def set_batched_branches(model, enabled: bool = True) -> int:
    """Run SD-DETR's two branches as one batched computation (True, the default of every part) or one
    after the other (False: the per-branch reference the tests compare with; issue 24).

    Sets the ``batched_branches`` attribute of every module of ``model`` that has one (the disentangled
    decoder and its layers, the mini-detector, task-aware query generation); per model, never
    process-wide. Returns the number of modules set.
    """
    modules = [m for m in model.modules() if isinstance(getattr(m, "batched_branches", None), bool)]
    for m in modules:
        m.batched_branches = bool(enabled)
    return len(modules)


@META_ARCH_REGISTRY.register()
class SDDETR(DETRDetector):
    """SD-DETR: mini-detector anchors -> task-aware queries -> disentangled decoder.

    Built from LazyConfig with explicit parts (``projects/sd_detr/configs``) or from a yacs config with
    ``MODEL.META_ARCHITECTURE = "SDDETR"``, the ``MODEL.DETR`` keys and the ``MODEL.SD_DETR`` keys of
    :func:`sd_detr.config.add_sd_detr_config`.
    """

    TITLE = "SD-DETR"  # the name tables and reports print (sd_detr.model_zoo.detectors)
    MODEL_FILE = "sd_detr/models/sd_detr_r50.py"
    # MODEL.SD_DETR.<KEY> -> its places in the model config (DECODER, TASK_AWARE_QUERIES,
    # TASK_ALIGNMENT_LOSS and REPEAT_LAST_LAYER switch parts: lazy_model_from_yacs)
    YACS_KEYS = {
        "SELF_ATTN_WIDTH": ("decoder.self_attn_width",),
        "REFINE_ANCHORS": ("decoder.refine_anchors",),
        "MINI_DETECTOR_CONVS": ("query_init.mini_detector.num_convs",),
        "MINI_DETECTOR_NORM_GROUPS": ("query_init.mini_detector.norm_groups",),
        "MINI_DETECTOR_WEIGHT": ("criterion.extra_stage_weights.mini_detector",),
        "ANCHOR_SIZE": ("query_init.mini_detector.anchor_size",),
        "ANCHOR_STRIDE": ("query_init.mini_detector.anchor_stride",),
        "NUM_REPEATS": ("criterion.assigner.num_repeats",),
    }
    TAQ_KEYS = {"NUM_POINTS": ("query_init.task_aware.num_points",), "ROI_SIZE": ("query_init.task_aware.roi_size",)}
    TAL_KEYS = {"TAL_ALPHA": ("criterion.class_loss.alpha",), "TAL_BETA": ("criterion.class_loss.beta",),
                "TAL_GAMMA": ("criterion.class_loss.gamma",)}

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def lazy_model_from_yacs(cls, cfg):
        """The model config the yacs ``cfg`` describes: :attr:`MODEL_FILE` with the set keys applied and
        the parts of an ablation row switched (``MODEL.SD_DETR.DECODER``, ``TASK_AWARE_QUERIES``,
        ``TASK_ALIGNMENT_LOSS``, ``REPEAT_LAST_LAYER``)."""
        if not hasattr(cfg.MODEL, "SD_DETR"):
            raise KeyError("config has no MODEL.SD_DETR: call sd_detr.config.add_sd_detr_config(cfg) before merging the file")
        s = cfg.MODEL.SD_DETR
        model = load_model_file(cls.MODEL_FILE)
        file_layers, file_stages = model.decoder.num_layers, model.criterion.assigner.repeat_stages
        apply_detr_keys(cfg, model)
        if s.DECODER is not None:
            if s.DECODER not in DECODER_LAYOUTS:
                raise ValueError(f"MODEL.SD_DETR.DECODER must be one of {sorted(DECODER_LAYOUTS)}, got {s.DECODER!r}")
            branches, shared_self_attn = DECODER_LAYOUTS[s.DECODER]
            model.decoder.branches, model.decoder.shared_self_attn = list(branches), shared_self_attn
        if s.SELF_ATTN_WIDTH is not None and s.SELF_ATTN_WIDTH not in SELF_ATTN_WIDTHS:
            raise ValueError(f"MODEL.SD_DETR.SELF_ATTN_WIDTH must be one of {SELF_ATTN_WIDTHS}, got {s.SELF_ATTN_WIDTH!r}")
        apply_keys(model, s, "MODEL.SD_DETR", cls.YACS_KEYS)
        if s.TASK_AWARE_QUERIES is False:
            model.query_init.task_aware = None
        elif model.query_init.task_aware is not None:  # the keys of a part switched off do not apply
            apply_keys(model, s, "MODEL.SD_DETR", cls.TAQ_KEYS)
        if s.TASK_ALIGNMENT_LOSS is False:  # the focal loss of the matcher's alpha / gamma (Table 2 rows)
            m = model.criterion.matcher
            model.criterion.class_loss = L(FocalLoss)(alpha=m.focal_alpha, gamma=m.focal_gamma)
        elif target_of(model.criterion.class_loss) is TaskAlignmentLoss:
            apply_keys(model, s, "MODEL.SD_DETR", cls.TAL_KEYS)
        # repeated positives in every decoder layer (True) or all but the last (False); unset: as the model
        # file, for the number of layers the config has
        repeat_last = s.REPEAT_LAST_LAYER
        if repeat_last is None and file_stages is not None and list(file_stages) == list(range(file_layers - 1)):
            repeat_last = False
        if repeat_last is not None:
            n = model.decoder.num_layers
            model.criterion.assigner.repeat_stages = None if repeat_last else list(range(n - 1))
        return model

    @classmethod
    def from_config(cls, cfg):
        return instantiate_parts(cfg, cls.lazy_model_from_yacs(cfg), cls)

