from .box_ops import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    inverse_sigmoid,
)
from .linear import Linear, branch_linear, linear
from .mlp import (FFN, MLP, branch_ffn, branch_layer_norm, branch_mlp, get_activation, same_ffns, same_layer_norms,
                  same_mlps)
from .position_encoding import PositionEmbeddingSine, sine_embedding

__all__ = [k for k in globals() if not k.startswith("_")]
