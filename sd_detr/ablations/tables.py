"""The ablation tables as data: a :class:`Table` lists its :class:`Row` s (a config, overrides, tool flags).

A row names its config by its path in a clone of the repository (``projects/<p>/configs/...``): the run's
folder name and hash (:func:`sd_detr.ablations.runner.run_key`) and the commands written to docs/ablations.md
are made from it, and the runner runs the training tool in the clone it is given. The tables that enumerate
the detectors take them from :func:`sd_detr.model_zoo.detectors`.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..model_zoo import detectors

METRICS = ("AP", "AP50", "AP75")
SEED_BASE = 42  # configs/common/train.py's train.seed: the first seed is every config's default
# sd_detr.data.synthetic.SYNTHETIC_VAL_SHIFT*_NAME (not imported: the data module registers data sets)
SYNTHETIC_VAL_SHIFT = "sd_detr_synthetic_val_shift"
SYNTHETIC_VAL_SHIFT_OBJECTS = "sd_detr_synthetic_val_shift_objects"
SYNTHETIC_VAL_SHIFT_BACKGROUND = "sd_detr_synthetic_val_shift_background"
NEW_DOMAIN = {"new-domain": SYNTHETIC_VAL_SHIFT, "new-objects": SYNTHETIC_VAL_SHIFT_OBJECTS,
              "new-background": SYNTHETIC_VAL_SHIFT_BACKGROUND}


@dataclass
class Row:
    """One run: a config file (its path in a clone, relative to the training tool's working folder) and
    overrides; ``paper`` is the paper's COCO AP of the row, when it has one."""

    name: str
    config: str
    overrides: Sequence[str] = ()
    paper: Optional[float] = None
    args: Sequence[str] = ()  # flags of the train tool before the overrides (e.g. --dataset-train J:I)
    # the row (by name) this one's mean AP is compared with in the "AP vs" column: None for the table's
    # first row; a row that names itself is a reference and gets no comparison
    reference: Optional[str] = None


@dataclass
class Table:
    """A table's rows; ``evals`` maps a column label to a data set on which each run's final model is
    evaluated too: a registered dataset name (default: the three domain-shifted synthetic splits,
    :data:`NEW_DOMAIN`) or a ``JSON:IMAGES`` COCO spec (passed as ``--dataset-val``); ``eval_metrics`` are
    the columns shown for each of them. ``main_eval`` names the set of the run's own final evaluation in
    the text."""

    title: str
    description: str
    rows: List[Row] = field(default_factory=list)
    paper_source: str = ""
    evals: Dict[str, str] = field(default_factory=lambda: dict(NEW_DOMAIN))
    # metrics shown per evaluation set in the table (all of METRICS are in the per-seed results): AP75
    # on the shifted synthetic splits is ~0 for every row, so it is left out there
    eval_metrics: Sequence[str] = ("AP", "AP50")
    main_eval: str = "the seen-domain val split"
    data_hint: str = ""  # how to make the table's data, for the error when it is missing
    compare_label: str = "first row"  # what the rows' ``reference`` is, for the column header


def project_config(project: str, name: str) -> str:
    """The clone path of a project's config: ``project_config("sd_detr", "x.py")`` ->
    ``"projects/sd_detr/configs/x.py"`` (the model-zoo name ``"sd_detr/x.py"``)."""
    return f"projects/{project}/configs/{name}"


def table_detectors(found=None):
    """The detectors as the tables list them, ``(title, project)`` pairs: the baselines in registration
    order, then SD-DETR (the paper's detector last, as the tables have always printed it). ``found``: a list
    of :class:`sd_detr.model_zoo.Detector` (default :func:`sd_detr.model_zoo.detectors`)."""
    found = detectors() if found is None else found
    return [(d.title, d.name) for d in sorted(found, key=lambda d: d.name == "sd_detr")]


# The nuclei of the `stardist` wheel, tiled by tools/make_stardist_nuclei_dataset.py (default output).
_NUCLEI = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "stardist_nuclei")
NUCLEI_TRAIN = f"{_NUCLEI}/annotations/instances_train.json:{_NUCLEI}/train"
NUCLEI_HELDOUT = f"{_NUCLEI}/annotations/instances_heldout.json:{_NUCLEI}/heldout"

SD = "projects/sd_detr/configs"
_BASELINE = Row("Baseline: Conditional DETR + mini-detector", f"{SD}/ablations/table2_baseline_tiny_synthetic.py", paper=41.7)
_DFL = Row("+ DFL (split cross-attention)", f"{SD}/ablations/table2_dfl_tiny_synthetic.py", paper=43.1)
_SD_DETR = f"{SD}/sd_detr_tiny_synthetic.py"
# the two detectors whose own matches the assigner may keep as positives (an extra row each, not in the paper)
_KEEP_OWN = ("conditional_detr", "dab_detr")


