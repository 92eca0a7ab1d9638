import math

import torch

from sd_detr.layers import PositionEmbeddingSine, sine_embedding


def test_sine_embedding_channel_order_is_y_then_x_with_interleaved_sin_cos():
    num_feats, t = 4, 10000.0
    coords = torch.tensor([[0.25, 0.75]])  # (x, y)
    emb = sine_embedding(coords, num_feats=num_feats, temperature=t)
    assert emb.shape == (1, 2 * num_feats)
    dims = [t ** (2 * (i // 2) / num_feats) for i in range(num_feats)]

    def axis(v):
        a = [v * 2 * math.pi / d for d in dims]
        return [math.sin(a[0]), math.cos(a[1]), math.sin(a[2]), math.cos(a[3])]

    expected = torch.tensor(axis(0.75) + axis(0.25))
    assert torch.allclose(emb[0], expected, atol=1e-6)


def test_sine_embedding_of_boxes_appends_w_and_h_after_y_x():
    box = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    emb = sine_embedding(box, num_feats=8)
    yx = sine_embedding(box[:, :2], num_feats=8)
    wh = sine_embedding(box[:, 2:], num_feats=8)  # (x=w, y=h) -> order (h, w)
    assert torch.allclose(emb[:, :16], yx)
    assert torch.allclose(emb[:, 16:24], wh[:, 8:])  # w
    assert torch.allclose(emb[:, 24:], wh[:, :8])  # h


def test_position_embedding_normalises_by_the_unpadded_extent():
    mask = torch.zeros(1, 3, 5, dtype=torch.bool)
    mask[0, :, 4:] = True  # last column is padding
    pos = PositionEmbeddingSine(d_model=4, normalize=True)(mask)
    assert pos.shape == (1, 4, 3, 5)
    # x channels (last two): first frequency is sin(x * 2pi) with x = col / 4 (1-based cumsum)
    for col in range(4):
        x = (col + 1) / (4 + 1e-6) * 2 * math.pi
        assert math.isclose(pos[0, 2, 0, col].item(), math.sin(x), abs_tol=1e-5)
    # y channels: row / 3
    y = 2 / (3 + 1e-6) * 2 * math.pi
    assert math.isclose(pos[0, 0, 1, 2].item(), math.sin(y), abs_tol=1e-5)
