"""SD-DETR's task-aware query generation: points inside their boxes, bilinear feature lookup, the mean
feature updating the content query and the mean offset moving the reference."""
import torch
from torchvision.ops import roi_align

from sd_detr.modeling import EncoderMemory, TaskAwareQueryGenerator
from sd_detr.modeling.queries.task_aware import bilinear_sample, boxes_to_feature_cells
from sd_detr.modeling.structures import Queries

C = 16


def _memory(h=6, w=8, valid=((6, 8), (4, 5)), seed=0):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(len(valid), h * w, C, generator=g)
    mask = torch.ones(len(valid), h, w, dtype=torch.bool)
    for i, (vh, vw) in enumerate(valid):
        mask[i, :vh, :vw] = False
    return EncoderMemory(memory=memory, pos=torch.zeros_like(memory), mask=mask.flatten(1), spatial_shape=(h, w),
                         stride=32, image_sizes=torch.tensor([[vh * 32.0, vw * 32.0] for vh, vw in valid]))


def _anchors(bsz=2, nq=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(bsz, nq, 2, generator=g) * 0.6 + 0.2
    size = torch.rand(bsz, nq, 2, generator=g) * 0.3 + 0.1
    return torch.cat([centre, size], -1)


def _generator(num_points=4, seed=0, randomise=True):
    torch.manual_seed(seed)
    taq = TaskAwareQueryGenerator(d_model=C, branches=("cls", "loc"), num_points=num_points, roi_size=3)
    if randomise:  # move the points away from their initial ring, as training would
        with torch.no_grad():
            for head in taq.point_heads.values():
                head.mlp.layers[-1].weight.normal_(0, 0.5)
    return taq


def _direct_bilinear(fmap, x, y):
    """Value of a [C, H, W] map at continuous (x, y) in cells (cell centres at +0.5), zero outside."""
    h, w = fmap.shape[-2:]
    x, y = x - 0.5, y - 0.5
    x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
    out = torch.zeros(fmap.shape[0])
    for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
        for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            if 0 <= xi < w and 0 <= yi < h:
                out += wx * wy * fmap[:, yi, xi]
    return out


def test_bilinear_sample_equals_a_direct_bilinear_lookup_on_a_toy_map():
    fmap = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5) ** 1.5  # B=2, C=3, H=4, W=5
    valid = torch.tensor([[5.0, 4.0], [3.0, 2.0]])  # (valid w, valid h): image 1 covers 3 x 2 cells
    points = torch.tensor([[[[0.5, 0.5], [0.13, 0.91], [0.0, 0.0], [0.97, 0.42]]],
                           [[[0.5, 0.5], [0.31, 0.77], [0.99, 0.01], [0.05, 0.6]]]])  # [B, Q=1, M=4, 2]
    got = bilinear_sample(fmap, points, valid)
    assert got.shape == (2, 1, 4, 3)
    for b in range(2):
        for m in range(4):
            x, y = (points[b, 0, m] * valid[b]).tolist()
            assert torch.allclose(got[b, 0, m], _direct_bilinear(fmap[b], x, y), rtol=1e-5, atol=1e-3)
    # the centre of image 1 (3 x 2 cells) is the centre of column 1, half-way between rows 0 and 1
    assert torch.allclose(got[1, 0, 0], (fmap[1, :, 0, 1] + fmap[1, :, 1, 1]) / 2)


def test_points_stay_inside_their_anchor_boxes():
    mem, anchors = _memory(), _anchors()
    taq = _generator(num_points=6)
    content = {b: torch.zeros(2, 5, C) for b in ("cls", "loc")}
    out = taq(mem, Queries(anchors=anchors, branch_content=content))
    for b in ("cls", "loc"):
        pts = out.points[b]  # [B, Q, M, 2]
        lo = (anchors[..., None, :2] - anchors[..., None, 2:] / 2)
        hi = (anchors[..., None, :2] + anchors[..., None, 2:] / 2)
        assert ((pts > lo) & (pts < hi)).all()
        assert pts.std(dim=2).min() > 0  # the points of a box differ
    assert not torch.allclose(out.points["cls"], out.points["loc"])  # each branch has its own points


def test_untrained_points_form_a_ring_around_the_centre_with_zero_mean_offset():
    mem, anchors = _memory(), _anchors()
    out = _generator(num_points=4, randomise=False)(mem, Queries(anchors=anchors, branch_content={b: torch.zeros(2, 5, C) for b in ("cls", "loc")}))
    assert torch.allclose(out.offsets["cls"], torch.zeros(2, 5, 2), atol=1e-6)
    first = out.points["loc"][..., 0, :]  # angle 0: half-way to the right edge
    expected = anchors[..., :2] + torch.stack([anchors[..., 2] / 4, torch.zeros_like(anchors[..., 2])], -1)
    assert torch.allclose(first, expected, atol=1e-6)


