import math

import torch
from torch import nn

from sd_detr.attention import GaussianCrossAttention, feature_grid, gaussian_log_weights


def test_feature_grid_is_row_major_integer_cells_without_half_offset():
    grid = feature_grid(2, 3)
    assert grid.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    assert feature_grid(2, 2, step=0.5).tolist() == [[0, 0], [0.5, 0], [0, 0.5], [0.5, 0.5]]


def test_log_gaussian_on_a_3x3_grid_equals_hand_computed_values():
    # one query, centre (x, y) = (1, 0.5), scales s_x = 1, s_y = 2, beta = 8:
    # log G(x, y) = -(1 * (x - 1)^2 + 4 * (y - 0.5)^2) / 8
    centers = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2)
    scales = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    log_g = gaussian_log_weights(centers, scales, feature_grid(3, 3), beta=8.0)
    assert log_g.shape == (1, 1, 1, 9)  # [B, heads, Q, N]
    expected = torch.tensor([
        -0.25, -0.125, -0.25,    # y = 0: (x-1)^2 in {1, 0, 1}, 4 * 0.25 = 1
        -0.25, -0.125, -0.25,    # y = 1: the same distance in y
        -1.25, -1.125, -1.25,    # y = 2: 4 * 2.25 = 9
    ])
    assert torch.allclose(log_g.flatten(), expected)


def test_attention_with_uninformative_content_follows_the_gaussian_map():
    # zero query projection: q.k = 0, so the weights are softmax(log G) = G / sum(G)
    m = GaussianCrossAttention(d_model=4, nhead=1).eval()
    with torch.no_grad():
        m.in_proj_weight[:4].zero_()
        m.in_proj_bias.zero_()
    m.record_attention = True
    centers = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2)
    scales = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    bias = gaussian_log_weights(centers, scales, feature_grid(3, 3), beta=8.0)
    m(torch.randn(1, 1, 4), torch.randn(1, 9, 4), torch.randn(1, 9, 4), attn_bias=bias)
    g = [math.exp(v) for v in (-0.25, -0.125, -0.25, -0.25, -0.125, -0.25, -1.25, -1.125, -1.25)]
    expected = torch.tensor(g) / sum(g)
    assert torch.allclose(m.last_attention.flatten(), expected, atol=1e-6)
    assert m.last_attention.flatten().argmax() in (1, 4)  # the cells nearest the centre


def test_one_scale_for_both_axes_and_fixed_scale():
    centers = torch.tensor([0.0, 0.0]).view(1, 1, 1, 2)
    grid = torch.tensor([[3.0, 4.0]])
    single = gaussian_log_weights(centers, torch.tensor([2.0]).view(1, 1, 1, 1), grid, beta=1.0)
    fixed = gaussian_log_weights(centers, None, grid, beta=5.0)
    assert single.item() == -4 * 25 and fixed.item() == -25 / 5


def test_head_specific_centres_give_one_map_per_head_and_a_shared_one_broadcasts():
    grid = feature_grid(2, 2)
    per_head = gaussian_log_weights(torch.tensor([[0.0, 0.0], [1.0, 1.0]]).view(1, 1, 2, 2), None, grid, 1.0)
    assert per_head.shape == (1, 2, 1, 4)
    assert per_head[0, 0, 0].argmax() == 0 and per_head[0, 1, 0].argmax() == 3
    shared = gaussian_log_weights(torch.zeros(2, 3, 1, 2), torch.ones(2, 3, 4, 2), grid, 1.0)
    assert shared.shape == (2, 4, 3, 4)  # one centre, per-head scales


def test_gaussian_cross_attention_equals_multihead_attention_with_the_bias_as_float_mask():
    torch.manual_seed(0)
    ours = GaussianCrossAttention(d_model=16, nhead=4).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ref.load_state_dict(ours.state_dict())  # the same parameter names and layout
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 4:] = True
    bias = torch.randn(2, 4, 5, 7)
    float_mask = bias.masked_fill(mask[:, None, None, :], float("-inf")).reshape(8, 5, 7)
    expected = ref(q, k, v, attn_mask=float_mask, need_weights=False)[0]
    assert torch.allclose(ours(q, k, v, mask, bias), expected, atol=1e-5)
