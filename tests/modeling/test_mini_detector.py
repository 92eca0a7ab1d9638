"""SD-DETR's mini-detector: per-location priors, top-N selection of non-padded locations, detached
anchors and queries, and its predictions handed to the criterion."""
import torch

from sd_detr.modeling import EncoderMemory, MiniDetector, MiniDetectorQueries
from sd_detr.modeling.queries.mini_detector import feature_valid_sizes
from sd_detr.modeling.structures import Queries

C, K = 32, 3


def _memory(h=4, w=5, valid=((4, 5), (3, 2)), seed=0, requires_grad=False):
    """Two images on a padded h x w map; ``valid`` = (rows, cols) of each unpadded image."""
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(len(valid), h * w, C, generator=g, requires_grad=requires_grad)
    mask = torch.ones(len(valid), h, w, dtype=torch.bool)
    for i, (vh, vw) in enumerate(valid):
        mask[i, :vh, :vw] = False
    sizes = torch.tensor([[vh * 16.0, vw * 16.0] for vh, vw in valid])
    return EncoderMemory(memory=memory, pos=torch.zeros_like(memory), mask=mask.flatten(1), spatial_shape=(h, w),
                         stride=16, image_sizes=sizes)


def _detector():
    torch.manual_seed(0)
    return MiniDetector(d_model=C, num_classes=K, num_convs=2, norm_groups=8, anchor_size=0.05, anchor_stride=8)


def test_priors_are_cell_centres_of_the_unpadded_image_with_stride_proportional_size():
    mem = _memory()
    assert feature_valid_sizes(mem).tolist() == [[5, 4], [2, 3]]
    priors = _detector().priors(mem).view(2, 4, 5, 4)
    # image 1: 2 valid columns, 3 valid rows -> cell (row 1, col 0) is centred at (0.5 / 2, 1.5 / 3)
    assert torch.allclose(priors[1, 1, 0], torch.tensor([0.25, 0.5, 0.1, 0.1]))
    assert torch.allclose(priors[0, 3, 4], torch.tensor([4.5 / 5, 3.5 / 4, 0.1, 0.1]))


def test_untrained_boxes_are_the_priors_and_class_bias_the_focal_prior():
    mem = _memory()
    det = _detector()
    dense = det(mem)
    assert dense.logits.shape == (2, 20, K) and dense.boxes.shape == (2, 20, 4)
    valid = ~mem.mask
    assert torch.allclose(dense.boxes[valid], det.priors(mem)[valid], atol=1e-5)
    assert torch.allclose(det.class_head.bias.sigmoid(), torch.full((K,), 0.01))


def test_top_n_selection_takes_the_highest_max_class_scores_among_non_padded_locations():
    mem = _memory()
    init = MiniDetectorQueries(_detector(), num_queries=4, branches=("cls", "loc"))
    logits = torch.full((2, 20, K), -5.0)
    logits[0, [7, 3, 12, 19, 0], [0, 2, 1, 0, 2]] = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5])
    logits[1, 19, 1] = 9.0  # padded in image 1 (row 3): never selected
    logits[1, [0, 6, 11, 1], [2, 2, 0, 1]] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    index = init.select(logits, mem.mask)
    assert index[0].tolist() == [7, 3, 12, 19]
    assert index[1].tolist() == [1, 11, 6, 0]
    assert not mem.mask.gather(1, index).any()


def test_fewer_valid_locations_than_queries_gives_that_many_queries():
    mem = _memory(valid=((4, 5), (2, 2)))
    queries = MiniDetectorQueries(_detector(), num_queries=10)(mem)
    assert queries.anchors.shape == (2, 4, 4)
    assert not mem.mask.gather(1, queries.extra["index"]).any()


def test_anchors_and_content_are_the_selected_predictions_detached_and_extra_outputs_keep_gradients():
    mem = _memory(requires_grad=True)
    init = MiniDetectorQueries(_detector(), num_queries=6, branches=("cls", "loc"), name="mini")
    q = init(mem)
    dense = init.mini_detector(mem)
    idx = q.extra["index"]
    b = torch.arange(2)[:, None]
    assert torch.allclose(q.anchors, dense.boxes[b, idx])
    assert torch.allclose(q.branch_content["cls"], dense.features["cls"][b, idx])
    assert torch.allclose(q.branch_content["loc"], dense.features["loc"][b, idx])
    assert not q.anchors.requires_grad and not any(c.requires_grad for c in q.branch_content.values())
    extra = q.extra_outputs["mini"]
    assert extra["pred_logits"].shape == (2, 20, K) and extra["pred_logits"].requires_grad
    extra["pred_logits"].sum().backward()  # (the box head starts at 0: no gradient through it yet)
    assert mem.memory.grad is not None and mem.memory.grad.abs().sum() > 0


def test_shared_branch_starts_from_the_encoder_memory_with_padding_zeroed():
    mem = _memory()
    q = MiniDetectorQueries(_detector(), num_queries=3, branches=("shared",))(mem)
    expected = mem.memory.gather(1, q.extra["index"].unsqueeze(-1).expand(-1, -1, C))
    assert list(q.branch_content) == ["shared"] and torch.allclose(q.branch_content["shared"], expected)
