"""SD-DETR's wiring, pinned by what the paper says flows where (Sec. 3.2, Fig. 2-3), not by module counts.

- DFL (Sec. 3.2.1, Eq. 3): the classification branch continues from the q_cls half of the shared
  self-attention and the localisation branch from the q_loc half; each branch's positional embedding is
  the sine embedding of its own (task-aware) reference point; the class head reads the classification
  branch, the box head the localisation branch.
- TAQ (Sec. 3.2.2): the mean offset of a branch's discriminative points moves that branch's reference,
  and is trained through it (not detached).
- the mini-detector's top-N anchors come from the image, never from padding.
- TAL (Eq. 6-7) with the yacs keys MODEL.SD_DETR.TAL_ALPHA/BETA/GAMMA in their places; repeated positives
  in every decoder layer but the last unless MODEL.SD_DETR.REPEAT_LAST_LAYER.

The tests do not depend on the width the shared self-attention attends in. Several silence it (zero
every parameter of every ``self_attn``: its output is then 0 at any width), which leaves the one path by
which the branches still meet: the LayerNorm(2C) over the concatenation. That norm's statistics do not
change when the channels of one half are permuted, so a branch's output may then depend on its own
query only.
"""
import dataclasses
import math

import torch
from torch import nn
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.config import add_sd_detr_config
from sd_detr.layers import sine_embedding
from sd_detr.modeling import (Assignment, HungarianMatcher, MiniDetector, MiniDetectorQueries,
                              TaskAwareQueryGenerator)
from sd_detr.modeling.decoder import DisentangledDecoder
from sd_detr.modeling.meta_arch.sd_detr import set_batched_branches
from sd_detr.modeling.losses import box_losses
from sd_detr.modeling.structures import Queries

from ..utils import REPO, padded_encoder_memory, random_batch, random_encoder_memory, tiny_synthetic_yacs

C, H, F = 16, 2, 32
TINY = f"{REPO}/projects/sd_detr/configs/sd_detr_tiny_synthetic.py"


# ------------------------------------------------------------------ helpers
def _memory(seed=0):
    return random_encoder_memory(C, seed=seed)


def _queries(bsz=2, nq=5, seed=1, offsets=True):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.cat([torch.rand(bsz, nq, 2, generator=g) * 0.5 + 0.25,
                         torch.rand(bsz, nq, 2, generator=g) * 0.3 + 0.1], -1)
    q = Queries(anchors=anchors, branch_content={b: torch.randn(bsz, nq, C, generator=g) for b in ("cls", "loc")})
    if offsets:
        q.offsets = {b: (torch.rand(bsz, nq, 2, generator=g) - 0.5) * 0.2 for b in ("cls", "loc")}
    return q


def _decoder(layers=2, shared_self_attn=True):
    torch.manual_seed(0)
    return DisentangledDecoder(num_layers=layers, d_model=C, nhead=H, dim_feedforward=F, dropout=0.0,
                               branches=("cls", "loc"), shared_self_attn=shared_self_attn).eval()


def _silence_self_attention(decoder):
    """Zero every parameter of every decoder self-attention (its output is 0 whatever its width)."""
    with torch.no_grad():
        for layer in decoder.layers:
            for p in layer.self_attn.parameters():
                p.zero_()
    return decoder


def _decouple_branches(decoder):
    """Silence every self-attention and replace its residual norm by the identity: the branches then
    meet nowhere inside the decoder (the LayerNorm(2C) alone would still couple them through its
    statistics' gradients)."""
    _silence_self_attention(decoder)
    for layer in decoder.layers:
        for i in range(len(layer.norm1)):
            layer.norm1[i] = nn.Identity()
    return decoder


def _permute_channels(x, seed=7):
    return x[..., torch.randperm(x.shape[-1], generator=torch.Generator().manual_seed(seed))]


