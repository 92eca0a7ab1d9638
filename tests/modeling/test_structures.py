"""The typed contract between the parts (sd_detr/modeling/structures.py): every decoder applies the
queries' self-attention mask, the detector hands the training targets to its query initialiser, and a
part combined with the wrong queries says which field is missing."""
import dataclasses

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.layers import MLP
from sd_detr.modeling.decoder import ConditionalDecoder, DABDecoder, DisentangledDecoder, SMCADecoder
from sd_detr.modeling.structures import Assignment, KnownQueries, Queries, self_attn_bias

from ..utils import random_batch, random_encoder_memory

C, Q = 16, 6
GROUP_A, GROUP_B = slice(0, 3), slice(3, 6)


def _block_mask():
    """[Q, Q] True between the two groups of three queries (as between DN-DETR's denoising groups)."""
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    return group[:, None] != group[None, :]


def _queries(kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.cat([torch.rand(2, Q, 2, generator=g) * 0.5 + 0.25, torch.rand(2, Q, 2, generator=g) * 0.3 + 0.1], -1)
    if kind == "learned":
        return Queries(content=torch.randn(2, Q, C, generator=g), pos=torch.randn(2, Q, C, generator=g))
    if kind == "anchors":
        return Queries(content=torch.randn(2, Q, C, generator=g), anchors=anchors)
    return Queries(anchors=anchors, branch_content={b: torch.randn(2, Q, C, generator=g) for b in ("cls", "loc")})


DECODERS = {
    "conditional": (lambda: ConditionalDecoder(num_layers=2, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0), "learned"),
    "dab": (lambda: DABDecoder(num_layers=2, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0), "anchors"),
    "smca": (lambda: SMCADecoder(num_layers=2, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0), "learned"),
    "sd_detr_shared": (lambda: DisentangledDecoder(num_layers=2, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0), "branches"),
    "split_decoder": (lambda: DisentangledDecoder(num_layers=2, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0,
                                                  shared_self_attn=False), "branches"),
}


def _perturb_group_b(q: Queries) -> Queries:
    """The same queries with group B's content changed (group A's inputs untouched)."""
    def moved(x):
        x = x.clone()
        x[:, GROUP_B] += 1.0
        return x
    if q.content is not None:
        return dataclasses.replace(q, content=moved(q.content))
    return dataclasses.replace(q, branch_content={b: moved(v) for b, v in q.branch_content.items()})


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_every_decoder_applies_the_self_attention_mask_of_its_queries(name):
    """Bug caught: a decoder (or one of its self-attentions) ignores ``Queries.self_attn_mask``, so a
    DN-style generator's groups would see each other. With the groups masked apart, changing group B
    cannot move group A's outputs; without the mask it does (the test can fail)."""
    build, kind = DECODERS[name]
    torch.manual_seed(0)
    dec = build().eval()
    mem = random_encoder_memory(C)
    q = _queries(kind)
    head = MLP(C, C, 4, 2)  # DAB-DETR refines its anchors with the detector's box head; the others ignore it
    masked = dataclasses.replace(q, self_attn_mask=_block_mask())
    with torch.no_grad():
        a = dec(mem, masked, box_head=head)
        b = dec(mem, _perturb_group_b(masked), box_head=head)
        a_open = dec(mem, q, box_head=head)
        b_open = dec(mem, _perturb_group_b(q), box_head=head)
    for out_a, out_b in ((a.hidden, b.hidden), (a.box_hidden, b.box_hidden)):
        if out_a is None:
            continue
        assert torch.allclose(out_a[:, :, GROUP_A], out_b[:, :, GROUP_A], atol=1e-6)
        assert not torch.allclose(out_a[:, :, GROUP_B], out_b[:, :, GROUP_B], atol=1e-3)
    assert not torch.allclose(a_open.hidden[:, :, GROUP_A], b_open.hidden[:, :, GROUP_A], atol=1e-4)


def test_self_attn_bias_is_minus_infinity_where_blocked_and_refuses_a_float_mask():
    """Bug caught: the mask's sense inverted (True = attend, as SDPA's boolean masks) or a float mask
    taken as a bias silently."""
    bias = self_attn_bias(_block_mask(), torch.float32)
    assert torch.all(bias[_block_mask()] == float("-inf")) and torch.all(bias[~_block_mask()] == 0)
    assert self_attn_bias(None, torch.float32) is None
    with pytest.raises(TypeError, match="bool"):
        self_attn_bias(_block_mask().float(), torch.float32)


def test_a_decoder_given_queries_without_its_fields_names_the_missing_field():
    """Bug caught: a DAB decoder combined with learned queries fails with an AttributeError/NoneType deep
    inside a layer instead of naming the field."""
    dec = DECODERS["dab"][0]()
    with pytest.raises(ValueError, match=r"DABDecoder needs the queries' 'anchors'.*made: \['content', 'pos'\]"):
        dec(random_encoder_memory(C), _queries("learned"))
    with pytest.raises(ValueError, match="branch"):
        DECODERS["sd_detr_shared"][0]()(random_encoder_memory(C),
                                        Queries(anchors=_queries("anchors").anchors, branch_content={"shared": torch.zeros(2, Q, C)}))


TINY = "projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"


def test_the_detector_hands_the_training_targets_to_its_query_initialiser_and_none_at_inference():
    """Bug caught: ``query_init`` called without the targets in training (a denoising generator would
    have nothing to noise) or with them at inference."""
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model)
    seen = []
    original = model.query_init.forward
    model.query_init.forward = lambda mem, targets=None: seen.append(targets) or original(mem, targets)
    batch = random_batch(5)
    model.train()
    model(batch)
    model.eval()
    with torch.no_grad():
        model(batch)
    assert seen[1] is None
    expected = model.prepare_targets(batch)
    assert len(seen[0]) == len(batch)
    for got, want in zip(seen[0], expected):
        assert torch.equal(got["labels"], want["labels"]) and torch.allclose(got["boxes"], want["boxes"])


