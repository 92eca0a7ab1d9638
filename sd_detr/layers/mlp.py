"""Multi-layer perceptrons: the box/reference heads (``MLP``) and the transformer feed-forward block."""
from typing import Callable, Union

import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear


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
