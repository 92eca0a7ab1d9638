"""sd_detr.model_zoo (issue 23): the configs ship inside the package under model-zoo names ("common/train.py",
"sd_detr/sd_detr_r50_12ep.py", "conditional_detr/yacs/conditional_detr_r50_12ep.yaml"), the library reads them
by name only, and a wrong name is an error naming it with the names it was probably meant to be.
tests/test_wheel_install.py checks the same from a built wheel outside the checkout."""
import glob
import os

import pytest
from detectron2.config import CfgNode

import sd_detr.model_zoo
from sd_detr.config import get_config as config_get_config
from sd_detr.model_zoo import UnknownConfigError, get_config, get_config_file, list_configs
from sd_detr.model_zoo import model_zoo as zoo_module
from sd_detr.modeling.meta_arch import ConditionalDETR, DABDETR, SDDETR, SMCADETR
from sd_detr.modeling.meta_arch.build import target_of

from ..utils import REPO


def _repository_configs():
    """Model-zoo name -> file of the repository, read from the layout setup.py packs: configs/<x> as <x>,
    projects/<p>/configs/<x> as <p>/<x>."""
    out = {}
    for root, prefix in [(os.path.join(REPO, "configs"), "")] + [
            (d, os.path.basename(os.path.dirname(d)) + "/") for d in glob.glob(os.path.join(REPO, "projects", "*",
                                                                                          "configs"))]:
        for ext in ("py", "yaml"):
            for f in glob.glob(os.path.join(root, "**", f"*.{ext}"), recursive=True):
                out[prefix + os.path.relpath(f, root).replace(os.sep, "/")] = f
    return out


def test_every_config_of_the_repository_is_listed_under_its_name_with_the_same_content():
    """Bug caught: a project, a sub-folder (models/, yacs/, ablations/) or the .yaml files left out of the
    model zoo, a name keeping the repository's ``configs/`` part, or a stale model zoo in this checkout (a new
    project after the last ``pip install -e .``)."""
    expected = _repository_configs()
    assert {"common/train.py", "sd_detr/sd_detr_r50_12ep.py", "sd_detr/ablations/table2_dfl.py",
            "conditional_detr/yacs/conditional_detr_r50_12ep.yaml", "sd_detr/models/sd_detr_r50.py"} <= set(expected)
    assert list_configs() == sorted(expected)
    package = os.path.dirname(os.path.abspath(sd_detr.model_zoo.__file__))
    for name, source in expected.items():
        path = get_config_file(name)
        # inside the package (an editable install reads the clone through the links, unresolved, so that the
        # configs' relative imports stay in the model zoo)
        assert path.startswith(package + os.sep), path
        with open(path, "rb") as a, open(source, "rb") as b:
            assert a.read() == b.read(), name


def test_the_names_of_the_issue_load_lazy_and_yacs_configs():
    """Bug caught: a .yaml name loaded as a LazyConfig (or without the detectors' keys, which the merge then
    rejects), a project config's relative import (``..sd_detr_r50_50ep``) resolved outside the model zoo, or
    ``sd_detr.config.get_config`` reading another folder than the model zoo."""
    assert get_config("common/train.py").train.max_iter == config_get_config("common/train.py").train.max_iter > 0
    assert target_of(get_config("sd_detr/sd_detr_r50_12ep.py").model) is SDDETR
    assert target_of(get_config("sd_detr/models/sd_detr_r50.py").model) is SDDETR
    dfl = get_config("sd_detr/ablations/table2_dfl.py")
    assert target_of(dfl.model) is SDDETR and "train" in dfl
    yacs = get_config("conditional_detr/yacs/conditional_detr_r50_12ep.yaml")
    assert isinstance(yacs, CfgNode) and yacs.MODEL.META_ARCHITECTURE == "ConditionalDETR"
    assert "SD_DETR" in yacs.MODEL  # every detector's keys were added before the merge
    # a fresh copy each call: editing one does not reach the next
    first = get_config("common/train.py")
    first.train.max_iter = -1
    assert get_config("common/train.py").train.max_iter > 0