def make_tables(found=None) -> Dict[str, Table]:
    """Every table by name; the per-detector tables (``stage_assigner``, ``stardist_nuclei``) list the
    detectors of :func:`table_detectors` (``found``: as there)."""
    dets = table_detectors(found)
    return {
        "sd_detr_table2": Table(
            title="SD-DETR Table 2: components",
            description="Each row adds one component (DFL: disentangled feature learning, shared self-attention "
                        "and per-branch cross-attention; TAQ: task-aware query generation; TAL: task-alignment "
                        "loss with each ground truth matched twice in all decoder layers but the last).",
            paper_source="SD-DETR Table 2 (R50, 50 epochs, COCO val2017 AP)",
            rows=[
                _BASELINE,
                _DFL,
                Row("+ DFL + TAQ", f"{SD}/ablations/table2_taq_tiny_synthetic.py", paper=43.6),
                Row("+ DFL + TAQ + TAL (SD-DETR)", _SD_DETR, paper=45.5),
            ],
        ),
        "sd_detr_table3": Table(
            title="SD-DETR Table 3: decoupling structures",
            description="No task-aware queries and no task-alignment loss in any row (as Table 3's 43.1 = Table 2's "
                        "+DFL row).",
            paper_source="SD-DETR Table 3 (R50, 50 epochs, COCO val2017 AP)",
            rows=[
                Row("Baseline (shared decoder)", _BASELINE.config, paper=41.7),
                Row("Split decoder (two complete decoders)", f"{SD}/ablations/table3_split_decoder_tiny_synthetic.py", paper=42.2),
                Row("Split cross-attention (shared self-attention)", _DFL.config, paper=43.1),
            ],
        ),
        "sd_detr_repeats": Table(
            title="SD-DETR repeated positives: which decoder layers",
            description="The full tiny SD-DETR (TAL) with each ground truth matched k times by the Hungarian "
                        "matcher. Without NMS, k > 1 in the last layer trains two queries per object to score "
                        "high, which may leave duplicates at inference; the default is the better row.",
            rows=[
                Row("k = 2 in layers 0-1, one-to-one in the last (default)", _SD_DETR),
                Row("k = 2 in every layer", _SD_DETR, ("model.criterion.assigner.repeat_stages=null",)),
                Row("k = 1 (one-to-one everywhere)", _SD_DETR, ("model.criterion.assigner.num_repeats=1",)),
            ],
        ),
        "stage_assigner": Table(
            title="StageInteractor's cross-stage label assigner, every detector",
            description="Each tiny detector with its own assignment and with the cross-stage assigner (appendix J "
                        "defaults: every stage, range [i-1, L], IoU >= 0.5; localisation from the stage's own "
                        "match). SD-DETR keeps its repeated positives and task-alignment loss in both rows.",
            paper_source="none: StageInteractor reports the assigner on AdaMixer and DINO (its Tables 1, 4), "
                         "not on these detectors",
            rows=[row for name, proj in dets
                  for row in (Row(name, project_config(proj, f"{proj}_tiny_synthetic.py"), reference=name),
                              Row(f"{name} + cross-stage assigner",
                                  project_config(proj, f"{proj}_tiny_synthetic_stage_assigner.py"), reference=name))]
            + [Row(f"{name} + cross-stage assigner, own matches always positive (not in the paper)",
                   project_config(proj, f"{proj}_tiny_synthetic_stage_assigner.py"),
                   ("model.criterion.assigner.keep_own_matches=True",), reference=name)
               for name, proj in dets if proj in _KEEP_OWN],
            # the question is what the assigner does to each detector, not how the detectors rank
            compare_label="the detector alone",
        ),
        "stardist_nuclei": Table(
            title="Real data: the nuclei image of the stardist wheel, four detectors from scratch",
            description="The four tiny detectors (one class, ``num_classes`` from the JSON) trained from scratch on "
                        "12 tiles of 128x128 px of stardist's bundled fluorescence image (99 nuclei, plus cut ones "
                        "marked iscrowd) and evaluated on the 4 held-out tiles of its right-most column (25 "
                        "nuclei), and on the training tiles themselves (fit vs generalisation). Data: "
                        "`python tools/make_stardist_nuclei_dataset.py` (from the installed package or "
                        "`--source` its wheel; nothing is downloaded).",
            rows=[Row(name, project_config(proj, f"{proj}_tiny_synthetic.py"),
                      args=("--dataset-train", NUCLEI_TRAIN, "--dataset-val", NUCLEI_HELDOUT))
                  for name, proj in dets],
            evals={"training-tiles": NUCLEI_TRAIN},
            eval_metrics=METRICS,
            main_eval="the 4 held-out tiles",
            data_hint="make it with `python tools/make_stardist_nuclei_dataset.py` (needs the stardist package "
                      "installed, `pip install --no-deps stardist==0.9.2`, or `--source` its wheel)",
        ),
    }


TABLES: Dict[str, Table] = make_tables()
