"""The converter, given a checkpoint of another family (or one already converted), says which
``--source`` it looks like instead of only listing the keys it cannot convert."""
import pytest
import torch

from sd_detr.checkpoint import convert_state_dict
from sd_detr.checkpoint.convert import rank_sources
from sd_detr.checkpoint.convert_file import ConversionError, convert_checkpoint_file

from .official_state_dicts import official_conditional_detr
from .official_state_dicts_dab import official_dab_detr
from .official_state_dicts_smca import official_smca_detr

SMALL = dict(d=32, ffn=32, layers=2, queries=10)
OFFICIAL = {
    "conditional_detr": lambda: official_conditional_detr(**SMALL),
    "dab_detr": lambda: official_dab_detr(**SMALL),
    "smca_detr": lambda: official_smca_detr(**SMALL, heads=4),
}


@pytest.mark.parametrize("true_source", sorted(OFFICIAL))
def test_every_official_state_dict_is_ranked_first_for_its_own_source(true_source):
    """Catches a ranking by the keys the families share (backbone, encoder: conditional_detr and
    dab_detr cover all but a few of each other's keys), instead of by each source's whole coverage."""
    official = OFFICIAL[true_source]()
    ranking = rank_sources(official)
    assert ranking[0] == (true_source, len(official)), ranking
    assert all(covered < len(official) for _, covered in ranking[1:]), ranking


@pytest.mark.parametrize("true_source, wrong_source",
                         [(t, w) for t in sorted(OFFICIAL) for w in sorted(OFFICIAL) if t != w])
def test_wrong_source_error_names_the_source_the_checkpoint_looks_like(true_source, wrong_source):
    """Catches the bare list of unknown keys (DAB's refpoint_embed, SMCA's point1/point2...) that left the
    user to guess the --source."""
    with pytest.raises(KeyError, match=rf"looks like --source {true_source}\b") as info:
        convert_state_dict(wrong_source, OFFICIAL[true_source]())
    assert "no conversion rule" in str(info.value)  # the unknown keys are still listed


def test_already_converted_checkpoint_is_recognised_as_such():
    official = official_dab_detr(**SMALL)
    converted = convert_state_dict("dab_detr", official)
    with pytest.raises(KeyError, match=r"already .*this project's names"):
        convert_state_dict("dab_detr", converted)


def test_convert_tool_exits_with_the_hint_and_writes_nothing(tmp_path):
    """Through tools/convert_checkpoint.py's library (its message is the tool's exit message): a readable
    message (not a KeyError traceback) with the hint."""
    src, out = tmp_path / "smca.pth", tmp_path / "out.pth"
    torch.save({"model": official_smca_detr(**SMALL, heads=4)}, src)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint_file("dab_detr", str(src), str(out))
    message = str(info.value)
    assert str(src) in message and "looks like --source smca_detr" in message
    assert not out.exists()