def test_a_query_initialiser_returning_a_dict_is_refused_with_its_name():
    """Bug caught: an old-style initialiser returning a dict fails later with a confusing attribute error."""
    model = instantiate(LazyConfig.load(TINY).model).eval()
    original = model.query_init.forward
    model.query_init.forward = lambda mem, targets=None: dataclasses.asdict(original(mem))
    with pytest.raises(TypeError, match="query_init LearnedQueries returned dict"):
        with torch.no_grad():
            model(random_batch(5, with_instances=False))


class _ToyDenoisingQueries(torch.nn.Module):
    """A DN-DETR-style generator written as a new part only: the detector's own initialiser plus, in
    training, one known query per ground truth (content from its label, position from its box), padded
    to the batch's largest count; the matched queries cannot see the known ones."""

    def __init__(self, base, num_classes, width):
        super().__init__()
        self.base = base
        self.label_embed = torch.nn.Embedding(num_classes, width)
        self.box_embed = torch.nn.Linear(4, width)

    def forward(self, mem, targets=None):
        q = self.base(mem, targets)
        if targets is None:
            return q
        bsz, m, width = q.content.shape
        n = max(len(t["labels"]) for t in targets)
        content, pos = q.content.new_zeros(bsz, n, width), q.pos.new_zeros(bsz, n, width)
        rows = []
        for b, t in enumerate(targets):
            k = len(t["labels"])
            content[b, :k] = self.label_embed(t["labels"])
            pos[b, :k] = self.box_embed(t["boxes"])
            rows.append((torch.arange(k), torch.arange(k)))
        mask = torch.zeros(m + n, m + n, dtype=torch.bool)
        mask[:m, m:] = True  # matched queries do not see the known ones (DN-DETR's attention mask)
        known = KnownQueries(num_matching=m, assignment=Assignment.from_matches(rows, targets))
        return dataclasses.replace(q, content=torch.cat([q.content, content], 1), pos=torch.cat([q.pos, pos], 1),
                                   self_attn_mask=mask, known=known)


def test_a_denoising_generator_is_a_new_part_whose_known_queries_are_trained_with_their_assignment():
    """Bugs caught: known queries matched with the others or reported at inference; their assignment
    ignored; the matched queries' losses changed by them (mask or split wrong); a layer's known losses
    dropped. The generator is a part in the config: the meta-architecture is not edited."""
    torch.manual_seed(0)
    plain = instantiate(LazyConfig.load(TINY).model)
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model)
    model.query_init = _ToyDenoisingQueries(model.query_init, model.num_classes, model.class_embed.in_features)
    batch = random_batch(5)
    plain.train(), model.train()
    with torch.no_grad():
        base_losses = plain(batch)
        losses = model(batch)
    num_layers = len(model.decoder.layers)
    expected_names = {f"{k}_dn" for k in ("loss_class", "loss_bbox", "loss_giou")}
    expected_names |= {f"{k}_dn_{i}" for k in ("loss_class", "loss_bbox", "loss_giou") for i in range(num_layers - 1)}
    assert set(losses) == set(base_losses) | expected_names
    for k, v in base_losses.items():  # the matched queries are as without the generator
        assert torch.allclose(losses[k], v, atol=1e-5), k
    # the known losses are the criterion's losses of the known slice under the generator's assignment
    targets = model.prepare_targets(batch)
    with torch.no_grad():
        outputs, _, dec = model.forward_outputs(batch, targets)
        plain.forward_outputs(batch, targets)  # the same batch-norm statistics updates as `model`'s
    known = outputs["known_outputs"]
    assert outputs["pred_logits"].shape[1] == model.query_init.base.num_queries
    n = max(len(t["labels"]) for t in targets)
    assert [s["pred_logits"].shape[1] for s in known["stages"]] == [n] * num_layers
    direct = model.criterion.stage_losses(known["stages"][-1], known["assignment"],
                                          model.criterion.num_boxes(targets, "cpu"), model.criterion.class_loss)
    for k, v in direct.items():
        assert torch.allclose(losses[f"{k}_dn"], v, atol=1e-5), k
    assert losses["loss_bbox_dn"] > 0 and not torch.allclose(losses["loss_bbox_dn"], losses["loss_bbox"])
    # at inference the generator makes no known queries and the detections are the plain model's
    model.eval(), plain.eval()
    with torch.no_grad():
        a, b = model(random_batch(5, with_instances=False)), plain(random_batch(5, with_instances=False))
    for x, y in zip(a, b):
        assert torch.allclose(x["instances"].scores, y["instances"].scores, atol=1e-6)
