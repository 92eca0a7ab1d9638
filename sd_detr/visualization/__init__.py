"""Pictures of a detector's work (Detectron2's demo/predictor.py and utils/visualizer for sd_detr): the
demo on images and videos (:mod:`.demo`), a grid of test-set detections (:mod:`.predictions`) and the
decoder's cross-attention of one detection (:mod:`.attention`). The command lines are tools/demo.py,
tools/visualize_predictions.py and tools/visualize_attention.py.

The submodules are imported on use (``from sd_detr.visualization.demo import run_demo``): the attention
pictures need the models, the demo does not."""
