"""COCO evaluation through Detectron2's :class:`~detectron2.evaluation.COCOEvaluator`."""
from typing import Optional, Union

from detectron2.evaluation import COCOEvaluator

from ..data.synthetic import ensure_dataset_files


def fast_coco_eval_available() -> bool:
    """True when ``detectron2._C`` really provides the C++ COCOeval (not sd_detr's placeholder)."""
    try:
        from detectron2 import _C

        return callable(getattr(_C, "COCOevalEvaluateImages"))
    except (ImportError, AttributeError):
        return False


def build_coco_evaluator(dataset_name: str, output_dir: Optional[str] = None,
                         use_fast_impl: Union[bool, str] = "auto", **kwargs) -> COCOEvaluator:
    """A box-only COCOEvaluator; ``use_fast_impl="auto"`` uses the C++ COCOeval when detectron2 was built
    with its compiled ops and pycocotools otherwise (same numbers, slower)."""
    # COCOEvaluator reads the metadata's json_file at once (in do_test before the test loader is built): a
    # synthetic split not generated yet is generated now
    ensure_dataset_files(dataset_name)
    fast = fast_coco_eval_available() if use_fast_impl == "auto" else bool(use_fast_impl)
    return COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=output_dir, use_fast_impl=fast, **kwargs)
