"""sd_detr.model_zoo.detectors: the one list of detectors, read from META_ARCH_REGISTRY."""
import pytest
from detectron2.modeling import META_ARCH_REGISTRY

from sd_detr.model_zoo import detector_names, detectors, get_config_file
from sd_detr.modeling.meta_arch import ConditionalDETR


def test_the_four_detectors_with_their_configs_and_titles():
    found = {d.name: d for d in detectors()}
    assert sorted(found) == ["conditional_detr", "dab_detr", "sd_detr", "smca_detr"]
    assert {n: d.meta_arch for n, d in found.items()} == {
        "conditional_detr": "ConditionalDETR", "dab_detr": "DABDETR", "sd_detr": "SDDETR", "smca_detr": "SMCADETR"}
    assert {n: d.title for n, d in found.items()} == {
        "conditional_detr": "Conditional DETR", "dab_detr": "DAB-DETR", "sd_detr": "SD-DETR", "smca_detr": "SMCA-DETR"}
    for d in found.values():
        assert d.tiny == f"{d.name}/{d.name}_tiny_synthetic.py" and d.r50 == f"{d.name}/{d.name}_r50_12ep.py"
        for name in (d.tiny, d.r50, d.yacs):
            assert get_config_file(name)  # shipped
    assert detector_names() == [d.name for d in detectors()]


def _register(name, model_file):
    cls = type(name, (ConditionalDETR,), {"MODEL_FILE": model_file, "TITLE": "Fifth"})
    META_ARCH_REGISTRY.register(cls)
    return cls


def test_a_fifth_registered_detector_is_listed_without_editing_the_list():
    # a fifth project reusing conditional_detr's configs folder: listed with its own registry name and title
    _register("FifthDETR", "conditional_detr/models/conditional_detr_r50.py")
    try:
        fifth = [d for d in detectors() if d.meta_arch == "FifthDETR"]
        assert len(fifth) == 1 and fifth[0].title == "Fifth" and fifth[0].name == "conditional_detr"
    finally:
        META_ARCH_REGISTRY._obj_map.pop("FifthDETR")
    assert "FifthDETR" not in [d.meta_arch for d in detectors()]


def test_a_registered_detector_without_its_configs_is_named():
    _register("NoConfigsDETR", "no_such_project/models/x.py")
    try:
        with pytest.raises(FileNotFoundError, match="NoConfigsDETR.*no_such_project/no_such_project_tiny_synthetic.py"):
            detectors()
    finally:
        META_ARCH_REGISTRY._obj_map.pop("NoConfigsDETR")
