#!/usr/bin/env python
"""Hand-planted mutants of sd_detr/modeling and sd_detr/attention against the fast tests.

Each mutant is a plausible wiring bug (swapped branch halves, a detached tensor, a dropped term, an
ignored option, an off-by-one in a layer range, a wrong sign), written as an exact snippet of the
package and its replacement, with the fast test files (or node ids) that should notice it. For each
mutant the tool copies the repository (tracked and untracked, not ignored files) into a temporary
directory, applies the mutation there (an error if the snippet does not occur exactly once), runs the
selected tests with ``pytest -x`` and that copy first on the import path (``PYTHONPATH=<copy>``, checked
through ``sd_detr.__file__``), restores the file and reports killed / survived in a table. The working
tree itself is never modified.

Before the mutants run, the selected tests run once on the unmutated copy; tests that already fail
there are deselected (reported), so a mutant counts as killed only by a test that passes without it.

``--tests-from REV`` replaces the copy's ``tests/`` by that git revision's (to measure the suite
"before"); test files or node ids missing there are skipped.

Usage::

    python tools/mutation_check.py                       # every mutant, current tests
    python tools/mutation_check.py --tests-from 3663316  # the same mutants against older tests
    python tools/mutation_check.py --only sd_swap_halves tal_alpha_beta_swapped
    python tools/mutation_check.py --check               # only verify every mutant applies and its tests exist
    python tools/mutation_check.py --list

It is a tool, not part of the test suite (it runs pytest dozens of times); CPU is scarce, so each
mutant runs only its relevant test files, with OMP_NUM_THREADS=1.
"""
import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MutationError(ValueError):
    """A mutant that cannot be applied (its snippet is missing or ambiguous)."""


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``original`` (exact text) becomes ``mutated``, inside the definition ``function``
    of ``path``, where the snippet must occur exactly once.

    ``function`` is the dotted name of the definition the snippet lies in, as the code nests it: a
    function (``gaussian_log_weights``), a method (``HungarianMatcher.forward``), a nested function
    (``MiniDetectorQueries.forward.gather``), a class (its body, for class attributes) or a module- or
    class-level assignment (``DETR_KEYS``, ``SDDETR.TAL_KEYS``). A refactor that renames, moves or
    rewrites that definition makes the mutant fail loudly instead of silently landing elsewhere.
    """

    name: str
    path: str
    original: str
    mutated: str
    tests: Tuple[str, ...]
    description: str
    function: str = ""


# ---------------------------------------------------------------------------- test selections
T = "tests/modeling/"
SD_WIRING = T + "test_sd_detr_wiring.py"
HAND_LOSSES = T + "test_criterion_hand_computed.py"
GRAD_REACH = T + "test_gradient_reach.py::test_every_trainable_parameter_gets_a_gradient_and_every_module_runs"
BASE_WIRING = T + "test_baseline_wiring.py"
DISENTANGLED = (SD_WIRING, T + "test_disentangled_decoder.py",
                T + "test_sd_detr.py::test_class_head_reads_the_classification_branch_and_box_head_the_localisation_branch",
                T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part")
SD_META = (SD_WIRING, "tests/config/test_yacs_configs.py::test_sd_detr_yacs_keys_reach_their_places", T + "test_sd_detr.py::test_class_head_reads_the_classification_branch_and_box_head_the_localisation_branch",
           T + "test_sd_detr.py::test_ablation_configs_have_their_rows_parts_and_the_yacs_path_builds_the_same_model",
           T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part")
TAL = (T + "test_task_alignment_loss.py", T + "test_losses.py", SD_WIRING)
ASSIGN = (T + "test_task_alignment_loss.py", SD_WIRING,
          T + "test_sd_detr.py::test_ablation_configs_have_their_rows_parts_and_the_yacs_path_builds_the_same_model")
CRITERION = (T + "test_task_alignment_loss.py", SD_WIRING,
             T + "test_sd_detr.py::test_mini_detector_loss_is_weighted_by_its_extra_stage_weight",
             T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part")
MINI = (T + "test_mini_detector.py", SD_WIRING)
TAQ = (T + "test_task_aware_queries.py", SD_WIRING,
       T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part")
CONDITIONAL = (BASE_WIRING, "tests/attention/test_conditional.py", T + "test_disentangled_decoder.py",
               T + "test_meta_arch.py::test_training_forward_returns_weighted_losses_for_every_decoder_layer_and_backpropagates",
               "tests/checkpoint/test_convert.py::test_conditional_detr_conversion_covers_every_official_key_and_fits_the_r50_config")
ATTENTION = ("tests/attention/test_conditional.py", "tests/attention/test_core.py", "tests/attention/test_gaussian.py",
             BASE_WIRING, T + "test_dab_decoder.py")
SMCA = (BASE_WIRING, "tests/attention/test_gaussian.py",
        T + "test_smca_detr.py::test_centre_is_in_feature_cells_of_each_unpadded_image_and_is_every_layers_reference",
        T + "test_smca_detr.py::test_boxes_are_predicted_relative_to_the_centre")
DAB = (T + "test_dab_decoder.py", BASE_WIRING,
       T + "test_dab_detr.py::test_reported_boxes_are_the_box_head_on_the_normed_output_plus_the_received_anchor")
GOLDEN = "tests/checkpoint/test_golden_official.py::test_converted_official_weights_give_the_official_logits_and_boxes"
ENCODER = (BASE_WIRING, T + "test_dab_detr.py::test_encoder_scales_the_position_embedding_by_content_in_every_layer_including_the_first")

STRUCTURES = (T + "test_structures.py",)
YACS = ("tests/config/test_yacs_configs.py",)
BRUTE = T + "test_matching_brute_force.py"
MATCHING = (BRUTE, T + "test_matcher.py")
CROSS_STAGE = (BRUTE, T + "test_cross_stage_assigner.py")
MULTILEVEL = (T + "test_input_projection.py",
              T + "test_smca_detr.py::test_multiscale_memory_has_levels_of_strides_16_32_64_with_grids_in_stride_32_cells")

DIS = "sd_detr/modeling/decoder/disentangled.py"
DETR = "sd_detr/modeling/meta_arch/detr.py"
SDM = "sd_detr/modeling/meta_arch/sd_detr.py"
BUILD = "sd_detr/modeling/meta_arch/build.py"
LOSSES = "sd_detr/modeling/losses.py"
MATCHER = "sd_detr/modeling/matcher.py"
ASSIGNER = "sd_detr/modeling/assigner.py"

MUTANTS: List[Mutant] = [
    # -------------------------------------------------------------- SD-DETR: meta-architecture and heads
    Mutant("head_class_reads_loc_branch", DETR, "logits = self.class_embed(dec.hidden)",
           "logits = self.class_embed(dec.hidden if dec.box_hidden is None else dec.box_hidden)", SD_META,
           "(b) the class head reads the localisation branch", function="DETRDetector.predict"),
    Mutant("head_box_reads_cls_branch", DETR,
           "box_hidden = dec.hidden if dec.box_hidden is None else dec.box_hidden", "box_hidden = dec.hidden", SD_META,
           "(b) the box head reads the classification branch", function="DETRDetector.predict"),
    Mutant("head_box_ignores_reference", DETR, "boxes = torch.cat([delta[..., :r] + ref, delta[..., r:]], dim=-1)",
           "boxes = torch.cat([delta[..., :r], delta[..., r:]], dim=-1)", SD_META,
           "boxes not predicted relative to their reference / anchor", function="DETRDetector.predict"),
    Mutant("sd_repeat_last_layer_off_by_one", SDM, "list(range(n - 1))", "list(range(n))", SD_META,
           "(f) yacs: repeats applied in the last layer although REPEAT_LAST_LAYER is off",
           function="SDDETR.lazy_model_from_yacs"),
    Mutant("sd_tal_alpha_beta_swapped", SDM,
           '"TAL_ALPHA": ("criterion.class_loss.alpha",), "TAL_BETA": ("criterion.class_loss.beta",)',
           '"TAL_ALPHA": ("criterion.class_loss.beta",), "TAL_BETA": ("criterion.class_loss.alpha",)', SD_META,
           "(e) yacs: TAL_ALPHA and TAL_BETA swapped on the way to the loss", function="SDDETR.TAL_KEYS"),
    Mutant("sd_tal_gamma_ignored", SDM, '"TAL_GAMMA": ("criterion.class_loss.gamma",)}', "}", SD_META,
           "(e) yacs: TAL_GAMMA ignored (the model file's 2 used)", function="SDDETR.TAL_KEYS"),
    # Re-planted 2026-12-07: the encoder-only variant became equivalent once every model file's decoder reads
    # the encoder's dropout (${..encoder.dropout}, 413a77e): the decoder follows the encoder anyway. Set on the
    # decoder only, the key leaves the encoder at the file's value.
    Mutant("yacs_dropout_reaches_the_decoder_only", BUILD, '"DROPOUT": ("encoder.dropout", "decoder.dropout"),',
           '"DROPOUT": ("decoder.dropout",),', YACS, "yacs: a MODEL.DETR key set on one of its two places only",
           function="DETR_KEYS"),
    Mutant("yacs_backbone_built_out_of_the_files_order", BUILD,
           "    for name in model.keys():", "    for name in reversed(list(model.keys())):", YACS,
           "yacs: the parts built in another order than the LazyConfig path (other weights for one seed)",
           function="instantiate_parts"),
    # -------------------------------------------------------------- task-alignment loss, assigner, criterion
    Mutant("tal_alpha_beta_swapped", LOSSES, "return s.pow(self.alpha) * u.pow(self.beta)",
           "return s.pow(self.beta) * u.pow(self.alpha)", TAL, "(e) TAL: t = s^beta u^alpha",
           function="TaskAlignmentLoss.alignment_targets"),
    Mutant("tal_gamma_dropped", LOSSES, "((target - prob).abs().pow(self.gamma) * bce).sum()", "bce.sum()", TAL,
           "(e) TAL: the abs(t - s)^gamma factor dropped (plain BCE)", function="TaskAlignmentLoss.forward"),
    Mutant("tal_iou_dropped", LOSSES, "return s.pow(self.alpha) * u.pow(self.beta)", "return s.pow(self.alpha)", TAL,
           "TAL: the IoU term u^beta dropped from the soft target", function="TaskAlignmentLoss.alignment_targets"),
    Mutant("tal_targets_with_gradient", LOSSES, "    @torch.no_grad()\n    def alignment_targets",
           "    def alignment_targets", TAL, "TAL: the soft targets t not detached",
           function="TaskAlignmentLoss.alignment_targets"),
    Mutant("focal_alpha_ignored", LOSSES, "alpha=self.alpha, gamma=self.gamma", "alpha=-1, gamma=self.gamma", TAL,
           "focal loss: alpha weighting dropped", function="FocalLoss.forward"),
    Mutant("assigner_negative_stages_unwrapped", "sd_detr/modeling/assigner.py",
           "listed = {s % num_stages for s in self.repeat_stages}", "listed = set(self.repeat_stages)",
           ASSIGN + (BRUTE,),
           "(f) repeat_stages: negative indices (-1 = last layer) not wrapped",
           function="HungarianAssigner.repeats_for"),
    Mutant("assigner_repeats_in_last_stage", "sd_detr/modeling/assigner.py",
           "return self.num_repeats if stage in listed else 1",
           "return self.num_repeats if stage in listed or stage == num_stages - 1 else 1", ASSIGN + (BRUTE,),
           "(f) repeats applied in the last layer although repeat_stages leaves it out",
           function="HungarianAssigner.repeats_for"),
    Mutant("criterion_final_stage_first", "sd_detr/modeling/criterion.py",
           'stages = list(outputs.get("aux_outputs", [])) + [final]',
           'stages = [final] + list(outputs.get("aux_outputs", []))', CRITERION,
           "criterion: stages out of order (the last layer's losses from the first layer's predictions)",
           function="SetCriterion.forward"),
    Mutant("criterion_extra_heads_use_main_class_loss", "sd_detr/modeling/criterion.py",
           "self.stage_losses(out, assignment, num_boxes, self.extra_class_loss)",
           "self.stage_losses(out, assignment, num_boxes, self.class_loss)", CRITERION,
           "criterion: the mini-detector trained with the decoder's class loss (TAL) instead of its focal loss",
           function="SetCriterion.forward"),
    Mutant("matcher_class_cost_sign", "sd_detr/modeling/matcher.py", "cost_class = pos[:, tgt_ids] - neg[:, tgt_ids]",
           "cost_class = neg[:, tgt_ids] - pos[:, tgt_ids]", (T + "test_matcher.py", SD_WIRING, BRUTE),
           "matcher: class cost with the wrong sign (confident queries cost more)",
           function="HungarianMatcher.cost_matrix"),
    # -------------------------------------------------------------- mini-detector
    Mutant("mini_towers_read_padding", "sd_detr/modeling/queries/mini_detector.py",
           "memory = masked_memory(mem)\n        x = mem.as_map(memory)", "memory = mem.memory\n        x = mem.as_map(memory)",
           MINI, "(g) the mini-detector's towers read the padded memory (not zeroed)", function="MiniDetector.forward"),
    Mutant("mini_topn_takes_padding", "sd_detr/modeling/queries/mini_detector.py",
           'score = logits.detach().max(dim=-1).values.masked_fill(mask, float("-inf"))',
           "score = logits.detach().max(dim=-1).values", MINI, "(g) the top-N may take padded locations",
           function="MiniDetectorQueries.select"),
    Mutant("mini_queries_not_detached", "sd_detr/modeling/queries/mini_detector.py",
           "index.unsqueeze(-1).expand(-1, -1, x.shape[-1])).detach()", "index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))",
           MINI, "the selected anchors and queries not detached", function="MiniDetectorQueries.forward.gather"),
    Mutant("mini_content_sources_swapped", "sd_detr/modeling/queries/mini_detector.py",
           'CONTENT_SOURCES = {"cls": "cls", "loc": "loc"}', 'CONTENT_SOURCES = {"cls": "loc", "loc": "cls"}', MINI,
           "branch content from the other tower (cls query from the box tower)",
           function="MiniDetectorQueries.CONTENT_SOURCES"),
    # -------------------------------------------------------------- task-aware queries
    Mutant("taq_offsets_detached", "sd_detr/modeling/queries/task_aware.py",
           'out["offsets"][b] = offsets.mean(dim=2)', 'out["offsets"][b] = offsets.mean(dim=2).detach()', TAQ,
           "(c) TAQ: the reference offsets detached from the loss", function="TaskAwareQueryGenerator.forward"),
    Mutant("taq_points_detached", "sd_detr/modeling/queries/task_aware.py", "points = centre + offsets",
           "points = (centre + offsets).detach()", TAQ, "(c) TAQ: the sampling points detached from the loss",
           function="TaskAwareQueryGenerator.forward"),
    Mutant("taq_reads_padding", "sd_detr/modeling/queries/task_aware.py",
           "feature_map = mem.as_map(masked_memory(mem))", "feature_map = mem.as_map()", TAQ,
           "(g) TAQ samples the padded memory (not zeroed)", function="TaskAwareQueryGenerator.forward"),
    Mutant("taq_one_point_head_for_both", "sd_detr/modeling/queries/task_aware.py",
           "delta = self.point_heads[b](rois)", "delta = self.point_heads[self.branches[0]](rois)", TAQ,
           "(c) TAQ: both branches' points from the classification branch's point head",
           function="TaskAwareQueryGenerator.forward"),
    # -------------------------------------------------------------- Conditional DETR
    Mutant("cond_query_scale_removed", "sd_detr/modeling/decoder/conditional.py",
           "scale = 1.0 if i == 0 else self.query_scale(tgt)", "scale = 1.0", CONDITIONAL,
           "(h) Conditional DETR's query scale lambda_q removed", function="ConditionalDecoder.forward"),
    Mutant("cond_query_scale_in_first_layer", "sd_detr/modeling/decoder/conditional.py",
           "scale = 1.0 if i == 0 else self.query_scale(tgt)", "scale = self.query_scale(tgt)", CONDITIONAL,
           "Conditional DETR's lambda_q applied in the first layer too (official: identity there)",
           function="ConditionalDecoder.forward"),
    Mutant("cond_object_query_every_layer", "sd_detr/modeling/decoder/conditional.py",
           "add_query_pos=(i == 0))", "add_query_pos=True)", CONDITIONAL,
           "Conditional DETR: the object query added to the content query in every layer",
           function="ConditionalDecoder.__init__"),
    Mutant("cond_intermediate_layers_not_normed", "sd_detr/modeling/decoder/conditional.py",
           "hidden.append(self.norm(tgt))", "hidden.append(tgt)", CONDITIONAL + (GOLDEN,),
           "Conditional DETR: the intermediate (auxiliary) outputs skip the shared final LayerNorm",
           function="ConditionalDecoder.forward"),
    Mutant("cond_key_spatial_dropped", "sd_detr/attention/conditional.py", "k = _concat_heads(k_content, k_pos, h)",
           "k = _concat_heads(k_content, torch.zeros_like(k_pos), h)", ATTENTION,
           "conditional cross-attention: the key's spatial part dropped (no p_q . p_k term)",
           function="ConditionalCrossAttention.forward"),
    Mutant("cond_first_layer_key_without_pos", "sd_detr/attention/conditional.py",
           "k_content = k_content + k_pos", "k_content = k_content", ATTENTION,
           "conditional cross-attention: the first layer's key content without the image position",
           function="ConditionalCrossAttention.forward"),
    Mutant("attention_padding_mask_ignored", "sd_detr/attention/core.py",
           "    if key_padding_mask is None:\n        return attn_bias", "    if True:\n        return attn_bias",
           ATTENTION, "attention kernel: the key padding mask ignored", function="_additive_mask"),
    # -------------------------------------------------------------- DAB-DETR
    Mutant("dab_modulation_removed", "sd_detr/modeling/decoder/dab.py",
           "if self.ref_anchor_head is not None:\n            spatial = modulate_spatial_query",
           "if False:\n            spatial = modulate_spatial_query", DAB, "(i) DAB-DETR's width/height modulation removed",
           function="DABDecoder.positional_queries"),
    Mutant("dab_modulation_y_by_width", "sd_detr/modeling/decoder/dab.py",
           "y_scale = (ref_wh[..., 1] / anchors[..., 3])", "y_scale = (ref_wh[..., 0] / anchors[..., 2])", DAB,
           "(i) DAB-DETR: the y half modulated by the width ratio", function="modulate_spatial_query"),
    Mutant("dab_query_scale_removed", "sd_detr/modeling/decoder/dab.py",
           "if layer_index > 0:\n            spatial = spatial * self.query_scale(tgt)",
           "if False:\n            spatial = spatial * self.query_scale(tgt)", DAB,
           "DAB-DETR: the content-conditional scale MLP_csq dropped", function="DABDecoder.positional_queries"),
    Mutant("dab_anchor_chain_not_detached", "sd_detr/modeling/decoder/dab.py", "anchors = reference.detach()",
           "anchors = reference", DAB, "DAB-DETR: the anchor chain between layers not detached",
           function="DABDecoder.forward"),
    # -------------------------------------------------------------- SMCA-DETR
    Mutant("multilevel_level_embed_dropped", DETR,
           "            pos = pos + level_embed[:, None, None]", "            pos = pos", MULTILEVEL,
           "multi-scale: the learned level embedding left out of the levels' position embedding",
           function="DETRDetector._flatten_level"),
    Mutant("multilevel_extra_level_not_chained", "sd_detr/modeling/input_projection.py",
           "            x = conv(x)\n            maps.append(x)", "            maps.append(conv(x))", MULTILEVEL,
           "multi-scale: every extra level convolving the last backbone feature instead of the previous level",
           function="MultiLevelProjection.forward"),
    Mutant("smca_gaussian_not_added", "sd_detr/modeling/decoder/smca.py",
           "lvl.memory, lvl.mask, biases[0])", "lvl.memory, lvl.mask, None)", SMCA,
           "(j) SMCA's Gaussian map not added to the co-attention", function="SMCADecoderLayer.forward"),
    Mutant("smca_head_offsets_dropped", "sd_detr/modeling/decoder/smca.py",
           "centers = centers + self.offset_head(x).view(b, q, self.nhead, 2)", "centers = centers", SMCA,
           "SMCA: the head-specific centre offsets dropped", function="SMCADecoderLayer.spatial_prior"),
    Mutant("smca_prior_without_object_query", "sd_detr/modeling/decoder/smca.py",
           "x = self.prior_norm(tgt + query_pos)", "x = self.prior_norm(tgt)", SMCA + (GOLDEN,),
           "SMCA: each layer's offsets / scales predicted from the content alone (official: norm4(tgt + query_pos))",
           function="SMCADecoderLayer.spatial_prior"),
    Mutant("gaussian_sign_flipped", "sd_detr/attention/gaussian.py", "return (-sq.sum(-1) / beta).transpose(1, 2)",
           "return (sq.sum(-1) / beta).transpose(1, 2)", SMCA, "(j) SMCA: log G with the wrong sign",
           function="gaussian_log_weights"),
    Mutant("gaussian_scale_not_squared", "sd_detr/attention/gaussian.py", "sq = sq * scales.pow(2)[:, :, :, None, :]",
           "sq = sq * scales[:, :, :, None, :]", SMCA, "SMCA: the scale s not squared",
           function="gaussian_log_weights"),
    # -------------------------------------------------------------- encoder
    Mutant("encoder_position_on_values", "sd_detr/modeling/encoder.py",
           "out = self.self_attn(q, k, src, key_padding_mask=key_padding_mask)",
           "out = self.self_attn(q, k, q, key_padding_mask=key_padding_mask)", ENCODER,
           "encoder: the position embedding added to the values too", function="TransformerEncoderLayer.forward"),
    Mutant("encoder_dab_scale_from_input", "sd_detr/modeling/encoder.py", "pos * self.query_scale(out)",
           "pos * self.query_scale(src)", ENCODER + (GOLDEN,),
           "DAB-DETR encoder: every layer's position scale from the encoder input, not the current features",
           function="TransformerEncoder.forward"),
    # -------------------------------------------------------------- SD-DETR disentangled decoder (last: H1 rewrote
    # its self-attention; these snippets are of the file after that rewrite)
    Mutant("sd_swap_halves", DIS, "tgts = list(joint.split(self.d_model, dim=-1))",
           "tgts = list(joint.split(self.d_model, dim=-1))[::-1]", DISENTANGLED,
           "(a) the cls and loc halves swapped after the shared self-attention",
           function="DisentangledDecoderLayer.forward"),
    Mutant("sd_self_attn_pos_swapped", DIS, "torch.cat(query_pos, dim=-1), self_attn_bias)", "torch.cat(query_pos[::-1], dim=-1), self_attn_bias)",
           DISENTANGLED, "(d) the shared self-attention's positional embedding halves swapped",
           function="DisentangledDecoderLayer.forward"),
    Mutant("sd_offsets_detached_in_decoder", DIS, "anchors[..., :2] + offsets[b] if b in offsets",
           "anchors[..., :2] + offsets[b].detach() if b in offsets", DISENTANGLED,
           "(c) the task-aware offsets detached where the decoder adds them", function="DisentangledDecoder.forward"),
    Mutant("sd_one_reference_for_both", DIS, "query_pos = [sine_embedding(c, self.d_model // 2)",
           "query_pos = [sine_embedding(centres[-1], self.d_model // 2)", DISENTANGLED,
           "(d) both branches' positional embeddings from the loc reference", function="DisentangledDecoder.forward"),
    Mutant("sd_query_scale_removed", DIS, "if i == 0:\n                spatial = query_pos",
           "if True:\n                spatial = query_pos", DISENTANGLED,
           "SD-DETR: the cross-attention spatial query without lambda_q after the first layer",
           function="DisentangledDecoder.forward"),
    Mutant("sd_query_scale_from_cls_output", DIS, "self.query_scale[b](t) for b, (p, t)",
           "self.query_scale[b](tgts[0]) for b, (p, t)", DISENTANGLED,
           "SD-DETR: both branches' lambda_q from the classification branch's output",
           function="DisentangledDecoder.forward"),
    Mutant("sd_spatial_query_swapped", DIS, "spatial[b], key_padding_mask=mem.mask)",
           "spatial[-1 - b], key_padding_mask=mem.mask)", DISENTANGLED,
           "(d) a branch's cross-attention with the other branch's spatial query",
           function="DisentangledDecoderLayer.forward"),
    Mutant("sd_cross_attn_padding_ignored", DIS, "spatial[b], key_padding_mask=mem.mask)",
           "spatial[b], key_padding_mask=None)", DISENTANGLED, "SD-DETR cross-attention attends to padding",
           function="DisentangledDecoderLayer.forward"),
    Mutant("sd_outputs_hidden_from_loc", DIS, "hidden=hidden[0],", "hidden=hidden[-1],", DISENTANGLED,
           "(b) the decoder's hidden (class head input) is the localisation branch",
           function="DisentangledDecoder.forward"),
    Mutant("sd_outputs_box_hidden_from_cls", DIS, "box_hidden=hidden[-1] if len(hidden) > 1 else None",
           "box_hidden=hidden[0] if len(hidden) > 1 else None", DISENTANGLED,
           "(b) the decoder's box_hidden (box head input) is the classification branch",
           function="DisentangledDecoder.forward"),
    Mutant("sd_final_norm_shared", DIS, "normed = [self.norm[b](t) for b, t in enumerate(tgts)]",
           "normed = [self.norm[0](t) for b, t in enumerate(tgts)]", DISENTANGLED,
           "SD-DETR: both branches through the classification branch's final LayerNorm",
           function="DisentangledDecoder.forward"),
    Mutant("sd_reference_not_clamped", DIS, "centres = [c.clamp(0.0, 1.0) for c in centres]",
           "centres = [c for c in centres]", DISENTANGLED, "SD-DETR references pushed outside the image not clamped",
           function="DisentangledDecoder.forward"),
    # -------------------------------------------------------------- the queries' contract (structures.py)
    Mutant("cond_self_attn_mask_ignored", "sd_detr/modeling/decoder/conditional.py",
           "tgt = layer(tgt, query_pos, pos_embed * scale, mem, bias)", "tgt = layer(tgt, query_pos, pos_embed * scale, mem)",
           STRUCTURES, "Conditional DETR's decoder ignores Queries.self_attn_mask",
           function="ConditionalDecoder.forward"),
    Mutant("dab_self_attn_mask_ignored", "sd_detr/modeling/decoder/dab.py", "tgt = layer(tgt, query_pos, spatial, mem, bias)",
           "tgt = layer(tgt, query_pos, spatial, mem)", STRUCTURES, "DAB-DETR's decoder ignores Queries.self_attn_mask",
           function="DABDecoder.forward"),
    Mutant("smca_self_attn_mask_ignored", "sd_detr/modeling/decoder/smca.py",
           "self.self_attn(q, k, tgt, attn_bias=self_attn_bias)", "self.self_attn(q, k, tgt)", STRUCTURES,
           "SMCA-DETR's decoder layer ignores the self-attention mask", function="SMCADecoderLayer.forward"),
    Mutant("sd_shared_self_attn_mask_ignored", DIS, "torch.cat(query_pos, dim=-1), self_attn_bias)",
           "torch.cat(query_pos, dim=-1), None)", STRUCTURES, "SD-DETR's shared self-attention ignores the mask",
           function="DisentangledDecoderLayer.forward"),
    Mutant("sd_split_self_attn_mask_ignored", DIS, "self._self_attention(b, t, p, self_attn_bias) for b",
           "self._self_attention(b, t, p, None) for b", STRUCTURES,
           "two complete decoders (Table 3): the per-branch self-attentions ignore the mask",
           function="DisentangledDecoderLayer.forward"),
    Mutant("self_attn_mask_sense_inverted", "sd_detr/modeling/structures.py", ".masked_fill(mask, float(\"-inf\"))",
           ".masked_fill(~mask, float(\"-inf\"))", STRUCTURES, "Queries.self_attn_mask read as True = attend",
           function="self_attn_bias"),
    Mutant("known_queries_not_split_off", DETR, "pred = {k: v[:, :, :m] for k, v in pred.items()}", "pred = pred",
           STRUCTURES, "known (denoising) queries matched with the others and reported at inference",
           function="DETRDetector.forward_outputs"),
    Mutant("known_assignment_ignored", "sd_detr/modeling/criterion.py",
           '[known["assignment"]] * len(known["stages"])',
           '[Assignment.from_matches(self.matcher(s["pred_logits"], s["pred_boxes"], targets), targets) '
           'for s in known["stages"]]', STRUCTURES,
           "the criterion matches the known queries instead of using their assignment",
           function="SetCriterion.forward"),
    Mutant("known_intermediate_layers_dropped", "sd_detr/modeling/criterion.py",
           'self.layer_losses(known["stages"], ', 'self.layer_losses(known["stages"][-1:], ', STRUCTURES,
           "the known queries supervised in the last layer only", function="SetCriterion.forward"),
    Mutant("query_init_without_targets", DETR, "queries = self.query_init(mem, targets)", "queries = self.query_init(mem)",
           STRUCTURES, "the training targets do not reach the query initialiser (a DN generator gets None)",
           function="DETRDetector.forward_outputs"),
    # -------------------------------------------------------------- matching: the right counts, the wrong
    # assignment (issue 21). Each target still gets its k queries, but not the ones whose cost is lowest
    # for it, or a bag has the right size but another ground truth; the count checks of test_matcher.py and
    # the one-image hand-made bags of test_cross_stage_assigner.py miss the ones marked (*).
    Mutant("matcher_repeats_interleaved", MATCHER, "c = np.tile(c, (1, num_repeats))",
           "c = np.repeat(c, num_repeats, axis=1)", MATCHING,
           "(*) matcher: the k copies laid out g0 g0 g1 g1 .. while read back as cols % n (g0 g1 .. g0 g1 ..): "
           "each target gets k queries, chosen for other targets' costs", function="HungarianMatcher.match_batch"),
    Mutant("matcher_repeats_rotated", MATCHER, "torch.as_tensor(cols % n, dtype=torch.int64)",
           "torch.as_tensor((cols + (num_repeats > 1)) % n, dtype=torch.int64)", MATCHING,
           "(*) matcher: with k > 1 each query reported with the next target (counts unchanged)",
           function="HungarianMatcher.match_batch"),
    Mutant("matcher_repeats_matched_round_by_round", MATCHER, "rows, cols = linear_sum_assignment(c)",
           "rows, cols, free = [], [], np.arange(c.shape[0])\n"
           "            for r in range(num_repeats):  # planted: k rounds of one-to-one matching on the queries left\n"
           "                rr, cc = linear_sum_assignment(c[free, r * n:(r + 1) * n])\n"
           "                rows, cols = rows + free[rr].tolist(), cols + (cc + r * n).tolist()\n"
           "                free = np.delete(free, rr)\n"
           "            order = np.argsort(rows)\n"
           "            rows, cols = np.asarray(rows, dtype=np.int64)[order], np.asarray(cols, dtype=np.int64)[order]",
           MATCHING, "(*) matcher: repeats matched greedily, k rounds of one-to-one matching, not the joint optimum",
           function="HungarianMatcher.match_batch"),
    Mutant("matcher_image_with_next_images_costs", MATCHER, "c = c[i]\n",
           "c = c[(i + 1) % len(sizes)]\n", MATCHING,
           "matcher: each image's targets matched with the next image's predictions",
           function="HungarianMatcher.match_batch"),
    Mutant("csa_bag_gt_offset_dropped", ASSIGNER, "g = torch.cat([g for _, g in per_image]).to(device) + gt_offset[b]",
           "g = torch.cat([g for _, g in per_image]).to(device)", CROSS_STAGE,
           "(*) cross-stage assigner: the bags and box targets of images after the first read image 0's ground truth "
           "(per-image gt index taken as the batch index)", function="CrossStageAssigner.cross_stage.flat"),
    Mutant("csa_own_match_wins_the_label_box", ASSIGNER, "iou = torch.cat([iou, torch.nan_to_num(own_iou, nan=0.0)])",
           "iou = torch.cat([iou, torch.ones_like(own_iou)])", CROSS_STAGE,
           "(*) keep_own_matches: a label's box is the own match's ground truth even when another of its class "
           "overlaps the query more (bag labels unchanged)", function="CrossStageAssigner.cross_stage"),
    Mutant("csa_best_iou_box_of_first_label", ASSIGNER, "order = torch.sort(-cls_iou, stable=True).indices",
           "order = torch.arange(len(cls_iou), device=device)", CROSS_STAGE,
           "(*) box_targets='best_iou': a multi-label bag's box target from its lowest class, not its best IoU "
           "(same positives, other boxes)", function="CrossStageAssigner.cross_stage"),
    Mutant("csa_label_box_worst_overlap", ASSIGNER, "by_iou = torch.sort(-iou, stable=True).indices",
           "by_iou = torch.sort(iou, stable=True).indices", CROSS_STAGE,
           "cross-stage assigner: a label brought by two ground truths keeps the worse-overlapping one's box",
           function="CrossStageAssigner.cross_stage"),
    # -------------------------------------------------------------- the loss normaliser (issue 21: losses
    # against hand-computed values; these two passed every earlier test: nothing ran with 2 workers or an empty batch)
    Mutant("num_boxes_summed_over_workers", "sd_detr/modeling/criterion.py",
           "return torch.clamp(n / comm.get_world_size(), min=1).item()", "return torch.clamp(n, min=1).item()",
           (HAND_LOSSES + "::test_num_boxes_is_the_worker_average_of_the_ground_truths_at_least_one",),
           "criterion: num_boxes summed over the workers instead of averaged (official: all_reduce / world size)",
           function="SetCriterion.num_boxes"),
    Mutant("num_boxes_unclamped", "sd_detr/modeling/criterion.py",
           "return torch.clamp(n / comm.get_world_size(), min=1).item()", "return (n / comm.get_world_size()).item()",
           (HAND_LOSSES + "::test_num_boxes_is_the_worker_average_of_the_ground_truths_at_least_one",),
           "criterion: num_boxes not clamped at 1 (a batch without objects divides by 0)",
           function="SetCriterion.num_boxes"),
    # -------------------------------------------------------------- a module built but bypassed (issue 21): its
    # parameters exist, are counted and saved, but another module does its work; the gradient-reach net kills them
    Mutant("sd_loc_branch_uses_cls_ffn", "sd_detr/modeling/decoder/disentangled.py",
           "out.append(self.ffn[b](tgt))", "out.append(self.ffn[0](tgt))",
           (GRAD_REACH + "[projects/sd_detr/configs/sd_detr_r50_12ep.py]",),
           "SD-DETR: both branches through the classification branch's FFN (the loc FFN built, never called)",
           function="DisentangledDecoderLayer.forward"),
    Mutant("sd_loc_branch_uses_cls_cross_attn", "sd_detr/modeling/decoder/disentangled.py",
           "ca = self.cross_attn[b](tgt, mem.memory, mem.pos, spatial[b], key_padding_mask=mem.mask)",
           "ca = self.cross_attn[0](tgt, mem.memory, mem.pos, spatial[b], key_padding_mask=mem.mask)",
           (GRAD_REACH + "[projects/sd_detr/configs/sd_detr_r50_12ep.py]",),
           "SD-DETR: both branches through the classification branch's cross-attention (the loc one bypassed)",
           function="DisentangledDecoderLayer.forward"),
    Mutant("cond_query_scale_computed_but_unused", "sd_detr/modeling/decoder/conditional.py",
           "tgt = layer(tgt, query_pos, pos_embed * scale, mem, bias)", "tgt = layer(tgt, query_pos, pos_embed, mem, bias)",
           (GRAD_REACH + "[projects/conditional_detr/configs/conditional_detr_r50_12ep.py]",),
           "Conditional DETR: lambda_q computed (the MLP runs) but not applied to the spatial query",
           function="ConditionalDecoder.forward"),
    Mutant("smca_scale_head_bypassed", "sd_detr/modeling/decoder/smca.py",
           "biases = [gaussian_log_weights(centers, scales, lvl.grid, self.beta) for lvl in levels]",
           "biases = [gaussian_log_weights(centers, None, lvl.grid, self.beta) for lvl in levels]",
           (GRAD_REACH + "[projects/smca_detr/configs/smca_detr_r50_12ep.py]",),
           "SMCA-DETR: the predicted scales not used in the Gaussian map (the scale head runs, its output dropped)",
           function="SMCADecoderLayer.forward"),
    Mutant("dab_ref_anchor_head_detached", "sd_detr/modeling/decoder/dab.py",
           "self.ref_anchor_head(tgt).sigmoid())", "self.ref_anchor_head(tgt).sigmoid().detach())",
           (GRAD_REACH + "[projects/dab_detr/configs/dab_detr_r50_12ep.py]",),
           "DAB-DETR: the width/height modulation head's output detached (the head never trains)",
           function="DABDecoder.positional_queries"),
    # -------------------------------------------------------------- (new sections go here; every mutant names
    # the function it edits, see Mutant)
]


# ---------------------------------------------------------------------------- mechanics
def definition_spans(text: str, path: str = "<text>") -> Dict[str, List[Tuple[int, int]]]:
    """Dotted name -> [(start, end)] character spans of every definition in ``text``: functions,
    methods, nested functions, classes (decorators included, from the start of their first line to the
    end of their last), and module- or class-level assignments to a plain name. A name defined twice
    (e.g. in both branches of an ``if``) has two spans."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise MutationError(f"{path} does not parse: {e}") from e
    line_start = [0]
    for line in text.splitlines(keepends=True):
        line_start.append(line_start[-1] + len(line))
    spans: Dict[str, List[Tuple[int, int]]] = {}

    def add(name, node, first_line):
        spans.setdefault(name, []).append((line_start[first_line - 1], line_start[node.end_lineno]))

    def walk(node, prefix, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                add(name, child, min([child.lineno] + [d.lineno for d in child.decorator_list]))
                walk(child, name + ".", not isinstance(child, ast.ClassDef))
            elif isinstance(child, (ast.Assign, ast.AnnAssign)) and not in_function:
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        add(prefix + t.id, child, child.lineno)
            elif isinstance(child, (ast.stmt, ast.excepthandler)) or type(child).__name__ == "match_case":
                walk(child, prefix, in_function)  # blocks (if, for, try, with ...); expressions hold no definitions

    walk(tree, "", False)
    return spans


def locate(text: str, mutant: Mutant, definitions: Optional[Dict[str, List[Tuple[int, int]]]] = None) -> int:
    """Character offset of ``mutant.original`` in ``text``; a :class:`MutationError` naming the mutant,
    the file and the function unless the snippet occurs exactly once inside that function.
    ``definitions``: ``definition_spans(text)`` if already computed."""
    where = f"mutant {mutant.name} ({mutant.path})"
    if not mutant.function:
        raise MutationError(f"{where}: names no function (set Mutant.function to the definition it edits)")
    if definitions is None:
        definitions = definition_spans(text, mutant.path)
    spans = definitions.get(mutant.function, [])
    if not spans:
        raise MutationError(f"{where}: function {mutant.function} not found in {mutant.path} "
                            "(renamed, moved or removed? update the mutant)")
    if len(spans) > 1:
        raise MutationError(f"{where}: {mutant.function} is defined {len(spans)} times in {mutant.path}")
    start, end = spans[0]
    inside = text.count(mutant.original, start, end)
    if inside != 1:
        elsewhere = text.count(mutant.original) - inside
        hint = f"; it occurs {elsewhere} times elsewhere in the file (moved?)" if elsewhere else ""
        raise MutationError(f"{where}: the original snippet {mutant.original!r} occurs {inside} times in "
                            f"{mutant.function} of {mutant.path} (needs exactly 1){hint}")
    return text.index(mutant.original, start, end)


def apply_mutant(root: str, mutant: Mutant) -> str:
    """Write the mutation into ``root/mutant.path`` (inside ``mutant.function`` only); returns the
    original text (to restore it)."""
    path = os.path.join(root, mutant.path)
    if not os.path.isfile(path):
        raise MutationError(f"mutant {mutant.name}: file {mutant.path} not found under {root}")
    with open(path) as f:
        text = f.read()
    at = locate(text, mutant)
    with open(path, "w") as f:
        f.write(text[:at] + mutant.mutated + text[at + len(mutant.original):])
    return text


def _read_definitions(root: str, rel: str, cache: dict):
    """(text, definition spans) of ``root/rel``, or None if there is no such file; memoised in ``cache``."""
    if rel not in cache:
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            cache[rel] = None
        else:
            with open(path) as f:
                text = f.read()
            cache[rel] = (text, definition_spans(text, rel))
    return cache[rel]


def missing_tests(root: str, mutant: Mutant, cache: Optional[dict] = None) -> List[str]:
    """The test files / node ids of ``mutant`` that do not exist under ``root``: a missing file, or a
    node id whose test (``file::test_x``, ``file::TestCls::test_x``, parameters ``[...]`` ignored) is not
    defined in its file."""
    cache = {} if cache is None else cache
    missing = []
    for t in mutant.tests:
        file, *parts = t.split("::")
        found = _read_definitions(root, file, cache)
        if found is None or parts and ".".join(p.split("[")[0] for p in parts) not in found[1]:
            missing.append(t)
    return missing


def check_mutants(mutants: Sequence[Mutant], root: str = REPO) -> List[str]:
    """One line per problem: a mutant that does not apply (no function, function gone, snippet not
    exactly once inside it), names no tests or tests that do not exist, or a duplicate name."""
    errors = []
    seen = set()
    cache: dict = {}
    for m in mutants:
        if m.name in seen:
            errors.append(f"mutant {m.name}: the name is used twice")
        seen.add(m.name)
        try:
            found = _read_definitions(root, m.path, cache)
            if found is None:
                errors.append(f"mutant {m.name}: file {m.path} not found")
            else:
                locate(found[0], m, found[1])
        except MutationError as e:
            errors.append(str(e))
        if m.original == m.mutated:
            errors.append(f"mutant {m.name}: the mutation changes nothing")
        if not m.tests:
            errors.append(f"mutant {m.name}: names no tests")
        for t in missing_tests(root, m, cache):
            errors.append(f"mutant {m.name}: test {t} does not exist")
    return errors


def restore(root: str, mutant: Mutant, text: str) -> None:
    with open(os.path.join(root, mutant.path), "w") as f:
        f.write(text)


def repository_files(repo: str) -> List[str]:
    """Tracked and untracked files that git does not ignore (the working tree as it is now)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(repo, p))]


MODEL_ZOO_LINKS = os.path.join("sd_detr", "model_zoo", "configs")


def copy_repository(repo: str, dst: str) -> None:
    """Copy the working tree's files, and the git-ignored model-zoo links setup.py makes
    (``sd_detr/model_zoo/configs/<name>`` -> ``../../../configs/<name>`` or ``.../projects/<p>/configs``):
    relative links, so the copy's point to the copy's own config folders."""
    for rel in repository_files(repo):
        target = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(repo, rel), target)
    links = os.path.join(repo, MODEL_ZOO_LINKS)
    if not os.path.isdir(links):
        raise MutationError(f"{links} is missing: install the checkout once (`pip install -e .`), which makes it")
    os.makedirs(os.path.join(dst, MODEL_ZOO_LINKS), exist_ok=True)
    for name in sorted(os.listdir(links)):
        source = os.path.join(links, name)
        if os.path.islink(source) and not os.path.isabs(os.readlink(source)):
            os.symlink(os.readlink(source), os.path.join(dst, MODEL_ZOO_LINKS, name))
        elif os.path.isdir(source):
            shutil.copytree(source, os.path.join(dst, MODEL_ZOO_LINKS, name))


def replace_tests(repo: str, dst: str, rev: str) -> None:
    """Replace ``dst/tests`` by the ``tests/`` tree of git revision ``rev`` of ``repo``."""
    shutil.rmtree(os.path.join(dst, "tests"), ignore_errors=True)
    archive = subprocess.run(["git", "archive", rev, "tests"], cwd=repo, capture_output=True)
    if archive.returncode != 0:
        raise MutationError(f"--tests-from {rev}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", dst], input=archive.stdout, check=True)


def test_env(copy: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=copy, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONWARNINGS="ignore")
    return env


def check_import_path(python: str, copy: str) -> str:
    """``sd_detr.__file__`` as the tests will see it; an error unless it lies inside the copy."""
    proc = subprocess.run([python, "-c", "import sd_detr; print(sd_detr.__file__)"], cwd=copy, env=test_env(copy),
                          capture_output=True, text=True)
    where = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()
    if proc.returncode != 0 or not os.path.realpath(where).startswith(os.path.realpath(copy) + os.sep):
        raise MutationError(f"sd_detr is imported from {where!r}, not from the copy {copy}")
    return where


def existing_tests(copy: str, tests: Sequence[str]) -> List[str]:
    """The test files / node ids whose file exists in the copy (an older revision may lack some)."""
    return [t for t in tests if os.path.isfile(os.path.join(copy, t.split("::")[0]))]


_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def pytest_args(tests: Sequence[str], deselect: Sequence[str] = (), stop_first: bool = True) -> List[str]:
    args = ["-q", "-p", "no:cacheprovider", "-rfE", "--no-header"] + (["-x"] if stop_first else []) + list(tests)
    for d in deselect:
        args += ["--deselect", d]
    return args


# Libraries the tests import that do not depend on the package under test: imported once by the parent
# of ``--fork`` runs, so that each mutant's child skips their import (about 8 s of CPU a run here).
PRELOAD = ("torch", "torchvision", "scipy.optimize", "detectron2.config", "detectron2.modeling",
           "detectron2.structures", "detectron2.utils.comm", "fvcore.nn", "pytest")


def preload() -> None:
    import importlib
    import warnings

    if "sd_detr" in sys.modules:
        raise MutationError("--fork: sd_detr is already imported in the parent; children would not load the copy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            importlib.import_module(name)


def run_pytest_forked(copy: str, tests: Sequence[str], deselect: Sequence[str] = (), stop_first: bool = True,
                      timeout: float = 600) -> Tuple[int, str]:
    """pytest in a forked child of this (preloaded) process, with the copy first on ``sys.path``; the
    child checks that ``sd_detr`` comes from the copy (exit 3 otherwise)."""
    out_path = os.path.join(os.path.dirname(copy), "pytest_output.txt")
    pid = os.fork()
    if pid == 0:  # child
        code = 4
        try:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(copy)
            os.environ.update(test_env(copy))
            sys.dont_write_bytecode = True  # a stale .pyc of a mutated module must never be reused
            sys.path.insert(0, copy)
            import pytest
            import sd_detr

            if not os.path.realpath(sd_detr.__file__).startswith(os.path.realpath(copy) + os.sep):
                print(f"sd_detr imported from {sd_detr.__file__}, not from the copy {copy}")
                code = 3
            else:
                code = int(pytest.main(pytest_args(tests, deselect, stop_first)))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return -1, "timeout"
        time.sleep(0.2)
    with open(out_path) as f:
        output = f.read()
    code = os.waitstatus_to_exitcode(status)
    if code == 3:
        raise MutationError(output.strip())
    return code, output


def run_pytest(python: str, copy: str, tests: Sequence[str], deselect: Sequence[str] = (), stop_first: bool = True,
               timeout: float = 600, fork: bool = False) -> Tuple[int, str]:
    if fork:
        return run_pytest_forked(copy, tests, deselect, stop_first, timeout)
    cmd = [python, "-m", "pytest"] + pytest_args(tests, deselect, stop_first)
    try:
        proc = subprocess.run(cmd, cwd=copy, env=test_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return proc.returncode, proc.stdout + proc.stderr


def failing_ids(output: str) -> List[str]:
    """Node ids (or files, for collection errors) in pytest's ``-rfE`` summary."""
    ids = []
    for line in output.splitlines():
        m = _FAILED.match(line)
        if m:
            ids.append(m.group(2))
    return ids


def first_failure(output: str) -> str:
    ids = failing_ids(output)
    return ids[0] if ids else ""


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | no tests | error
    detail: str
    seconds: float


def run_mutants(mutants: Sequence[Mutant], repo: str = REPO, tests_from: Optional[str] = None,
                python: str = sys.executable, timeout: float = 600, keep: bool = False, fork: bool = False,
                log=print) -> dict:
    """Copy the repository once, take a baseline, then apply / test / restore each mutant in turn
    (``fork``: pytest in forked children of this process, which imports the heavy libraries once)."""
    tmp = tempfile.mkdtemp(prefix="sd_detr_mutants_")
    copy = os.path.join(tmp, "repo")
    try:
        copy_repository(repo, copy)
        if tests_from:
            replace_tests(repo, copy, tests_from)
        for m in mutants:  # every snippet must apply before anything runs
            restore(copy, m, apply_mutant(copy, m))
        where = check_import_path(python, copy)
        log(f"copy: {copy} (sd_detr imported from {where})")
        if fork:
            preload()
        selected = sorted({t for m in mutants for t in existing_tests(copy, m.tests)})
        log(f"baseline: {len(selected)} test selections on the unmutated copy ...")
        rc, out = run_pytest(python, copy, selected, stop_first=False, timeout=timeout * 3, fork=fork)
        broken = failing_ids(out) if rc not in (0, 5) else []
        if rc not in (0, 1, 5):
            raise MutationError(f"baseline pytest run failed (exit {rc}):\n{out[-3000:]}")
        broken_files = {b for b in broken if "::" not in b}
        deselect = [b for b in broken if "::" in b]
        if broken:
            log(f"baseline failures, deselected for every mutant: {broken}")
        results = []
        for m in mutants:
            tests = [t for t in existing_tests(copy, m.tests) if t.split("::")[0] not in broken_files]
            start = time.time()
            if not tests:
                results.append(Result(m, "no tests", "", 0.0))
                log(f"{m.name:40s} no tests")
                continue
            original = apply_mutant(copy, m)
            try:
                rc, out = run_pytest(python, copy, tests, deselect, timeout=timeout, fork=fork)
            finally:
                restore(copy, m, original)
            if rc == 0:
                status, detail = "survived", ""
            elif rc == 5:
                status, detail = "no tests", "nothing collected"
            elif rc == -1:
                status, detail = "killed", "timeout"
            else:
                status, detail = "killed", first_failure(out) or f"pytest exit {rc}"
            results.append(Result(m, status, detail, time.time() - start))
            log(f"{m.name:40s} {status:9s} {time.time() - start:6.1f} s  {detail}")
        return {"results": results, "baseline_failures": broken, "tests_from": tests_from}
    finally:
        if keep:
            log(f"kept the copy at {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def table(report: dict) -> str:
    """Markdown table of the results and a one-line summary."""
    results = report["results"]
    label = f"tests of {report['tests_from']}" if report.get("tests_from") else "current tests"
    lines = [f"| mutant | file | bug | result ({label}) | first failing test |", "|---|---|---|---|---|"]
    for r in results:
        cells = [r.mutant.name, r.mutant.path.replace("sd_detr/", ""), r.mutant.description, r.status, r.detail]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    killed = sum(r.status == "killed" for r in results)
    lines.append("")
    lines.append(f"{killed} of {len(results)} mutants killed ({label}); survivors: "
                 + (", ".join(r.mutant.name for r in results if r.status != "killed") or "none"))
    if report.get("baseline_failures"):
        lines.append(f"deselected (failing without any mutant): {', '.join(report['baseline_failures'])}")
    return "\n".join(lines)


def select(names: Optional[Sequence[str]]) -> List[Mutant]:
    if not names:
        return list(MUTANTS)
    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown mutant(s) {unknown}; --list shows them")
    return [by_name[n] for n in names]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--tests-from", metavar="REV", help="run the tests/ of this git revision instead")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that every mutant applies (its snippet once inside its function) and "
                             "names existing tests")
    parser.add_argument("--output", help="also write the markdown table to this file")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pytest (without --fork)")
    parser.add_argument("--fork", action="store_true",
                        help="run pytest in forked children of this process, which imports torch, detectron2 ... once "
                             "(POSIX; saves their import in every run)")
    args = parser.parse_args(argv)
    mutants = select(args.only)
    if args.list:
        for m in mutants:
            print(f"{m.name:40s} {m.path:45s} {m.description}")
        return 0
    if args.check:
        errors = check_mutants(mutants)
        print("\n".join(errors) or f"all {len(mutants)} mutants apply inside their functions and name existing tests")
        return 1 if errors else 0
    report = run_mutants(mutants, tests_from=args.tests_from, python=args.python, timeout=args.timeout, keep=args.keep,
                         fork=args.fork)
    text = table(report)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
