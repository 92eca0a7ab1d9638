"""Multi-layer perceptrons: the box/reference heads (``MLP``) and the transformer feed-forward block."""
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear, _onednn_eligible, branch_linear


def get_activation(name: Union[str, Callable]) -> Callable:
    """'relu' | 'gelu' | 'prelu' (a learned scalar, as DAB-DETR's encoder/decoder) -> callable/module."""
    if callable(name):
        return name
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "prelu":
        return nn.PReLU()
    raise ValueError(f"activation must be 'relu', 'gelu' or 'prelu', got {name!r}")


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (none after the last).

    Shapes: [..., input_dim] -> [..., output_dim]. Submodule names (``layers.i``) follow the official
    DETR-family code so that converted checkpoints map one to one.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class FFN(nn.Module):
    """Post-norm transformer feed-forward block: ``norm(x + dropout(W2 dropout(act(W1 x))))``.

    Shapes: [..., d_model] -> [..., d_model].
    """

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.1, activation="relu"):
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout_out = nn.Dropout(dropout)
        self.activation = get_activation(activation)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.norm(x + self.dropout_out(y))


def branch_layer_norm(x: Tensor, norms) -> Tensor:
    """G LayerNorms over the last dim applied to their own slices: x [G, ..., C] -> [G, ..., C].

    One ``F.layer_norm`` without affine, then each slice's own weight and bias (stacked at the call;
    the modules keep their parameters). ``norms``: G :class:`torch.nn.LayerNorm` of equal shape and eps.
    """
    n0 = norms[0]
    y = F.layer_norm(x, n0.normalized_shape, None, None, n0.eps)
    if not n0.elementwise_affine:
        return y
    shape = (len(norms),) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    w = torch.stack([n.weight for n in norms]).view(shape)
    if n0.bias is None:
        return y * w
    return torch.addcmul(torch.stack([n.bias for n in norms]).view(shape), y, w)


def same_layer_norms(norms) -> bool:
    """Whether G LayerNorms can run as one :func:`branch_layer_norm` (same shape, eps and affine form)."""
    n0 = norms[0]
    return all(isinstance(n, nn.LayerNorm) and n.normalized_shape == n0.normalized_shape and n.eps == n0.eps
               and n.elementwise_affine == n0.elementwise_affine and (n.bias is None) == (n0.bias is None)
               for n in norms)


def branch_ffn(x: Tensor, ffns) -> Tensor:
    """G :class:`FFN` blocks applied to their own slices as batched products: x [G, ..., C] -> [G, ..., C].

    The dropout modules of the first FFN are used for all slices (one call on the stack: the masks are
    drawn at once, so they differ from G separate calls; :func:`same_ffns` checks the rates agree).
    """
    f0 = ffns[0]
    if f0.linear1.onednn_linear and _onednn_eligible(x, f0.linear1.weight):
        # oneDNN has no batched 1x1 convolution: each branch's hidden layer on its own, which saves
        # stacking the [G, ..., dim_feedforward] hidden activations (measured ~1.2x slower stacked)
        y = torch.stack([f.linear2(f0.dropout(f0.activation(f.linear1(x[i])))) for i, f in enumerate(ffns)])
    else:
        h = branch_linear(x, [f.linear1.weight for f in ffns], [f.linear1.bias for f in ffns])
        h = f0.dropout(f0.activation(h))
        y = branch_linear(h, [f.linear2.weight for f in ffns], [f.linear2.bias for f in ffns])
    return branch_layer_norm(x + f0.dropout_out(y), [f.norm for f in ffns])


def same_ffns(ffns) -> bool:
    """Whether G :class:`FFN` blocks can run as one :func:`branch_ffn`: same shapes, dropout rates, a
    parameterless activation (a learned PReLU is per block) and norms."""
    f0 = ffns[0]
    return (all(isinstance(f, FFN) for f in ffns)
            and not isinstance(f0.activation, nn.Module)
            and all(f.activation is f0.activation for f in ffns)
            and all(f.linear1.weight.shape == f0.linear1.weight.shape and f.dropout.p == f0.dropout.p
                    and f.dropout_out.p == f0.dropout_out.p and f.linear1.onednn_linear == f0.linear1.onednn_linear
                    for f in ffns)
            and same_layer_norms([f.norm for f in ffns]))


def branch_mlp(x: Tensor, mlps) -> Tensor:
    """G :class:`MLP` of equal shapes applied to their own slices: x [G, ..., C_in] -> [G, ..., C_out]
    (:func:`branch_linear` per layer, ReLU between)."""
    last = len(mlps[0].layers) - 1
    onednn = mlps[0].layers[0].onednn_linear
    for i in range(last + 1):
        x = branch_linear(x, [m.layers[i].weight for m in mlps], [m.layers[i].bias for m in mlps], onednn)
        if i < last:
            x = F.relu(x)
    return x


def same_mlps(mlps) -> bool:
    """Whether G :class:`MLP` can run as one :func:`branch_mlp` (same layer shapes and oneDNN flags)."""
    m0 = mlps[0]
    return all(isinstance(m, MLP) and len(m.layers) == len(m0.layers)
               and all(a.weight.shape == b.weight.shape and a.onednn_linear == b.onednn_linear
                       for a, b in zip(m.layers, m0.layers)) for m in mlps)
