"""The drawing threshold chosen from validation scores (sd_detr/evaluation/score_threshold.py), against
hand-computed matches and F1 values."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from detectron2.structures import Boxes, BoxMode, Instances

from sd_detr.evaluation.score_threshold import (
    NoValidationSet,
    calibrate_threshold,
    config_test_set,
    f1_optimal_threshold,
    match_detections,
    predict_dataset,
)


def _inst(boxes, scores, classes, size=(100, 100)):
    inst = Instances(size)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.tensor(classes)
    return inst


def _ann(xyxy, cls, mode=BoxMode.XYXY_ABS, **kw):
    return dict(bbox=list(xyxy), bbox_mode=mode, category_id=cls, **kw)


def test_the_higher_scoring_duplicate_takes_the_ground_truth_and_the_other_is_a_false_positive():
    # bug caught: matching in input order instead of score order, or a ground truth matched twice
    inst = _inst([[10, 10, 50, 50], [11, 11, 50, 50]], [0.3, 0.8], [0, 0])
    assert match_detections(inst, [_ann([10, 10, 50, 50], 0)]).tolist() == [False, True]


def test_a_detection_of_another_class_or_below_iou_half_is_no_match():
    # bug caught: class ignored; IoU threshold ignored or inverted. IoU([0,0,10,10],[5,0,15,10]) = 1/3
    gt = [_ann([0, 0, 10, 10], 1)]
    assert match_detections(_inst([[0, 0, 10, 10]], [0.9], [2]), gt).tolist() == [False]
    assert match_detections(_inst([[5, 0, 15, 10]], [0.9], [1]), gt).tolist() == [False]
    assert match_detections(_inst([[1, 0, 10, 10]], [0.9], [1]), gt).tolist() == [True]  # IoU 0.9


def test_ground_truth_in_xywh_is_converted_and_crowd_boxes_are_ignored():
    # bug caught: bbox_mode ignored (XYWH read as XYXY); crowd regions counted as objects
    inst = _inst([[20, 20, 60, 40]], [0.9], [0])
    assert match_detections(inst, [_ann([20, 20, 40, 20], 0, BoxMode.XYWH_ABS)]).tolist() == [True]
    assert match_detections(inst, [_ann([20, 20, 40, 20], 0, BoxMode.XYWH_ABS, iscrowd=1)]).tolist() == [False]


def test_threshold_is_the_score_with_the_best_f1_hand_computed():
    # two objects; detections by score: 0.9 TP, 0.6 FP, 0.4 TP, 0.2 FP
    # F1 at 0.9: 2/3, at 0.6: 1/2, at 0.4: 4/5, at 0.2: 2/3 -> 0.4
    gt = [_ann([0, 0, 10, 10], 0), _ann([50, 50, 70, 70], 0)]
    inst = _inst([[0, 0, 10, 10], [80, 80, 90, 90], [50, 50, 70, 70], [30, 30, 40, 40]], [0.9, 0.6, 0.4, 0.2],
                 [0, 0, 0, 0])
    t, f1 = f1_optimal_threshold([(inst, gt)])
    assert t == pytest.approx(0.4) and f1 == pytest.approx(0.8)
    # the floor removes the 0.4 and 0.2 candidates: best of the rest is 0.9 (F1 2/3)
    t, f1 = f1_optimal_threshold([(inst, gt)], floor=0.5)
    assert t == pytest.approx(0.9) and f1 == pytest.approx(2 / 3)


def test_ground_truth_of_every_image_counts_in_the_recall():
    # bug caught: images without detections left out of the number of ground-truth boxes.
    # image 1: one TP at 0.5; image 2: one object, no detection -> F1 = 2*1/(1+2)
    a = (_inst([[0, 0, 10, 10]], [0.5], [0]), [_ann([0, 0, 10, 10], 0)])
    b = (_inst(torch.zeros(0, 4).tolist(), [], []), [_ann([0, 0, 10, 10], 0)])
    assert f1_optimal_threshold([a, b])[1] == pytest.approx(2 / 3)


def test_tied_scores_are_one_threshold():
    # a TP and an FP with the same score cannot be separated: the threshold 0.5 keeps both (F1 2*1/(2+1))
    gt = [_ann([0, 0, 10, 10], 0)]
    inst = _inst([[0, 0, 10, 10], [50, 50, 60, 60]], [0.5, 0.5], [0, 0])
    t, f1 = f1_optimal_threshold([(inst, gt)])
    assert t == pytest.approx(0.5) and f1 == pytest.approx(2 / 3)


def test_a_model_that_finds_nothing_draws_nothing():
    inst = _inst([[80, 80, 90, 90]], [0.9], [0])
    assert f1_optimal_threshold([(inst, [_ann([0, 0, 10, 10], 0)])]) == (1.0, 0.0)
    assert f1_optimal_threshold([]) == (1.0, 0.0)


class _ModelOfFixedDetections(nn.Module):
    """Returns, for a mapped dict {"k": k}, the k-th Instances given; records the training mode it ran in."""

    def __init__(self, detections):
        super().__init__()
        self.detections, self.modes = detections, []

    def forward(self, batch):
        self.modes.append(self.training)
        return [{"instances": self.detections[batch[0]["k"]]}]


def test_calibrate_threshold_runs_the_model_in_eval_mode_on_the_mapped_images_in_order():
    """Bug caught: the model left in training mode (dropout, train-time outputs), the mapper skipped, or
    detections paired with another image's ground truth."""
    gt = [[_ann([0, 0, 10, 10], 0)], [_ann([50, 50, 70, 70], 0)]]
    dets = [_inst([[0, 0, 10, 10], [80, 80, 90, 90]], [0.9, 0.6], [0, 0]),
            _inst([[50, 50, 70, 70], [30, 30, 40, 40]], [0.4, 0.2], [0, 0])]
    model = _ModelOfFixedDetections(dets).train()
    dicts = [{"file_name": "a.png", "annotations": gt[0]}, {"file_name": "b.png", "annotations": gt[1]}]
    choice = calibrate_threshold(model, dicts, lambda d: {"k": ["a.png", "b.png"].index(d["file_name"])},
                                 dataset="toy")
    assert model.modes == [False, False]
    # the example of test_threshold_is_the_score_with_the_best_f1_hand_computed, split over two images
    assert (choice.threshold, choice.f1, choice.num_images) == (pytest.approx(0.4), pytest.approx(0.8), 2)
    assert choice.describe() == "score >= 0.400, the F1-optimal threshold on 2 images of toy (F1 0.800)"
    swapped = calibrate_threshold(model, dicts[::-1], None, predictions=dets)  # detections on the wrong images
    assert swapped.threshold == 1.0 and swapped.f1 == 0.0
    assert [len(p) for p in predict_dataset(model, dicts[:1], lambda d: {"k": 1})] == [2]
    with pytest.raises(ValueError, match="1 predictions for 2 images"):
        calibrate_threshold(model, dicts, None, predictions=dets[:1])


def _images_without_annotations(names):
    return [{"file_name": "a.png"}, {"file_name": "b.png", "annotations": []}]


def test_a_config_without_a_test_set_with_ground_truth_is_no_validation_set():
    """Bug caught: a config without dataloader.test failing with an AttributeError deep inside, which the
    demo cannot tell from a bug (it falls back to its default on NoValidationSet only)."""
    with pytest.raises(NoValidationSet, match="no dataloader.test"):
        config_test_set(OmegaConf.create({"dataloader": {"train": {}}}))
    with pytest.raises(NoValidationSet, match="no dataloader.test"):
        config_test_set(OmegaConf.create({}))
    unlabelled = OmegaConf.create({"dataloader": {"test": {
        "dataset": {"_target_": f"{__name__}._images_without_annotations", "names": "toy"},
        "mapper": {"_target_": "builtins.dict"}}}})
    with pytest.raises(NoValidationSet, match="the first 2 images of toy have no annotations"):
        config_test_set(unlabelled)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        config_test_set(unlabelled, num_images=0)
