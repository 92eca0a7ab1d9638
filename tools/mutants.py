"""The hand-planted mutants of this repository's package (data for tools/mutation_check.py).

Each mutant is a plausible wiring bug (swapped branch halves, a detached tensor, a dropped term, an ignored
option, an off-by-one in a layer range, a wrong sign) in sd_detr/modeling, sd_detr/attention and the
package's config code, written as an exact snippet of a file (relative to the repository root), the
definition it lies in (``function``, see :class:`sd_detr.testing.mutation.Mutant`) and its replacement, with
the fast test files or node ids that should notice it. New mutants (e.g. a new section) go at the end of
``MUTANTS``, with ``function=`` set. Read with ``sd_detr.testing.mutation.load_mutants(<this file>)``.
"""
from typing import List

from sd_detr.testing.mutation import Mutant

# ---------------------------------------------------------------------------- test selections
T = "tests/modeling/"
SD_WIRING = T + "test_sd_detr_wiring.py"
HAND_LOSSES = T + "test_criterion_hand_computed.py"
GRAD_REACH = T + "test_gradient_reach.py::test_every_trainable_parameter_gets_a_gradient_and_every_module_runs"
BASE_WIRING = T + "test_baseline_wiring.py"
# SD-DETR's branches run batched by default (17bd594); the wiring tests read the per-branch loop (the
# reference), and test_batched_branches.py holds the batched path equal to it: a bug in either path fails it.
BATCHED = T + "test_batched_branches.py"
DISENTANGLED = (SD_WIRING, T + "test_disentangled_decoder.py",
                T + "test_sd_detr.py::test_class_head_reads_the_classification_branch_and_box_head_the_localisation_branch",
                T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part",
                BATCHED)
SD_META = (SD_WIRING, "tests/config/test_yacs_configs.py::test_sd_detr_yacs_keys_reach_their_places", T + "test_sd_detr.py::test_class_head_reads_the_classification_branch_and_box_head_the_localisation_branch",
           T + "test_sd_detr.py::test_ablation_configs_have_their_rows_parts_and_the_yacs_path_builds_the_same_model",
           T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part")
TAL = (T + "test_task_alignment_loss.py", T + "test_losses.py", SD_WIRING)
ASSIGN = (T + "test_task_alignment_loss.py", SD_WIRING,
          T + "test_sd_detr.py::test_ablation_configs_have_their_rows_parts_and_the_yacs_path_builds_the_same_model")
CRITERION = (T + "test_task_alignment_loss.py", SD_WIRING,
             T + "test_sd_detr.py::test_mini_detector_loss_is_weighted_by_its_extra_stage_weight",
             T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part")
MINI = (T + "test_mini_detector.py", SD_WIRING, BATCHED)
TAQ = (T + "test_task_aware_queries.py", SD_WIRING,
       T + "test_sd_detr.py::test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part",
       BATCHED)
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
    # Re-planted 2026-12-07 on the batched path (17bd594 made it the default; the per-branch loop is the tests'
    # reference only).
    Mutant("sd_query_scale_removed", DIS, "spatial = query_pos if i == 0 else list(",
           "spatial = query_pos if True else list(", DISENTANGLED,
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
    # -------------------------------------------------------------- the weights' moving average (train.model_ema)
    Mutant("ema_new_weight_is_decay", "sd_detr/engine/ema.py",
           "torch._foreach_add_(avg, new, alpha=1.0 - self.decay)", "torch._foreach_add_(avg, new, alpha=self.decay)",
           ("tests/engine/test_ema.py::test_update_formula_by_hand",),
           "EMA: the live weights enter with weight decay instead of 1 - decay",
           function="ModelEMA.update"),
    Mutant("ema_not_checkpointed", "sd_detr/engine/train_loop.py",
           'extra = {"model_ema": ema} if ema is not None else {}', "extra = {}",
           ("tests/engine/test_ema.py::test_resume_continues_the_same_average",),
           "EMA: the average left out of the checkpoints (--resume restarts it at the live weights)",
           function="_train"),
    # -------------------------------------------------------------- data augmentation (make demo's no-crop recipe)
    Mutant("crop_prob_branches_swapped", "sd_detr/data/mapper.py",
           "probs=(1.0 - crop_prob, crop_prob)", "probs=(crop_prob, 1.0 - crop_prob)",
           ("tests/data/test_mapper.py::test_crop_prob_zero_never_crops_and_one_always_crops",),
           "augmentation: crop_prob given to the multi-scale branch (crop_prob=1 never crops)",
           function="build_detr_augmentations"),
    # -------------------------------------------------------------- the mapper's all-at-once box transform
    Mutant("mapper_boxes_clipped_to_height_width", "sd_detr/data/mapper.py",
           "[w, h, w, h])", "[h, w, h, w])",
           ("tests/data/test_mapper.py::test_all_at_once_box_transform_equals_detectron2s_per_annotation_path",),
           "mapper: boxes clipped to (h, w) instead of (w, h) (non-square images)",
           function="DetrDatasetMapper._transform_annotations"),
    Mutant("mapper_crowd_annotations_kept", "sd_detr/data/mapper.py",
           'if obj.get("iscrowd", 0) == 0]', ']',
           ("tests/data/test_mapper.py::test_crowd_annotations_are_dropped",),
           "mapper: crowd annotations trained on as objects",
           function="DetrDatasetMapper._transform_annotations"),
    Mutant("mapper_xywh_boxes_not_converted", "sd_detr/data/mapper.py",
           "boxes[rows] = BoxMode.convert(given, mode, BoxMode.XYXY_ABS)", "boxes[rows] = given",
           ("tests/data/test_mapper.py::test_identity_mapping_gives_absolute_xyxy_boxes_and_rgb_channels",),
           "mapper: COCO's XYWH boxes taken as XYXY",
           function="DetrDatasetMapper._transform_annotations"),
    Mutant("mapper_cache_not_read_only", "sd_detr/data/mapper.py",
           "image.setflags(write=False)", "pass",
           ("tests/data/test_mapper.py::test_cached_images_are_read_once_and_equal_to_a_fresh_read",),
           "image cache: cached arrays writable (an in-place augmentation would change later epochs)",
           function="DetrDatasetMapper._read_image"),
    # -------------------------------------------------------------- (new sections go here; every mutant names
    # the function it edits, see Mutant)
]
