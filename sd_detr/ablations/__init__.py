"""Ablation tables on the synthetic data: the tables as data (:mod:`.tables`), the statistics over seeds
(:mod:`.stats`), running the rows through the training tool (:mod:`.runner`) and the markdown they are
written to (:mod:`.report`). ``tools/run_ablations.py`` is the command line."""
from .report import list_text, render, run_tables, update_doc
from .runner import (TrainTool, budget_note, command, eval_command, eval_dir, final_eval, parse_copypaste, run_key,
                     run_row, run_table, seeds_for, shell_line)
from .stats import aggregate, compare, fmt, summarize
from .tables import (METRICS, NEW_DOMAIN, NUCLEI_HELDOUT, NUCLEI_TRAIN, SEED_BASE, SYNTHETIC_VAL_SHIFT,
                     SYNTHETIC_VAL_SHIFT_BACKGROUND, SYNTHETIC_VAL_SHIFT_OBJECTS, TABLES, Row, Table, make_tables, table_detectors)

__all__ = ["METRICS", "NEW_DOMAIN", "NUCLEI_HELDOUT", "NUCLEI_TRAIN", "SEED_BASE", "SYNTHETIC_VAL_SHIFT",
           "SYNTHETIC_VAL_SHIFT_BACKGROUND", "SYNTHETIC_VAL_SHIFT_OBJECTS", "TABLES", "Row", "Table", "TrainTool",
           "aggregate", "budget_note", "command", "compare", "eval_command", "eval_dir", "final_eval", "fmt", "make_tables",
           "list_text", "parse_copypaste", "render", "run_key", "run_row", "run_table", "run_tables", "seeds_for",
           "shell_line", "summarize", "table_detectors", "update_doc"]
