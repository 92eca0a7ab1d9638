"""DAB-DETR's anchor queries: shapes, Anchor DETR pattern layout, random fixed anchor centres."""
import torch

from sd_detr.modeling.decoder import EncoderMemory
from sd_detr.modeling.queries import AnchorQueries
from sd_detr.modeling.structures import Queries


def _mem(bsz=2, d=8):
    return EncoderMemory(memory=torch.zeros(bsz, 6, d), pos=torch.zeros(bsz, 6, d),
                         mask=torch.zeros(bsz, 6, dtype=torch.bool), spatial_shape=(2, 3), stride=16,
                         image_sizes=torch.full((bsz, 2), 32.0))


def test_anchor_queries_are_sigmoid_of_the_embedding_with_zero_content():
    q = AnchorQueries(num_queries=5, d_model=8)
    out = q(_mem())
    assert out.content.shape == (2, 5, 8) and torch.all(out.content == 0)
    assert out.anchors.shape == (2, 5, 4)
    assert torch.allclose(out.anchors[1], q.refpoint_embed.weight.sigmoid())


def test_patterns_pair_every_anchor_with_every_pattern_pattern_major():
    q = AnchorQueries(num_queries=4, d_model=8, num_patterns=3)
    out = q(_mem())
    assert out.content.shape == (2, 12, 8) and out.anchors.shape == (2, 12, 4)
    for p in range(3):
        for a in range(4):
            assert torch.equal(out.content[0, p * 4 + a], q.patterns.weight[p])
            assert torch.equal(out.anchors[0, p * 4 + a], q.refpoint_embed.weight[a].sigmoid())


def test_random_fixed_centres_get_no_gradient_while_sizes_learn():
    torch.manual_seed(0)
    q = AnchorQueries(num_queries=50, d_model=8, random_xy=True)
    xy = q.refpoint_embed.weight[:, :2].sigmoid()
    assert torch.all((xy > 0) & (xy < 1)) and xy.std() > 0.2  # uniform in [0, 1] (std 0.29), not N(0, 1) logits
    q(_mem()).anchors.sum().backward()
    grad = q.refpoint_embed.weight.grad
    assert torch.all(grad[:, :2] == 0) and torch.all(grad[:, 2:] != 0)


def test_random_centres_can_be_learned_as_the_released_code_does():
    q = AnchorQueries(num_queries=50, d_model=8, random_xy=True, freeze_xy=False)
    q(_mem()).anchors.sum().backward()
    assert torch.all(q.refpoint_embed.weight.grad != 0)