@pytest.mark.parametrize("meta_arch, attrs", [(SDDETR, ("MODEL_FILE",)), (ConditionalDETR, ("MODEL_FILE",)),
                                              (DABDETR, ("MODEL_FILE",)),
                                              (SMCADETR, ("MODEL_FILE", "MULTI_SCALE_MODEL_FILE"))])
def test_each_detectors_model_file_is_a_model_zoo_name_building_that_detector(meta_arch, attrs):
    """Bug caught: a MODEL_FILE left as a repository path (``<p>/configs/models/...``) or pointing at another
    detector's model file (the yacs path would build the wrong model)."""
    for attr in attrs:
        name = getattr(meta_arch, attr)
        assert name in list_configs(), (meta_arch.__name__, attr, name)
        assert target_of(get_config(name).model) is meta_arch, (attr, name)


@pytest.mark.parametrize("wrong, meant, first", [
    ("sd_detr/sd_detr_r50_12ep", "sd_detr/sd_detr_r50_12ep.py", True),
    ("projects/sd_detr/configs/ablations/table2_dfl.py", "sd_detr/ablations/table2_dfl.py", True),
    ("configs/common/train.py", "common/train.py", True),
    ("conditional_detr/conditional_detr_r50_12ep.yaml", "conditional_detr/yacs/conditional_detr_r50_12ep.yaml", False),
])
def test_an_unknown_name_is_an_error_naming_it_and_the_name_meant(wrong, meant, first):
    """Bug caught: a bare FileNotFoundError without the name, or no hint (a repository path must point to its
    model-zoo name first)."""
    with pytest.raises(UnknownConfigError) as e:
        get_config_file(wrong)
    message = str(e.value)
    assert repr(wrong) in message
    suggestions = message.split("Did you mean ", 1)[1].split("?")[0]
    assert (suggestions.startswith(repr(meant)) if first else repr(meant) in suggestions), message
    assert isinstance(e.value, FileNotFoundError)  # callers catching the old error keep working
    with pytest.raises(UnknownConfigError, match="no config 'nothing/like/this.py'"):
        get_config("nothing/like/this.py")


@pytest.mark.parametrize("bad", ["../setup.py", "sd_detr/../../../setup.py", "/etc/passwd", ""])
def test_a_name_outside_the_model_zoo_is_refused(bad):
    """Bug caught: ``..`` or an absolute path reading any file through the model zoo (``os.path.join`` drops
    the folder before an absolute path)."""
    with pytest.raises(ValueError, match="not a model-zoo name"):
        get_config_file(bad)


def test_a_package_without_its_configs_folder_says_how_to_install_it(monkeypatch, tmp_path):
    """Bug caught: the model zoo falling back on another folder (the repository's) or failing with an
    unknown-name error that blames the name when the folder itself is missing."""
    monkeypatch.setattr(zoo_module, "CONFIGS_DIR", str(tmp_path / "configs"))
    with pytest.raises(FileNotFoundError, match=r"no configs folder at .*pip install -e \.") as e:
        get_config_file("common/train.py")
    assert not isinstance(e.value, UnknownConfigError)
    with pytest.raises(FileNotFoundError, match="no configs folder"):
        config_get_config("common/train.py")


@pytest.mark.parametrize("project", sorted(os.path.basename(os.path.dirname(d))
                                           for d in glob.glob(os.path.join(REPO, "projects", "*", "configs"))))
def test_each_project_readme_lists_exactly_its_model_zoo_names(project):
    """Bug caught: a config added to (or removed from) a project without its README's model-zoo list following,
    or a listed name that does not load (a typo, the repository path instead of the name)."""
    import re

    with open(os.path.join(REPO, "projects", project, "README.md")) as f:
        listed = set(re.findall(rf"`({re.escape(project)}/[\w/.-]+\.(?:py|yaml))`", f.read()))
    assert listed == {n for n in list_configs() if n.startswith(project + "/")}
