"""The DETR meta-architecture every detector of the project is composed from.

``batched_inputs -> normalise + pad (ImageList, padding mask) -> backbone -> 1x1 input projection +
sine position embedding -> encoder -> query initialiser -> decoder -> shared class / box heads per
layer -> criterion (train) | top-k over queries x classes -> Instances (eval)``.

Each part is a constructor argument, so a variant is a config, rarely a new class.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor, nn

from ...layers import MLP, Linear, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid
from ..input_projection import MultiLevelProjection
from ..structures import DecoderOutput, EncoderMemory, Queries

IMAGENET_MEAN_RGB = (123.675, 116.280, 103.530)
IMAGENET_STD_RGB = (58.395, 57.120, 57.375)

# initialisations of the box head's last layer (DETRDetector(box_head_init=...))
BOX_HEAD_INITS = ("zeros", "default")


class DETRDetector(nn.Module):
    """A DETR-style detector assembled from parts.

    Args:
        backbone: a Detectron2 backbone (e.g. :func:`~sd_detr.modeling.backbone.build_detr_resnet`).
        in_feature: the backbone output to encode ("res5"; "res4" for tiny models); with
            ``in_features``, the last of them (the level whose cell is the memory's ``stride``).
        in_features, num_extra_levels: several feature levels instead of one: the backbone outputs
            ``in_features`` (finest first) and ``num_extra_levels`` stride-2 levels on top, projected
            by :class:`~sd_detr.modeling.input_projection.MultiLevelProjection` (SMCA-DETR's multi-scale
            design). Each level's position embedding is the sine embedding of its mask plus a learned
            level embedding (``level_embed``, [L, C]; SMCA's released code ``models/transformer.py:471``);
            the encoder receives and returns lists of levels, and the :class:`EncoderMemory`
            concatenates them along N and lists them in ``extra["level_shapes"]`` /
            ``extra["level_strides"]``; its ``spatial_shape`` / ``stride`` are ``in_feature``'s (so
            ``as_map()`` does not apply to it).
        position_embedding: maps the [B, H, W] padding mask to [B, C, H, W].
        encoder: [B, N, C] features, pos, mask -> [B, N, C] memory.
        query_init: (:class:`EncoderMemory`, targets or None) -> :class:`Queries` (its
            ``extra_outputs``, e.g. a mini-detector's predictions, go to the criterion). ``targets``
            (training only: the ground truth of :meth:`prepare_targets`) lets a generator make queries
            from them, e.g. DN-DETR's noised boxes.
        decoder: (memory, queries, box_head) -> :class:`DecoderOutput`.
        criterion: (outputs, targets) -> dict of weighted losses.
        num_classes: K foreground classes (sigmoid scores).
        hidden_dim: transformer width C.
        pixel_mean, pixel_std: per channel, in the order of ``input_format``, 0-255 scale.
        input_format: channel order the backbone expects; inputs arrive in this order from the mapper.
        num_select: detections kept per image at inference (top-k over queries x classes).
        box_head_layers: layers of the box MLP.
        reference_eps: eps of ``inverse_sigmoid`` when adding the reference to the box logits.
        size_divisibility: pad the batch to a multiple of this (0 = to the largest image, as officially).
        aux_loss: supervise every decoder layer.
        channels_last: run the backbone and the input projection in channels-last memory format: oneDNN
            (CPU) and cuDNN convolutions are much faster in it (Conditional DETR-R50 inference at 800x1216
            on 2 CPU threads: 1.46 s -> 0.88 s, docs/benchmarks.md). Same weights and state dict. Off by
            default (plain PyTorch); the tools turn it on with
            :func:`sd_detr.engine.accel.optimize_for_cpu` (:meth:`set_channels_last`).
        box_head_init: initialisation of the box MLP's last layer. "zeros" (weight and bias 0, so the
            first boxes are the references: Conditional DETR ``models/conditional_detr.py:58-60``,
            DAB-DETR ``models/DAB_DETR/DABDETR.py:133-140``) or "default" (PyTorch's ``nn.Linear``
            initialisation, left as it is: SMCA-DETR ``models/detr.py:45``). The class head's bias starts
            at the focal-loss prior 0.01 in both cases.
        clip_boxes: at inference, clip the boxes to the output image and drop the ones left empty, as
            Detectron2's :func:`detector_postprocess` does. False (the default) rescales the boxes to
            the output size without clipping or dropping any, as the official post-processing of every
            detector here does (Conditional DETR ``models/conditional_detr.py:311-314``, DAB-DETR
            ``models/DAB_DETR/DABDETR.py:428-431``, SMCA-DETR ``models/detr.py:304-307``): predictions may
            then reach outside the image.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        position_embedding: nn.Module,
        encoder: nn.Module,
        query_init: nn.Module,
        decoder: nn.Module,
        criterion: nn.Module,
        num_classes: int,
        hidden_dim: int = 256,
        in_feature: Optional[str] = None,
        in_features: Optional[Sequence[str]] = None,
        num_extra_levels: int = 0,
        pixel_mean: Sequence[float] = IMAGENET_MEAN_RGB,
        pixel_std: Sequence[float] = IMAGENET_STD_RGB,
        input_format: str = "RGB",
        num_select: int = 100,
        box_head_layers: int = 3,
        reference_eps: float = 1e-5,
        size_divisibility: int = 0,
        aux_loss: bool = True,
        channels_last: bool = False,
        box_head_init: str = "zeros",
        clip_boxes: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        self.backbone = backbone
        self.in_features = list(in_features) if in_features else None
        if self.in_features:
            if in_feature is not None and in_feature != self.in_features[-1]:
                raise ValueError(f"{name}: in_feature {in_feature!r} must be the last of in_features {self.in_features}")
            in_feature = self.in_features[-1]
        elif num_extra_levels:
            raise ValueError(f"{name}: num_extra_levels needs the multi-level in_features")
        self.in_feature = in_feature = in_feature or "res5"
        shapes = backbone.output_shape()
        if in_feature not in shapes:
            raise KeyError(f"{name}: in_feature {in_feature!r} is not a backbone output; available: {sorted(shapes)}")
        pe_width = getattr(position_embedding, "d_model", hidden_dim)
        if pe_width != hidden_dim:
            raise ValueError(f"{type(self).__name__}: position_embedding.d_model {pe_width} differs from hidden_dim "
                             f"{hidden_dim} (configs: d_model='${{..hidden_dim}}')")
        self.hidden_dim = hidden_dim
        if self.in_features:
            self.input_proj = MultiLevelProjection(shapes, self.in_features, hidden_dim, num_extra_levels)
            self.level_strides = self.input_proj.strides
            self.level_embed = nn.Parameter(torch.empty(len(self.level_strides), hidden_dim))
            nn.init.normal_(self.level_embed)
            levels = getattr(decoder, "num_levels", len(self.level_strides))
            if levels != len(self.level_strides):
                raise ValueError(f"{name}: decoder.num_levels {levels} differs from the {len(self.level_strides)} "
                                 f"levels of in_features {self.in_features} + num_extra_levels {num_extra_levels}")
        else:
            self.input_proj = nn.Conv2d(shapes[in_feature].channels, hidden_dim, kernel_size=1)
        self.feature_stride = shapes[in_feature].stride
        self.position_embedding = position_embedding
        self.encoder = encoder
        self.query_init = query_init
        self.decoder = decoder
        self.criterion = criterion
        self.num_classes = num_classes
        self.class_embed = Linear(hidden_dim, num_classes)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, box_head_layers)
        self.input_format = input_format
        self.num_select = num_select
        self.reference_eps = reference_eps
        self.size_divisibility = size_divisibility
        self.aux_loss = aux_loss
        if box_head_init not in BOX_HEAD_INITS:
            raise ValueError(f"{type(self).__name__}: box_head_init must be one of {BOX_HEAD_INITS}, got {box_head_init!r}")
        self.box_head_init = box_head_init
        self.clip_boxes = bool(clip_boxes)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        self._init_heads()
        self.channels_last = False
        self.set_channels_last(channels_last)

    def set_channels_last(self, enabled: bool = True):
        """Keep the backbone and the input projection (and feed the images) in channels-last (True) or
        contiguous (False) memory format. Values and state dict are unchanged."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.backbone.to(memory_format=fmt)
        self.input_proj.to(memory_format=fmt)
        self.channels_last = bool(enabled)
        return self

    def _init_heads(self):
        # Focal-loss prior: every class starts at probability 0.01 (official conditional_detr.py:53-56,
        # SMCA models/detr.py:44).
        nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        if self.box_head_init == "zeros":
            nn.init.zeros_(self.bbox_embed.layers[-1].weight)
            nn.init.zeros_(self.bbox_embed.layers[-1].bias)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ inputs
    def preprocess_image(self, batched_inputs: List[dict]):
        """Normalise and pad. Returns (ImageList, mask [B, H, W] bool True on padding)."""
        images = [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        images = ImageList.from_tensors(images, self.size_divisibility)
        b, _, h, w = images.tensor.shape
        mask = torch.ones((b, h, w), dtype=torch.bool, device=self.device)
        for i, (ih, iw) in enumerate(images.image_sizes):
            mask[i, :ih, :iw] = False
        return images, mask

    def prepare_targets(self, batched_inputs: List[dict]) -> List[dict]:
        """Instances (absolute xyxy in the augmented image) -> {"labels", "boxes" normalised cxcywh}."""
        targets = []
        for x in batched_inputs:
            inst = x["instances"].to(self.device)
            h, w = inst.image_size
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
            boxes = box_xyxy_to_cxcywh(inst.gt_boxes.tensor / scale)
            targets.append({"labels": inst.gt_classes.long(), "boxes": boxes})
        return targets

    # ------------------------------------------------------------------ model
    def backbone_input(self, images: ImageList) -> Tensor:
        """The padded batch [B, 3, H, W] in the backbone's memory format."""
        if self.channels_last:
            return images.tensor.contiguous(memory_format=torch.channels_last)
        return images.tensor

    def encode(self, images: ImageList, mask: Tensor) -> EncoderMemory:
        if self.in_features:
            return self.encode_levels(images, mask)
        features = self.backbone(self.backbone_input(images))[self.in_feature]
        src, pos, flat_mask, (h, w) = self._flatten_level(self.input_proj(features), mask)
        memory = self.encoder(src, pos, flat_mask)
        return EncoderMemory(memory=memory, pos=pos, mask=flat_mask, spatial_shape=(h, w),
                             stride=self.feature_stride, image_sizes=self._image_sizes(images))

    def encode_levels(self, images: ImageList, mask: Tensor) -> EncoderMemory:
        """The multi-level encoding (``in_features``): every level projected, masked and embedded, the
        encoder run on the list of levels, the memory concatenated along N."""
        maps = self.input_proj(self.backbone(self.backbone_input(images)))
        srcs, poss, masks, shapes = zip(*(self._flatten_level(m, mask, self.level_embed[level])
                                          for level, m in enumerate(maps)))
        memory = self.encoder(list(srcs), list(poss), list(masks))
        ref = len(self.in_features) - 1
        return EncoderMemory(
            memory=torch.cat(memory, 1), pos=torch.cat(poss, 1), mask=torch.cat(masks, 1),
            spatial_shape=shapes[ref], stride=self.level_strides[ref], image_sizes=self._image_sizes(images),
            extra={"level_shapes": list(shapes), "level_strides": list(self.level_strides)},
        )

    def _flatten_level(self, src: Tensor, mask: Tensor, level_embed: Optional[Tensor] = None):
        """A projected map [B, C, H, W] and the image padding mask [B, H_img, W_img] -> the encoder's
        (src [B, HW, C], pos [B, HW, C], mask [B, HW], (H, W)); pos is the sine embedding of the map's
        mask, plus ``level_embed`` [C] for a level of a multi-level input."""
        level_mask = F.interpolate(mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
        pos = self.position_embedding(level_mask).to(src.dtype)
        if level_embed is not None:
            pos = pos + level_embed[:, None, None]
        h, w = src.shape[-2:]
        return src.flatten(2).transpose(1, 2), pos.flatten(2).transpose(1, 2), level_mask.flatten(1), (h, w)

    def _image_sizes(self, images: ImageList) -> Tensor:
        """[B, 2] (h, w) of each unpadded image; int(): under tracing (fvcore) ImageList holds tensors."""
        return torch.tensor([[int(h), int(w)] for h, w in images.image_sizes], dtype=torch.float32, device=self.device)

    def predict(self, dec: DecoderOutput) -> Dict[str, Tensor]:
        """Shared heads on every layer -> {"pred_logits": [L, B, Q, K], "pred_boxes": [L, B, Q, 4]}."""
        logits = self.class_embed(dec.hidden)
        box_hidden = dec.hidden if dec.box_hidden is None else dec.box_hidden
        delta = self.bbox_embed(box_hidden)
        ref = dec.reference_logits if dec.reference_logits is not None else inverse_sigmoid(dec.references, self.reference_eps)
        r = ref.shape[-1]
        boxes = torch.cat([delta[..., :r] + ref, delta[..., r:]], dim=-1).sigmoid()
        return {"pred_logits": logits, "pred_boxes": boxes}

    def forward_outputs(self, batched_inputs: List[dict], targets: Optional[List[dict]] = None):
        """Everything up to the per-layer predictions. Returns (outputs, images, decoder output); the
        decoder output's ``extra["memory"]`` is the :class:`EncoderMemory` and ``extra["queries"]`` the
        :class:`Queries` (for tools). ``targets`` go to the query initialiser."""
        images, mask = self.preprocess_image(batched_inputs)
        mem = self.encode(images, mask)
        queries = self.query_init(mem, targets)
        if not isinstance(queries, Queries):
            raise TypeError(f"{type(self).__name__}: query_init {type(self.query_init).__name__} returned "
                            f"{type(queries).__name__}, expected sd_detr.modeling.structures.Queries")
        dec = self.decoder(mem, queries, box_head=self.bbox_embed)
        dec.extra.setdefault("memory", mem)
        dec.extra.setdefault("queries", queries)
        pred = self.predict(dec)
        known = queries.known
        if known is not None:
            # the known queries (e.g. denoising) are neither matched nor reported: split them off
            m = known.num_matching
            stages = [{"pred_logits": a[:, m:], "pred_boxes": b[:, m:]} for a, b in zip(pred["pred_logits"], pred["pred_boxes"])]
            pred = {k: v[:, :, :m] for k, v in pred.items()}
        outputs = {"pred_logits": pred["pred_logits"][-1], "pred_boxes": pred["pred_boxes"][-1]}
        if known is not None:
            outputs["known_outputs"] = {"name": known.name, "assignment": known.assignment, "stages": stages}
        if self.aux_loss:
            outputs["aux_outputs"] = [
                {"pred_logits": a, "pred_boxes": b} for a, b in zip(pred["pred_logits"][:-1], pred["pred_boxes"][:-1])
            ]
        extra = dict(queries.extra_outputs)
        extra.update(dec.extra.get("extra_outputs", {}))
        if extra:
            outputs["extra_outputs"] = extra
        return outputs, images, dec

    def forward(self, batched_inputs: List[dict]):
        """
        Args:
            batched_inputs: Detectron2 dicts with "image" [C, H, W] (``input_format`` order, 0-255),
                "instances" (training), optional "height"/"width" (output resolution).
        Returns:
            training: dict of weighted losses; eval: list of {"instances": Instances} with absolute xyxy
            ``pred_boxes``, ``scores``, ``pred_classes`` at the requested output resolution.
        """
        if self.training:
            for x in batched_inputs:
                if "instances" not in x:
                    raise KeyError(f"{type(self).__name__}: training input {x.get('file_name', '')!r} has no 'instances'")
        targets = self.prepare_targets(batched_inputs) if self.training else None
        outputs, images, _ = self.forward_outputs(batched_inputs, targets)
        if self.training:
            return self.criterion(outputs, targets)
        results = self.inference(outputs["pred_logits"], outputs["pred_boxes"], images.image_sizes)
        processed = []
        for res, x, size in zip(results, batched_inputs, images.image_sizes):
            processed.append({"instances": self.postprocess(res, x.get("height", size[0]), x.get("width", size[1]))})
        return processed

    def postprocess(self, results: Instances, output_height, output_width) -> Instances:
        """Detections in input-image pixels -> the output resolution (absolute xyxy): Detectron2's
        :func:`detector_postprocess` (clipped, empty boxes dropped) if ``clip_boxes``, else
        :func:`rescale_detections` (every detection kept, unclipped, as officially)."""
        if self.clip_boxes:
            return detector_postprocess(results, output_height, output_width)
        return rescale_detections(results, output_height, output_width)

    def inference(self, logits: Tensor, boxes: Tensor, image_sizes) -> List[Instances]:
        """Top-k over queries x classes of the sigmoid scores.

        logits: [B, Q, K]; boxes: [B, Q, 4] normalised cxcywh; image_sizes: (h, w) of each unpadded
        input. Returns Instances in input-image pixels (absolute xyxy).
        """
        bsz, nq, k = logits.shape
        prob = logits.sigmoid().view(bsz, -1)
        num = min(self.num_select, nq * k)
        scores, index = prob.topk(num, dim=1)
        query = torch.div(index, k, rounding_mode="floor")
        labels = index % k
        results = []
        for i, (h, w) in enumerate(image_sizes):
            xyxy = box_cxcywh_to_xyxy(boxes[i, query[i]])
            xyxy = xyxy * torch.tensor([w, h, w, h], dtype=xyxy.dtype, device=xyxy.device)
            res = Instances((h, w))
            res.pred_boxes = Boxes(xyxy)
            res.scores = scores[i]
            res.pred_classes = labels[i]
            results.append(res)
        return results


def rescale_detections(results: Instances, output_height, output_width) -> Instances:
    """Scale detections from the input resolution ``results.image_size`` (h, w) to (output_height,
    output_width): ``pred_boxes`` (absolute xyxy) times (w_out / w_in, h_out / h_in), other fields as
    they are. Unlike :func:`detector_postprocess` nothing is clipped to the image and no detection is
    dropped (the official DETR-family ``PostProcess``). Sizes may be tensors (tracing)."""
    if isinstance(output_width, torch.Tensor):
        # as detector_postprocess: keep the scale a tensor so that a traced graph stays size-generic
        scale_x = output_width.float() / results.image_size[1]
        scale_y = output_height.float() / results.image_size[0]
    else:
        scale_x = output_width / results.image_size[1]
        scale_y = output_height / results.image_size[0]
    out = Instances((output_height, output_width), **results.get_fields())
    out.pred_boxes = Boxes(out.pred_boxes.tensor.clone())  # scale() works in place
    out.pred_boxes.scale(scale_x, scale_y)
    return out
