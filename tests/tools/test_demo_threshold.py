"""tools/demo.py draws with the rule of tools/visualize_predictions.py (issue 23): by default the F1-optimal
threshold on the config's test set (sd_detr.evaluation.score_threshold.threshold_from_config), Detectron2's
0.5 only where no validation set is at hand (and it says so), --confidence-threshold above both."""
import json
import os
import shutil

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import DETRCheckpointer
from sd_detr.evaluation import score_threshold
from sd_detr.evaluation.score_threshold import DEFAULT_SCORE_FLOOR, predict_dataset
from sd_detr.visualization import demo
from sd_detr.visualization.predictions import visualize_predictions

from ..utils import REPO

TINY = f"{REPO}/projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"


def _checkpoint(path):
    """Tiny Conditional DETR, seed 0, its class bias at 0 instead of the focal prior (-4.6), so that the
    untrained scores spread around 0.5 instead of all lying below the score floor (0.05)."""
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model)
    with torch.no_grad():
        model.class_embed.bias.zero_()
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def _inside(xyxy, width, height):
    """The box lies in the image and is more than 4 px wide and high (the data checks keep it as it is)."""
    x0, y0, x1, y1 = xyxy
    return x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height and x1 - x0 > 4 and y1 - y0 > 4


def _ground_truth_from_the_models_own_boxes(root, checkpoint, ranks_per_image):
    """Rewrite the val annotations under ``root``: image i's ground truth = the model's own (clipped)
    detections at ``ranks_per_image[i]`` (ranks in score order among the boxes lying inside the image),
    so that the F1-optimal threshold is a score strictly between the floor and 1."""
    cfg = LazyConfig.load(TINY)
    cfg.train.device = "cpu"
    model = instantiate(cfg.model)
    DETRCheckpointer(model, strict=True).load(checkpoint)
    dicts = instantiate(cfg.dataloader.test.dataset)
    preds = predict_dataset(model, dicts, instantiate(cfg.dataloader.test.mapper))
    json_file = os.path.join(root, "annotations", "instances_val.json")
    with open(json_file) as f:
        coco = json.load(f)
    cat_ids = sorted(c["id"] for c in coco["categories"])
    by_file = {os.path.basename(d["file_name"]): (d, p) for d, p in zip(dicts, preds)}
    annotations = []
    for k, image in enumerate(coco["images"]):
        _, p = by_file[os.path.basename(image["file_name"])]
        inside = [i for i in torch.argsort(p.scores, descending=True).tolist()
                  if _inside(p.pred_boxes.tensor[i].tolist(), image["width"], image["height"])]
        for r in ranks_per_image[k % len(ranks_per_image)]:
            x0, y0, x1, y1 = p.pred_boxes.tensor[inside[r]].tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "iscrowd": 0,
                                "category_id": cat_ids[int(p.pred_classes[inside[r]])],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    coco["annotations"] = annotations
    with open(json_file, "w") as f:
        json.dump(coco, f)


