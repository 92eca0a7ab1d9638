#!/usr/bin/env python
"""Draw a trained model's decoder cross-attention for the query of one detection, per head and
averaged over heads, as one PNG.

Every conditional cross-attention of the chosen decoder layer is drawn (one for Conditional DETR and
DAB-DETR, one per branch for SD-DETR: classification and localization side by side, the paper's
Figures 1 and 4). Conditional DETR's Figure 4 splits the attention into its spatial term, its content
term and the combined attention: use --parts spatial content combined. Maps are softmax weights over
the encoder feature map, upsampled onto the image, with the detection's box drawn.

Examples:
  python tools/visualize_attention.py \\
      --config-file projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py \\
      --checkpoint output/demo_conditional_detr/model_final.pth \\
      --input datasets/sd_detr_synthetic/val/000003.png --output attention.png --parts spatial content combined
  python tools/visualize_attention.py --config-file projects/sd_detr/configs/sd_detr_tiny_synthetic.py \\
      --checkpoint ... --input image.png --detection 1 --output sd_detr_attention.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

from sd_detr.visualization.attention import ImageReadError, save_attention_picture  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--input", required=True, help="an image file")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--detection", type=int, default=0, help="rank of the detection by score (0 = best)")
    parser.add_argument("--layer", type=int, default=-1, help="decoder layer (default: the last)")
    parser.add_argument("--parts", nargs="+", default=["combined"], choices=["combined", "content", "spatial"])
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = parser.parse_args(argv)
    try:
        maps = save_attention_picture(args.config_file, args.checkpoint, args.input, args.output,
                                      detection=args.detection, layer=args.layer, parts=args.parts, opts=args.opts)
    except ImageReadError as e:
        parser.error(str(e))
    print(f"wrote {args.output}: {', '.join(maps)} x {', '.join(args.parts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
