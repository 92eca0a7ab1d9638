#!/usr/bin/env python
"""Convert a checkpoint released by an official implementation to this project's parameter names.

The official COCO class heads (index = COCO category id) are mapped to Detectron2's 80 contiguous
classes; every official key must be covered by a rule (unknown keys are listed, never dropped, with the
--source the checkpoint looks like when it is another family's).

Example:
  python tools/convert_checkpoint.py --source conditional_detr \\
      --input ConditionalDETR_r50_epoch50.pth --output conditional_detr_r50_50ep_converted.pth
  python tools/lazyconfig_train_net.py --eval-only \\
      --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py \\
      train.init_checkpoint=conditional_detr_r50_50ep_converted.pth
"""
import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import torch  # noqa: E402

from sd_detr.checkpoint import CONVERTERS, convert_state_dict, load_torch_weights  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=sorted(CONVERTERS), help="official implementation")
    parser.add_argument("--input", required=True, help="official checkpoint (.pth with a 'model' entry)")
    parser.add_argument("--output", required=True, help="converted checkpoint to write")
    parser.add_argument("--num-classes", type=int, default=80,
                        help="80: map the COCO-id head to Detectron2's classes; else keep the official head")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        parser.error(f"--input {args.input} does not exist")
    # Official checkpoints pickle their training options (an argparse.Namespace) under 'args' next to the
    # weights (Atten4Vis/ConditionalDETR main.py:216-222, utils.save_on_master({..., 'args': args})): that class is
    # allowed, anything else a file names is refused before it runs (torch.load weights_only=True).
    try:
        ckpt = load_torch_weights(args.input, extra_globals=[argparse.Namespace])
    except pickle.UnpicklingError as e:  # UnsafeCheckpointError: names the file and the refused global
        sys.exit(str(e))
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        sys.exit(f"{args.input}: not a state dict (expected a dict of tensors or a dict with a 'model' entry)")
    try:
        converted = convert_state_dict(args.source, state, num_classes=args.num_classes)
    except (KeyError, ValueError) as e:  # unknown keys (with the --source they look like), bad duplicates
        sys.exit(f"{args.input}: {e.args[0] if e.args else e}")
    torch.save({"model": converted, "__author__": f"sd_detr convert_checkpoint ({args.source})"}, args.output)
    print(f"converted {len(state)} tensors of {args.input} ({args.source}) -> {args.output}")


if __name__ == "__main__":
    main()