def _with(q, branch, field, value):
    """A copy of the queries with ``getattr(q, field)[branch]`` replaced (the others shared)."""
    return dataclasses.replace(q, **{field: {**getattr(q, field), branch: value}})


def _tiny_model():
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model).eval()
    with torch.no_grad():  # the box head's last layer starts at 0: no gradient would reach box_hidden
        model.bbox_embed.layers[-1].weight.normal_(0, 0.1)
    return model


def _grad_norm(output, params):
    grads = torch.autograd.grad(output, params, retain_graph=True, allow_unused=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def _branch_params(model, b):
    """The last decoder layer's cross-attention and FFN of branch b, and the branch's final norm."""
    last = model.decoder.layers[-1]
    return list(last.cross_attn[b].parameters()) + list(last.ffn[b].parameters()) + list(model.decoder.norm[b].parameters())


# ------------------------------------------------------------------ DFL: each branch keeps its own half
def test_each_branch_continues_from_its_own_half_of_the_shared_self_attention():
    """Bug caught: the q_cls and q_loc halves swapped (or mixed up) after the shared self-attention's
    split, or a branch's cross-attention / query scale reading the other branch's features."""
    dec, mem = _silence_self_attention(_decoder(layers=2)), _memory()
    q = _queries()
    base = dec(mem, q)
    loc_permuted = dec(mem, _with(q, "loc", "branch_content", _permute_channels(q.branch_content["loc"])))
    cls_permuted = dec(mem, _with(q, "cls", "branch_content", _permute_channels(q.branch_content["cls"])))
    # the LayerNorm(2C) statistics are unchanged, so the other branch must be exactly unchanged
    assert torch.allclose(loc_permuted.hidden, base.hidden, atol=1e-5)
    assert torch.allclose(cls_permuted.box_hidden, base.box_hidden, atol=1e-5)
    # ... while the branch itself does see its query
    assert (loc_permuted.box_hidden - base.box_hidden).abs().max() > 1e-2
    assert (cls_permuted.hidden - base.hidden).abs().max() > 1e-2


def test_shared_self_attention_reads_the_cls_then_loc_content_and_their_own_position_embeddings():
    """Bug caught: the concatenation in the wrong order, or the self-attention's positional embedding of
    a branch computed from the other branch's (or the anchor's unshifted) reference."""
    dec, mem, q = _decoder(layers=1), _memory(), _queries()
    seen = {}
    dec.layers[0].self_attn[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0], pos=args[1]))
    dec(mem, q)
    refs = {b: (q.anchors[..., :2] + q.offsets[b]).clamp(0, 1) for b in ("cls", "loc")}
    assert torch.allclose(seen["x"], torch.cat([q.branch_content["cls"], q.branch_content["loc"]], -1))
    expected_pos = torch.cat([sine_embedding(refs["cls"], C // 2), sine_embedding(refs["loc"], C // 2)], -1)
    assert torch.allclose(seen["pos"], expected_pos, atol=1e-6)


def test_each_branch_spatial_query_is_its_own_reference_embedding_scaled_by_its_own_output():
    """Bug caught: the spatial query of a branch from the other branch's reference, Conditional DETR's
    query scale lambda_q dropped after the first layer (or applied in it), or computed from the other
    branch's decoder output."""
    dec, mem, q = _decoder(layers=2), _memory(), _queries()
    set_batched_branches(dec, False)  # the hooks read each branch's cross-attention call
    spatial, outputs = {}, []
    for b in range(2):
        for i, layer in enumerate(dec.layers):
            layer.cross_attn[b].register_forward_pre_hook(
                lambda m, args, key=(i, b): spatial.update({key: args[3]}))
    for layer in dec.layers:
        layer.register_forward_hook(lambda m, args, out: outputs.append(out))
    dec(mem, q)
    for b, name in enumerate(("cls", "loc")):
        pe = sine_embedding((q.anchors[..., :2] + q.offsets[name]).clamp(0, 1), C // 2)
        assert torch.allclose(spatial[(0, b)], pe, atol=1e-6)  # x1 in the first layer (Conditional DETR)
        scaled = pe * dec.query_scale[b](outputs[0][b])
        assert torch.allclose(spatial[(1, b)], scaled, atol=1e-5)
        assert (scaled - pe).abs().max() > 1e-2


def test_a_branch_position_embedding_follows_its_own_reference_offset_only():
    """Bug caught: a branch's positional / spatial query not depending on its own task-aware reference
    (offsets ignored, or taken from the other branch)."""
    dec, mem = _decouple_branches(_decoder(layers=2)), _memory()
    q = _queries()
    base = dec(mem, q)
    loc_moved = dec(mem, _with(q, "loc", "offsets", q.offsets["loc"] + 0.1))
    cls_moved = dec(mem, _with(q, "cls", "offsets", q.offsets["cls"] - 0.1))
    assert (loc_moved.box_hidden - base.box_hidden).abs().max() > 1e-3
    assert torch.allclose(loc_moved.hidden, base.hidden, atol=1e-5)
    assert (cls_moved.hidden - base.hidden).abs().max() > 1e-3
    assert torch.allclose(cls_moved.box_hidden, base.box_hidden, atol=1e-5)
    pts = loc_moved.extra["reference_points"]
    assert torch.allclose(pts["loc"][1], (q.anchors[..., :2] + q.offsets["loc"] + 0.1).clamp(0, 1))


def test_reference_offsets_are_trained_through_the_decoder():
    """Bug caught: the task-aware offsets detached where the decoder adds them to the anchor centre (the
    localisation offset would then never learn from the box loss)."""
    dec, mem, q = _decoder(layers=2), _memory(), _queries()
    for b in ("cls", "loc"):
        q.offsets[b].requires_grad_(True)
    out = dec(mem, q)
    (g_loc,) = torch.autograd.grad(out.box_hidden[-1].pow(2).sum(), [q.offsets["loc"]], retain_graph=True)
    (g_cls,) = torch.autograd.grad(out.hidden[-1].pow(2).sum(), [q.offsets["cls"]])
    assert g_loc.abs().sum() > 0 and g_cls.abs().sum() > 0


def test_references_are_clamped_to_the_image():
    """Bug caught: a reference pushed outside [0, 1] by its offset is not clamped (its sine embedding
    would wrap around to the other side of the image)."""
    dec, mem, q = _decoder(layers=1), _memory(), _queries()
    q.offsets["loc"] = torch.full_like(q.offsets["loc"], 0.9)
    q.offsets["cls"] = torch.full_like(q.offsets["cls"], -0.9)
    pts = dec(mem, q).extra["reference_points"]
    assert torch.all(pts["loc"] == 1.0) and torch.all(pts["cls"] == 0.0)


def test_padded_memory_cannot_change_either_branch():
    """Bug caught: a branch's cross-attention attending to padded locations (the padding mask not passed
    on)."""
    dec, mem, q = _decoder(layers=2), _memory(), _queries()
    noisy = _memory()
    g = torch.Generator().manual_seed(3)
    noisy.memory = torch.where(mem.mask[..., None], 50 * torch.randn(mem.memory.shape, generator=g), mem.memory)
    noisy.pos = torch.where(mem.mask[..., None], 50 * torch.randn(mem.pos.shape, generator=g), mem.pos)
    a, b = dec(mem, q), dec(noisy, q)
    assert torch.allclose(a.hidden, b.hidden, atol=1e-5) and torch.allclose(a.box_hidden, b.box_hidden, atol=1e-5)


# ------------------------------------------------------------------ TAQ offsets carry gradient
def _taq_memory():
    return padded_encoder_memory(C, (6, 8), (4, 5), 32, [[192.0, 256.0], [128.0, 160.0]])


def test_each_branch_reference_offset_is_its_own_points_mean_offset_with_gradient_to_its_point_head():
    """Bug caught: TAQ's offsets (or points) detached, so the reference never learns; or a branch's
    offset computed by the other branch's point head."""
    torch.manual_seed(0)
    taq = TaskAwareQueryGenerator(d_model=C, branches=("cls", "loc"), num_points=4, roi_size=3)
    with torch.no_grad():
        for head in taq.point_heads.values():
            head.mlp.layers[-1].weight.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    anchors = torch.cat([torch.rand(2, 5, 2, generator=g) * 0.5 + 0.25, torch.rand(2, 5, 2, generator=g) * 0.3 + 0.1], -1)
    out = taq(_taq_memory(), Queries(anchors=anchors, branch_content={b: torch.zeros(2, 5, C) for b in ("cls", "loc")}))
    for b, other in (("cls", "loc"), ("loc", "cls")):
        assert out.offsets[b].requires_grad and out.points[b].requires_grad
        target = out.offsets[b].pow(2).sum()
        assert _grad_norm(target, list(taq.point_heads[b].parameters())) > 0
        assert _grad_norm(target, list(taq.point_heads[other].parameters())) == 0
        assert _grad_norm(out.points[b].pow(2).sum(), list(taq.point_heads[b].parameters())) > 0


# ------------------------------------------------------------------ the detector: heads read their branch
def test_class_logits_are_trained_by_the_classification_branch_and_boxes_by_the_localisation_branch():
    """Bug caught: the class head reading the localisation branch or the box head the classification
    branch (in the detector's predict or in the decoder's hidden / box_hidden outputs)."""
    model = _tiny_model()
    outputs, _, _ = model.forward_outputs(random_batch(5, sizes=((96, 128),), with_instances=False))
    cls_params, loc_params = _branch_params(model, 0), _branch_params(model, 1)
    # the last layer's branches meet nowhere after their cross-attention: each head reaches only its own
    assert _grad_norm(outputs["pred_logits"].sum(), cls_params) > 0
    assert _grad_norm(outputs["pred_logits"].sum(), loc_params) == 0
    box_loss = outputs["pred_boxes"].pow(2).sum()
    assert _grad_norm(box_loss, loc_params) > 0
    assert _grad_norm(box_loss, cls_params) == 0


def test_with_the_self_attention_silenced_each_head_trains_only_its_own_task_aware_point_head():
    """Bug caught: TAQ's content / offsets handed to the wrong decoder branch, detached from the loss,
    or a head reading the other branch (each path would show as a gradient in the wrong point head or
    none in the right one)."""
    model = _tiny_model()
    _decouple_branches(model.decoder)
    outputs, _, _ = model.forward_outputs(random_batch(5, sizes=((96, 128),), with_instances=False))
    heads = model.query_init.task_aware.point_heads
    cls_head, loc_head = list(heads["cls"].parameters()), list(heads["loc"].parameters())
    logits, boxes = outputs["pred_logits"].sum(), outputs["pred_boxes"].pow(2).sum()
    assert _grad_norm(logits, cls_head) > 0 and _grad_norm(logits, loc_head) == 0
    assert _grad_norm(boxes, loc_head) > 0 and _grad_norm(boxes, cls_head) == 0


def test_the_loc_reference_offset_alone_moves_the_predicted_boxes():
    """Bug caught: the localisation branch's reference offset not reaching the box output (detached,
    ignored, or used by the classification branch only)."""
    model = _tiny_model()
    _decouple_branches(model.decoder)
    batch = random_batch(5, sizes=((96, 128),), with_instances=False)
    images, mask = model.preprocess_image(batch)
    with torch.no_grad():
        mem = model.encode(images, mask)
        q = model.query_init(mem)
        base = model.predict(model.decoder(mem, q))
        moved = model.predict(model.decoder(mem, _with(q, "loc", "offsets", q.offsets["loc"] + 0.05)))
    assert (moved["pred_boxes"] - base["pred_boxes"]).abs().max() > 1e-6
    assert torch.equal(moved["pred_logits"], base["pred_logits"])


# ------------------------------------------------------------------ mini-detector: no padding in the top-N
def _padded_memory(seed=0):
    """Image 0 fills the 4 x 5 map, image 1 covers 3 x 2 cells of it; stride 16."""
    return padded_encoder_memory(C * 2, (4, 5), (3, 2), 16, [[64.0, 80.0], [48.0, 32.0]], seed)


def test_perturbing_padded_memory_cannot_change_the_anchors_or_the_queries():
    """Bug caught: the mini-detector (its towers or its top-N) or TAQ (RoIAlign, point sampling) reading
    the encoder memory at padded locations: padding would decide which anchors are taken and what they
    contain."""
    d = 2 * C
    torch.manual_seed(0)
    taq = TaskAwareQueryGenerator(d_model=d, branches=("cls", "loc"), num_points=4, roi_size=3)
    init = MiniDetectorQueries(MiniDetector(d_model=d, num_classes=3, num_convs=2, norm_groups=8), num_queries=6,
                               branches=("cls", "loc"), task_aware=taq).eval()
    mem = _padded_memory()
    noisy = _padded_memory()
    g = torch.Generator().manual_seed(5)
    noisy.memory = torch.where(mem.mask[..., None], 50 * torch.randn(mem.memory.shape, generator=g), mem.memory)
    with torch.no_grad():
        a, b = init(mem), init(noisy)
    assert not mem.mask.gather(1, a.extra["index"]).any()  # all six valid cells of image 1, none of its padding
    assert torch.equal(a.extra["index"], b.extra["index"])
    assert torch.allclose(a.anchors, b.anchors)
    valid = ~mem.mask
    assert torch.allclose(a.extra_outputs["mini_detector"]["pred_logits"][valid],
                          b.extra_outputs["mini_detector"]["pred_logits"][valid], atol=1e-5)
    for key in ("branch_content", "offsets"):
        for branch in ("cls", "loc"):
            assert torch.allclose(getattr(a, key)[branch], getattr(b, key)[branch], atol=1e-5), (key, branch)


# ------------------------------------------------------------------ TAL and repeats from the configs
def _yacs(**sd):
    cfg = get_cfg()
    add_sd_detr_config(cfg)
    tiny_synthetic_yacs(cfg, "SDDETR")
    for k, v in sd.items():
        setattr(cfg.MODEL.SD_DETR, k, v)
    return cfg


def test_yacs_task_alignment_loss_puts_alpha_on_the_score_beta_on_the_iou_and_gamma_on_the_error():
    """Bug caught: MODEL.SD_DETR.TAL_ALPHA / TAL_BETA swapped on the way to the loss, or TAL_GAMMA dropped
    (the paper's t = s^alpha u^beta and |t - s|^gamma, Eq. 6-7)."""
    alpha, beta, gamma = 0.3, 0.8, 1.5
    loss = build_model(_yacs(TAL_ALPHA=alpha, TAL_BETA=beta, TAL_GAMMA=gamma)).criterion.class_loss
    x, u = 0.7, 0.5  # query 0: logit 0.7 for class 0, its box has IoU 0.5 with the ground truth
    logits = torch.tensor([[[x, -1.0]]])
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])
    gt = torch.tensor([[0.5, 0.5, 0.1, 0.2]])  # inside the prediction, half its area
    zero = torch.tensor([0])
    a = Assignment(zero, zero, zero, gt, zero, zero, gt)
    s = 1 / (1 + math.exp(-x))
    t = s ** alpha * u ** beta

    def bce(p, y):
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    s_neg = 1 / (1 + math.exp(1.0))
    expected = abs(t - s) ** gamma * bce(s, t) + s_neg ** gamma * bce(s_neg, 0.0)
    assert math.isclose(loss(logits, pred, a, 1.0).item(), expected, rel_tol=1e-5)


def _stages(num_stages=3, num_queries=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"pred_logits": torch.randn(2, num_queries, 5, generator=g),
             "pred_boxes": torch.rand(2, num_queries, 4, generator=g) * 0.4 + 0.3} for _ in range(num_stages)]


TARGETS = [
    {"labels": torch.tensor([0, 3, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.2], [0.5, 0.7, 0.1, 0.1]])},
    {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
]


def _positives_per_stage(criterion, stages):
    return [int(a.box_query.numel()) for a in criterion.assigner(stages, TARGETS, criterion.matcher)]


def test_repeated_positives_stop_before_the_last_layer_unless_configured():
    """Bug caught: repeats applied in the last decoder layer although REPEAT_LAST_LAYER is off (an
    off-by-one in the layer range, or the stage index / negative indices misread), or never applied."""
    num_gt = sum(len(t["labels"]) for t in TARGETS)
    stages = _stages()
    off = build_model(_yacs(NUM_REPEATS=2, REPEAT_LAST_LAYER=False)).criterion
    on = build_model(_yacs(NUM_REPEATS=2, REPEAT_LAST_LAYER=True)).criterion
    assert _positives_per_stage(off, stages) == [2 * num_gt, 2 * num_gt, num_gt]
    assert _positives_per_stage(on, stages) == [2 * num_gt] * 3
    torch.manual_seed(0)
    lazy = instantiate(LazyConfig.load(TINY).model).criterion  # repeat_stages [0, 1] of 3 layers
    assert _positives_per_stage(lazy, stages) == [2 * num_gt, 2 * num_gt, num_gt]
    lazy.assigner.repeat_stages = [-1]  # negative indices count from the last layer
    assert _positives_per_stage(lazy, stages) == [num_gt, num_gt, 2 * num_gt]


def test_last_layer_losses_are_those_of_its_own_one_to_one_matches():
    """Bug caught: the criterion pairing a stage's predictions with another stage's assignment (e.g. the
    final outputs put first), or the last layer's box loss taken from an auxiliary layer."""
    stages = _stages()
    criterion = build_model(_yacs(NUM_REPEATS=2, REPEAT_LAST_LAYER=False)).criterion
    outputs = {**stages[-1], "aux_outputs": stages[:-1]}
    losses = criterion(outputs, TARGETS)
    matches = HungarianMatcher(2.0, 5.0, 2.0)(stages[-1]["pred_logits"], stages[-1]["pred_boxes"], TARGETS)
    expected = box_losses(stages[-1]["pred_boxes"], Assignment.from_matches(matches, TARGETS), num_boxes=4.0)
    assert torch.isclose(losses["loss_bbox"], 5.0 * expected["loss_bbox"])
    assert torch.isclose(losses["loss_giou"], 2.0 * expected["loss_giou"])


def test_the_mini_detector_is_trained_with_the_focal_loss_while_the_decoder_uses_tal():
    """Bug caught: the mini-detector's predictions trained with the decoder's class loss (the
    task-alignment loss) instead of DESTR's focal loss, or its loss weight ignored."""
    from sd_detr.modeling import FocalLoss

    stages = _stages()
    criterion = build_model(_yacs()).criterion  # TAL for the decoder, mini-detector weight 0.1
    g = torch.Generator().manual_seed(9)
    extra = {"pred_logits": torch.randn(2, 20, 5, generator=g), "pred_boxes": torch.rand(2, 20, 4, generator=g) * 0.4 + 0.3}
    outputs = {**stages[-1], "aux_outputs": stages[:-1], "extra_outputs": {"mini_detector": extra}}
    losses = criterion(outputs, TARGETS)
    matches = criterion.matcher(extra["pred_logits"], extra["pred_boxes"], TARGETS)
    focal = FocalLoss(0.25, 2.0)(extra["pred_logits"], extra["pred_boxes"], Assignment.from_matches(matches, TARGETS), 4.0)
    assert torch.isclose(losses["loss_class_mini_detector"], 0.1 * 2.0 * focal)