@pytest.fixture
def calibrated(synthetic_root, tmp_path, monkeypatch):
    """(checkpoint, output folder) with a copy of the synthetic data whose val ground truth is made of the
    model's own boxes, under $SD_DETR_SYNTHETIC_ROOT."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", str(root))
    checkpoint = _checkpoint(tmp_path / "tiny.pth")
    # images differ in how many of their boxes are right: the threshold depends on which images are used
    _ground_truth_from_the_models_own_boxes(str(root), checkpoint, [[0], [0, 1, 2, 3, 4, 5], [1, 3]])
    return checkpoint, tmp_path


def _visualize_threshold(checkpoint, tmp_path, **extra):
    out = visualize_predictions(TINY, checkpoint, str(tmp_path / "vis.png"), num_images=1, **extra,
                                opts=["train.device=cpu"])
    return out["threshold"]


def test_demo_default_threshold_is_visualize_predictions_threshold_for_the_same_model_and_test_set(calibrated):
    """Bug caught: demo.py drawing with its own fixed 0.5 (nothing drawn for the demo model), or choosing on
    other images than visualize_predictions.py (another number of test images, --calibration-images
    ignored)."""
    checkpoint, tmp_path = calibrated
    predictor, _ = demo.build_predictor(TINY, ["train.device=cpu"], checkpoint=checkpoint)
    for n in (None, 2):  # the default number of test images (200: all 6 here), and --calibration-images 2
        extra = {} if n is None else {"calibration_images": n}
        expected = _visualize_threshold(checkpoint, tmp_path, **extra)
        threshold, source = demo.choose_threshold(predictor, num_images=n)
        assert threshold == expected, (n, source)
        assert DEFAULT_SCORE_FLOOR < threshold < 1.0 and threshold != demo.FALLBACK_THRESHOLD, source
        assert "F1-optimal" in source and "sd_detr_synthetic_val" in source
        assert f"on {6 if n is None else n} images" in source
        if n is None:
            on_all_images = threshold
    assert threshold != on_all_images  # so that the check above tells the numbers of images apart


def test_demo_prints_the_threshold_it_draws_with_and_where_it_came_from(calibrated, capsys, monkeypatch):
    """Bug caught: the chosen threshold computed but not used for drawing, or not printed."""
    checkpoint, tmp_path = calibrated
    predictor, _ = demo.build_predictor(TINY, ["train.device=cpu"], checkpoint=checkpoint)
    expected, _ = demo.choose_threshold(predictor)
    val = os.path.join(os.environ["SD_DETR_SYNTHETIC_ROOT"], "val")
    seen = []
    real_draw = demo.draw
    monkeypatch.setattr(demo, "draw", lambda p, m, bgr, t: seen.append(t) or real_draw(p, m, bgr, t))
    status = demo.run_demo(config_file=TINY, checkpoint=checkpoint, output=str(tmp_path / "o.png"),
                           inputs=[os.path.join(val, sorted(os.listdir(val))[0])], opts=["train.device=cpu"])
    assert status == 0 and seen == [expected]
    printed = capsys.readouterr().out
    assert f"drawing threshold: score >= {expected:.3f}, the F1-optimal threshold on 6 images" in printed


def test_an_explicit_confidence_threshold_wins_and_skips_the_calibration(calibrated, monkeypatch):
    """Bug caught: --confidence-threshold ignored (the chosen threshold drawn instead), or the test set
    still run through the model for nothing."""
    checkpoint, _ = calibrated
    predictor, _ = demo.build_predictor(TINY, ["train.device=cpu"], checkpoint=checkpoint)

    def fail(*args, **kwargs):
        raise AssertionError("calibrated although a threshold was given")

    monkeypatch.setattr(score_threshold, "threshold_from_config", fail)
    threshold, source = demo.choose_threshold(predictor, given=0.9)
    assert threshold == 0.9 and "--confidence-threshold" in source
    # the check of --confidence-threshold (tools/demo.py's argparse type; test_demo_onnx runs the tool's refusal)
    assert demo.confidence_threshold("0.25") == 0.25
    for bad in ("1.5", "-0.1", "high"):
        with pytest.raises(ValueError, match=r"--confidence-threshold must be a number in \[0, 1\]"):
            demo.confidence_threshold(bad)
    assert demo.calibration_images("3") == 3
    with pytest.raises(ValueError, match="--calibration-images must be a positive integer"):
        demo.calibration_images("0")


def test_without_a_validation_set_the_demo_falls_back_to_detectron2s_default_and_says_why(tmp_path, capsys):
    """Bug caught: a test set that cannot be loaded (here COCO val, not downloaded) crashing the demo, or the
    fallback taken silently; a yacs config or an export taking some other default."""
    predictor, _ = demo.build_predictor(TINY, ["train.device=cpu", "dataloader.test.dataset.names=coco_2017_val"],
                                        checkpoint=_checkpoint(tmp_path / "tiny.pth"))
    threshold, source = demo.choose_threshold(predictor)
    assert threshold == demo.FALLBACK_THRESHOLD == 0.5
    assert "Detectron2's default" in source and "FileNotFoundError" in source and "coco" in source
    threshold, source = demo.choose_threshold(predictor, lazy_config=False)
    assert threshold == 0.5 and "yacs config or an --onnx export" in source
    no_test_set = LazyConfig.load(TINY)
    del no_test_set.dataloader["test"]
    predictor.cfg = no_test_set
    threshold, source = demo.choose_threshold(predictor)
    assert threshold == 0.5 and "no dataloader.test" in source
