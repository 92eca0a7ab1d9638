import torch

from sd_detr.attention import GaussianCrossAttention, ScaleSelectionAttention, feature_grid, gaussian_log_weights
from sd_detr.modeling.decoder.smca import SMCADecoderLayer


def _levels(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 6), (2, 3), (1, 2)]
    keys = [torch.randn(2, h * w, 16, generator=g) for h, w in shapes]
    values = [torch.randn(2, h * w, 16, generator=g) for h, w in shapes]
    masks = [torch.zeros(2, h * w, dtype=torch.bool) for h, w in shapes]
    masks[0][1, -6:] = True
    centers = torch.rand(2, 3, 4, 2, generator=g) * 3
    biases = [gaussian_log_weights(centers, None, feature_grid(h, w, step=2.0 ** (j - 1)), 8.0)
              for j, (h, w) in enumerate(shapes)]
    return keys, values, masks, biases


def test_one_hot_scale_weights_equal_single_level_gaussian_attention_on_that_level():
    torch.manual_seed(0)
    m = ScaleSelectionAttention(16, 4, num_levels=3).eval()
    keys, values, masks, biases = _levels()
    query = torch.randn(2, 3, 16)
    for j in range(3):
        alpha = torch.zeros(2, 3, 3)
        alpha[..., j] = 1
        single = GaussianCrossAttention(16, 4).eval()
        with torch.no_grad():
            single.in_proj_weight.copy_(torch.cat([m.q_proj.weight, m.k_projs[j].weight, m.v_projs[j].weight]))
            single.in_proj_bias.copy_(torch.cat([m.q_proj.bias, m.k_projs[j].bias, m.v_projs[j].bias]))
            single.out_proj.load_state_dict(m.out_proj.state_dict())
        got = m(query, keys, values, alpha, masks, biases)
        assert torch.allclose(got, single(query, keys[j], values[j], masks[j], biases[j]), atol=1e-5)


def test_output_mixes_the_per_level_attentions_by_the_scale_weights():
    torch.manual_seed(0)
    m = ScaleSelectionAttention(16, 4, num_levels=3).eval()
    keys, values, masks, biases = _levels(1)
    query = torch.randn(2, 3, 16)
    alpha = torch.randn(2, 3, 3).softmax(-1)
    per_level = []
    for j in range(3):
        one_hot = torch.zeros(2, 3, 3)
        one_hot[..., j] = 1
        # out_proj is affine: remove its bias to combine the levels' projected outputs linearly
        per_level.append(m(query, keys, values, one_hot, masks, biases) - m.out_proj.bias)
    expected = sum(alpha[..., j:j + 1] * per_level[j] for j in range(3)) + m.out_proj.bias
    assert torch.allclose(m(query, keys, values, alpha, masks, biases), expected, atol=1e-5)


def test_decoder_layer_scale_weights_sum_to_one_over_levels():
    torch.manual_seed(0)
    layer = SMCADecoderLayer(d_model=16, nhead=4, dim_feedforward=32, num_levels=3)
    centers, scales, alpha = layer.spatial_prior(torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.rand(2, 5, 2))
    assert alpha.shape == (2, 5, 3) and (alpha > 0).all()
    assert torch.allclose(alpha.sum(-1), torch.ones(2, 5))
    assert centers.shape == (2, 5, 4, 2) and scales.shape == (2, 5, 4, 2)
