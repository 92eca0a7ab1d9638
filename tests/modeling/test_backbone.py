import copy

import torch
from detectron2.layers import Conv2d

from sd_detr.modeling.backbone import FrozenBNConv2d, build_detr_resnet


def test_dc5_dilates_res5_blocks_1_and_2_but_not_block_0_like_torchvision():
    r = build_detr_resnet(50, dc5=True)
    assert r.output_shape()["res5"].stride == 16
    convs = [b.conv2 for b in r.res5]
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (2, 2)]
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (1, 1)]
    assert [c.padding for c in convs] == [(1, 1), (2, 2), (2, 2)]
    plain = build_detr_resnet(50)
    assert plain.output_shape()["res5"].stride == 32 and plain.res5[0].conv2.stride == (2, 2)
    assert plain.res5[0].conv1.stride == (1, 1)  # ResNet v1.5: stride in the 3x3 conv


def test_stem_and_res2_are_frozen_and_later_stages_train():
    r = build_detr_resnet(50, freeze_at=2)
    assert not any(p.requires_grad for p in r.stem.parameters())
    assert not any(p.requires_grad for p in r.res2.parameters())
    assert all(p.requires_grad for p in r.res3.parameters())


def test_folded_frozen_batchnorm_equals_conv_then_norm_in_value_and_gradient():
    torch.manual_seed(0)
    folded = build_detr_resnet(18, out_features=["res3"], freeze_at=0, stem_out_channels=8, res2_out_channels=8)
    for m in folded.modules():
        if hasattr(m, "running_var"):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_()
            m.weight.normal_(1.0, 0.2)
            m.bias.normal_()
    unfolded = copy.deepcopy(folded)
    n = 0
    for m in unfolded.modules():
        if type(m) is FrozenBNConv2d:
            m.__class__ = Conv2d
            n += 1
    assert n > 0
    x = torch.randn(2, 3, 32, 40)
    a, b = folded(x)["res3"], unfolded(x)["res3"]
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    ga = folded.res3[0].conv1.weight.grad
    gb = unfolded.res3[0].conv1.weight.grad
    assert torch.allclose(ga, gb, rtol=1e-3, atol=1e-5)
    assert folded.state_dict().keys() == unfolded.state_dict().keys()
