"""The baselines' defining mechanisms, pinned where the decoder wires them in (not only in the helper
functions): Conditional DETR's query scale lambda_q (Sec. 3.3), DAB-DETR's width/height-modulated
spatial query and its query scale in the decoder (Sec. 4.4, Eq. 6), SMCA-DETR's Gaussian-like map added
to the co-attention logits (Sec. 3.3, Eq. 5-6), and the DETR encoder's position on queries and keys only.
"""
import dataclasses
import math

import torch
from torch import nn

from sd_detr.layers import inverse_sigmoid, sine_embedding
from sd_detr.modeling import EncoderMemory, TransformerEncoder
from sd_detr.modeling.decoder import ConditionalDecoder, DABDecoder, SMCADecoder
from sd_detr.modeling.structures import Queries

C = 16


def _memory(bsz=2, h=3, w=4, seed=0, stride=32, image_sizes=((96.0, 128.0), (96.0, 128.0))):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(bsz, h * w, C, generator=g)
    return EncoderMemory(memory=memory, pos=torch.randn(bsz, h * w, C, generator=g),
                         mask=torch.zeros(bsz, h * w, dtype=torch.bool), spatial_shape=(h, w), stride=stride,
                         image_sizes=torch.tensor(image_sizes))


def _record_layer_io(decoder):
    """Hooks: the spatial query (4th positional argument of each layer's cross-attention) and the output
    of each layer, in call order."""
    spatial, outputs = [], []
    for layer in decoder.layers:
        layer.cross_attn.register_forward_pre_hook(lambda m, args: spatial.append(args[3]) and None)
        layer.register_forward_hook(lambda m, args, out: outputs.append(out) and None)
    return spatial, outputs