def test_content_is_updated_by_the_mean_point_feature_and_the_offset_is_the_mean_point_offset():
    mem, anchors = _memory(), _anchors()
    taq = _generator(num_points=5)
    content = {b: torch.randn(2, 5, C) for b in ("cls", "loc")}
    out = taq(mem, Queries(anchors=anchors, branch_content=content))
    fmap = mem.as_map(mem.memory.masked_fill(mem.mask.unsqueeze(-1), 0))
    valid = torch.tensor([[8.0, 6.0], [5.0, 4.0]])
    for b in ("cls", "loc"):
        pts = out.points[b]
        mean_feat = bilinear_sample(fmap, pts, valid).mean(2)
        expected = taq.content_norm[b](content[b] + taq.content_proj[b](mean_feat))
        assert torch.allclose(out.branch_content[b], expected, atol=1e-6)
        assert torch.allclose(out.offsets[b], (pts - anchors[..., None, :2]).mean(2), atol=1e-6)


def test_roi_features_are_roi_align_of_the_anchor_in_feature_cells():
    mem, anchors = _memory(), _anchors()
    taq = _generator()
    fmap = mem.as_map()
    valid = torch.tensor([[8.0, 6.0], [5.0, 4.0]])
    cells = boxes_to_feature_cells(anchors, valid)
    # image 1 is 5 x 4 cells: a box (cx, cy, w, h) = (0.5, 0.5, 0.2, 0.5) spans x 2..3, y 1..3
    assert torch.allclose(boxes_to_feature_cells(torch.tensor([[[0.5, 0.5, 0.2, 0.5]]]), valid[1:]),
                          torch.tensor([[[2.0, 1.0, 3.0, 3.0]]]))
    got = taq.roi_features(fmap, anchors, valid)
    expected = roi_align(fmap, [cells[0], cells[1]], output_size=3, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    assert got.shape == (10, C, 3, 3) and torch.allclose(got, expected)


def test_sampling_positions_receive_gradients():
    mem, anchors = _memory(), _anchors()
    taq = _generator()
    out = taq(mem, Queries(anchors=anchors, branch_content={b: torch.zeros(2, 5, C) for b in ("cls", "loc")}))
    g = torch.Generator().manual_seed(3)
    sum((v * torch.randn(v.shape, generator=g)).sum() for v in out.branch_content.values()).backward()
    for head in taq.point_heads.values():
        assert head.mlp.layers[-1].weight.grad.abs().sum() > 0


def test_roi_feature_gradient_equals_torchvision_roi_align_gradient():
    """Bug caught: the separable input gradient of the training path (_RoIAlignSeparableGrad) off from
    torchvision's backward: a sample position, the edge clamping, the out-of-map test, the adaptive
    sample count or the per-image sum. Boxes: inside, across the edges, beyond the map, empty, the
    whole map; float64 so that only float rounding separates the two."""
    from sd_detr.modeling.queries.task_aware import _RoIAlignSeparableGrad

    g = torch.Generator().manual_seed(0)
    for (h, w), ratio in (((6, 8), -1), ((25, 38), -1), ((5, 7), 2), ((1, 1), -1)):
        fm = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
        centre = (torch.rand(2, 11, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2) * torch.tensor([w, h])
        size = torch.rand(2, 11, 2, generator=g, dtype=torch.float64) * 1.2 * torch.tensor([w, h])
        size[:, :2] = 0
        cells = torch.cat([centre - size / 2, centre + size / 2], -1)
        cells[0, 3] = torch.tensor([0.0, 0.0, w, h])
        cells[1, 4] = torch.tensor([w - 1.0, h - 1.0, w + 3.0, h + 3.0])
        grad_out = torch.randn(22, 3, 7, 7, generator=g, dtype=torch.float64)
        ref = roi_align(fm, list(cells.unbind(0)), output_size=7, spatial_scale=1.0, sampling_ratio=ratio, aligned=True)
        out = _RoIAlignSeparableGrad.apply(fm, cells, 7, ratio)
        assert torch.equal(out, ref)
        (expected,) = torch.autograd.grad(ref, fm, grad_out)
        (got,) = torch.autograd.grad(out, fm, grad_out)
        assert expected.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_training_path_keeps_the_roi_features_and_their_gradient():
    """Bug caught: the generator's training path (gradient wanted, CPU) giving other RoI features or
    another memory gradient than torchvision's roi_align (float32: equal to rounding)."""
    taq = _generator()
    mem = _memory()
    memory = mem.memory.clone().requires_grad_()
    mem = EncoderMemory(memory=memory, pos=mem.pos, mask=mem.mask, spatial_shape=mem.spatial_shape,
                        stride=mem.stride, image_sizes=mem.image_sizes)
    from sd_detr.modeling.queries.mini_detector import feature_valid_sizes, masked_memory

    fm = mem.as_map(masked_memory(mem))
    valid = feature_valid_sizes(mem)
    anchors = _anchors()
    rois = taq.roi_features(fm, anchors, valid)
    cells = boxes_to_feature_cells(anchors, valid)
    ref = roi_align(fm, list(cells.unbind(0)), output_size=taq.roi_size, spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)
    assert rois.grad_fn is not None and "RoIAlignSeparableGrad" in type(rois.grad_fn).__name__
    assert torch.equal(rois, ref)
    grad_out = torch.randn(rois.shape, generator=torch.Generator().manual_seed(2))
    (got,) = torch.autograd.grad(rois, memory, grad_out, retain_graph=True)
    (expected,) = torch.autograd.grad(ref, memory, grad_out)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # inference: torchvision's op itself
        assert torch.equal(taq.roi_features(fm, anchors, valid), ref)
