from .coco import build_coco_evaluator, fast_coco_eval_available

__all__ = ["build_coco_evaluator", "fast_coco_eval_available"]
