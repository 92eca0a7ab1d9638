# sd_detr: the two commands of the README, both set up the environment first (idempotent).
#   make demo   train + evaluate a small Conditional DETR on the synthetic data (CPU, a few minutes)
#   make test   run the test suite
# SD_DETR_PYTHON=/path/to/python uses an existing environment instead of ./.venv.
PY := $(if $(SD_DETR_PYTHON),$(SD_DETR_PYTHON),.venv/bin/python)
DEMO_CONFIG := projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py
DEMO_OUT := output/demo_conditional_detr

.PHONY: setup demo test
setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) tools/make_synthetic_dataset.py
	$(PY) tools/lazyconfig_train_net.py --config-file $(DEMO_CONFIG) train.output_dir=$(DEMO_OUT)
	$(PY) tools/visualize_predictions.py --config-file $(DEMO_CONFIG) \
		--checkpoint $(DEMO_OUT)/model_final.pth --output $(DEMO_OUT)/predictions.png

test: setup
	$(PY) -m pytest -q tests