def test_conditional_detr_spatial_query_is_the_reference_embedding_times_the_query_scale_of_the_last_output():
    """Bug caught: Conditional DETR's lambda_q removed (p_q = PE(s) in every layer), applied in the first
    layer, or computed from the object query instead of the previous layer's output."""
    torch.manual_seed(0)
    dec = ConditionalDecoder(num_layers=3, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0).eval()
    g = torch.Generator().manual_seed(1)
    queries = Queries(content=torch.zeros(2, 5, C), pos=torch.randn(2, 5, C, generator=g))
    spatial, outputs = _record_layer_io(dec)
    dec(_memory(), queries)
    pe = sine_embedding(dec.ref_point_head(queries.pos).sigmoid(), C // 2)
    assert torch.allclose(spatial[0], pe, atol=1e-6)  # lambda_q = 1 in the first layer (official l. 151-156)
    for i in (1, 2):
        expected = pe * dec.query_scale(outputs[i - 1])
        assert torch.allclose(spatial[i], expected, atol=1e-5)
        assert (expected - pe).abs().max() > 1e-2  # the scale is not trivially 1


def test_conditional_detr_only_the_first_layer_adds_the_object_query_to_the_content_query():
    """Bug caught: the object query o_q added to the cross-attention content in every layer (official
    ``keep_query_pos=False``) or in none."""
    torch.manual_seed(0)
    dec = ConditionalDecoder(num_layers=3, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0).eval()
    assert [layer.cross_attn.qpos_proj is not None for layer in dec.layers] == [True, False, False]


def _dab(num_layers=2, **kwargs):
    torch.manual_seed(0)
    return DABDecoder(num_layers=num_layers, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0, **kwargs).eval()


def _dab_queries(seed=1):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.cat([torch.rand(2, 5, 2, generator=g) * 0.6 + 0.2, torch.rand(2, 5, 2, generator=g) * 0.3 + 0.1], -1)
    return Queries(content=torch.randn(2, 5, C, generator=g), anchors=anchors)


def _expected_dab_spatial(dec, tgt, anchors, layer_index):
    """Eq. 4 and 6 by hand: PE(x, y) (times MLP_csq(C_q) after the first layer), its y half times
    h_ref / h and its x half times w_ref / w, (w_ref, h_ref) = sigmoid(MLP(C_q))."""
    pe = sine_embedding(anchors, C // 2, dec.query_temperature)[..., :C]  # (y, x) quarters
    if layer_index > 0:
        pe = pe * dec.query_scale(tgt)
    ref = dec.ref_anchor_head(tgt).sigmoid()
    half = C // 2
    return torch.cat([pe[..., :half] * (ref[..., 1] / anchors[..., 3])[..., None],
                      pe[..., half:] * (ref[..., 0] / anchors[..., 2])[..., None]], -1)


def test_dab_detr_decoder_modulates_every_layers_spatial_query_by_its_anchor_width_and_height():
    """Bug caught: DAB-DETR's width/height modulation removed (or x/y ratios swapped) where the decoder
    builds its spatial queries, or the content-conditional scale MLP_csq dropped after the first layer."""
    dec = _dab(num_layers=2, update_anchors=False)
    q = _dab_queries()
    spatial, outputs = _record_layer_io(dec)
    dec(_memory(), q)
    for i, tgt in enumerate([q.content, outputs[0]]):
        expected = _expected_dab_spatial(dec, tgt, q.anchors, i)
        assert torch.allclose(spatial[i], expected, atol=1e-5), i
    # a wider anchor (same centre) weakens the x half of its spatial query in proportion
    wide = dataclasses.replace(q, anchors=q.anchors * torch.tensor([1.0, 1.0, 2.0, 1.0]))
    spatial.clear()
    outputs.clear()
    dec(_memory(), wide)
    assert torch.allclose(spatial[0][..., C // 2:] * 2, _expected_dab_spatial(dec, q.content, q.anchors, 0)[..., C // 2:],
                          atol=1e-5)


def test_dab_detr_without_modulation_leaves_the_spatial_query_unscaled_by_the_anchor_size():
    """Bug caught: ``modulate_hw_attn=False`` ignored (the Table 3 ablation would not ablate anything)."""
    dec = _dab(num_layers=1, update_anchors=False, modulate_hw_attn=False)
    q = _dab_queries()
    spatial, _ = _record_layer_io(dec)
    dec(_memory(), q)
    assert torch.allclose(spatial[0], sine_embedding(q.anchors, C // 2, dec.query_temperature)[..., :C], atol=1e-6)


def test_smca_co_attention_follows_the_gaussian_map_of_each_heads_centre_and_scales():
    """Bug caught: SMCA's log Gaussian not added to the co-attention logits, its sign flipped, the scales
    not squared, beta ignored, the head-specific offsets / scales dropped or mixed up, or the centre not
    in feature cells of the unpadded image (paper Eq. 5-6 with the official sigmoid * (w, h) / 32)."""
    torch.manual_seed(0)
    heads, beta = 2, 8.0
    dec = SMCADecoder(num_layers=1, d_model=C, nhead=heads, dim_feedforward=32, dropout=0.0, beta=beta).eval()
    centre = (0.3, 0.6)  # normalised (x, y)
    offsets = [(0.0, 0.0), (1.0, -0.5)]  # per head, in cells
    scales = [(1.0, 2.0), (0.5, 1.0)]  # per head (s_x, s_y)
    layer = dec.layers[0]
    with torch.no_grad():
        dec.center_head.layers[-1].weight.zero_()
        dec.center_head.layers[-1].bias.copy_(inverse_sigmoid(torch.tensor(centre)))
        layer.offset_head.weight.zero_()
        layer.offset_head.bias.copy_(torch.tensor(offsets).flatten())
        layer.scale_head.weight.zero_()
        layer.scale_head.bias.copy_(torch.tensor(scales).flatten())
        layer.cross_attn.in_proj_weight[:C].zero_()  # the query projection: content logits are 0
        layer.cross_attn.in_proj_bias[:C].zero_()
    layer.cross_attn.record_attention = True
    h, w, stride = 3, 4, 32
    mem = _memory(bsz=1, h=h, w=w, stride=stride, image_sizes=((80.0, 96.0),))  # unpadded 80 x 96 pixels
    g = torch.Generator().manual_seed(1)
    dec(mem, Queries(content=torch.zeros(1, 2, C), pos=torch.randn(1, 2, C, generator=g)))
    cx, cy = centre[0] * 96 / stride, centre[1] * 80 / stride
    for head, ((ox, oy), (sx, sy)) in enumerate(zip(offsets, scales)):
        log_g = torch.tensor([-(sx ** 2 * (x - cx - ox) ** 2 + sy ** 2 * (y - cy - oy) ** 2) / beta
                              for y in range(h) for x in range(w)])
        for q in range(2):
            assert torch.allclose(layer.cross_attn.last_attention[0, head, q], log_g.softmax(0), atol=1e-6), head


def test_encoder_adds_the_position_to_queries_and_keys_but_not_to_values():
    """Bug caught: the DETR encoder attending with the position embedding on the values, or without it
    on the keys (official ``q = k = src + pos``, value ``src``)."""
    torch.manual_seed(0)
    enc = TransformerEncoder(num_layers=1, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0).eval()
    g = torch.Generator().manual_seed(1)
    src, pos = torch.randn(2, 7, C, generator=g), torch.randn(2, 7, C, generator=g)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    layer = enc.layers[0]
    ref = nn.MultiheadAttention(C, 2, batch_first=True).eval()
    ref.load_state_dict(layer.self_attn.state_dict())
    attn = ref(src + pos, src + pos, src, key_padding_mask=mask, need_weights=False)[0]
    expected = layer.ffn(layer.norm1(src + attn))
    assert torch.allclose(enc(src, pos, mask), expected, atol=1e-5)


def test_conditional_detr_every_layers_output_goes_through_the_shared_final_norm():
    """Bug caught: the intermediate (auxiliary) layers' outputs handed to the heads without the shared
    final LayerNorm (official ``transformer.py:166-174`` normalises every intermediate output)."""
    torch.manual_seed(0)
    dec = ConditionalDecoder(num_layers=3, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0).eval()
    with torch.no_grad():  # a non-trivial norm, so that normalised and raw outputs differ clearly
        dec.norm.weight.uniform_(0.5, 1.5)
        dec.norm.bias.uniform_(-0.5, 0.5)
    g = torch.Generator().manual_seed(1)
    _, outputs = _record_layer_io(dec)
    out = dec(_memory(), Queries(content=torch.zeros(2, 5, C), pos=torch.randn(2, 5, C, generator=g)))
    for i in range(3):
        assert torch.allclose(out.hidden[i], dec.norm(outputs[i]), atol=1e-6), i


def test_smca_modulation_of_every_layer_is_predicted_from_the_normalised_content_plus_object_query():
    """Bug caught: SMCA's per-layer centre offsets / scales predicted from the content alone (in the
    first layer all queries would then share one map) instead of ``norm4(tgt + query_pos)``
    (official ``models/transformer.py:259-260, 289``)."""
    torch.manual_seed(0)
    dec = SMCADecoder(num_layers=2, d_model=C, nhead=2, dim_feedforward=32, dropout=0.0).eval()
    with torch.no_grad():
        for layer in dec.layers:
            layer.scale_head.weight.normal_(0, 0.5)
    seen = []
    for layer in dec.layers:
        original = layer.spatial_prior
        layer.spatial_prior = (lambda tgt, pos, center, f=original, layer=layer:
                               seen.append((layer, tgt, pos, center, f(tgt, pos, center))) or seen[-1][4])
    g = torch.Generator().manual_seed(1)
    dec(_memory(), Queries(content=torch.zeros(2, 5, C), pos=torch.randn(2, 5, C, generator=g)))
    assert len(seen) == 2
    for layer, tgt, pos, center, (centers, scales, _) in seen:
        x = layer.prior_norm(tgt + pos)
        assert torch.allclose(centers, center[:, :, None] + layer.offset_head(x).view(2, 5, 2, 2), atol=1e-6)
        assert torch.allclose(scales, layer.scale_head(x).view(2, 5, -1, 2), atol=1e-6)
    first_scales = seen[0][4][1]
    assert (first_scales[:, 0] - first_scales[:, 1]).abs().max() > 1e-3  # queries differ by their object query
