"""Generate the synthetic shapes dataset on request (the library side of tools/make_synthetic_dataset.py): only
the missing splits unless forced, a dataset made before a split existed getting it added with the existing
data's seed and image sizes (train/val untouched)."""
import time
from typing import Callable, Dict, Optional

from .synthetic import SYNTHETIC_SPLIT_DOMAINS, _existing_generation_args, generate_synthetic_dataset, is_generated


def make_synthetic_dataset(root: str, num_train: int = 320, num_val: int = 80, num_val_shift: Optional[int] = None,
                           seed: int = 0, min_size: int = 128, max_size: int = 192, force: bool = False,
                           progress: bool = True, log: Callable[[str], None] = print) -> Optional[Dict[str, Dict]]:
    """Write the dataset under ``root`` (ROOT/SPLIT/*.png, ROOT/annotations/instances_SPLIT.json): every
    split with ``force``, else only the missing ones (none: nothing is done, said through ``log``). Image
    sides in [min_size, max_size] px; ``num_val_shift`` images per shifted split (None: ``num_val``, or the
    existing data's). Returns :func:`~sd_detr.data.synthetic.generate_synthetic_dataset`'s summary (per
    split: images, annotations), None when nothing was missing; ``log`` gets what a user reads."""
    splits = None  # all
    if not force:
        splits = [s for s in SYNTHETIC_SPLIT_DOMAINS if not is_generated(root, (s,))]
        if not splits:
            log(f"Synthetic dataset already present in {root}; skipping (use --force to regenerate).")
            return None
        if is_generated(root, ("train", "val")):
            # same seed and image sizes as the existing data (and as many images as its val split)
            existing = _existing_generation_args(root)
            seed = existing.get("seed", seed)
            min_size = existing.get("min_size", min_size)
            max_size = existing.get("max_size", max_size)
            if num_val_shift is None:
                num_val_shift = existing.get("num_val_shift")
            log(f"Adding the split(s) {', '.join(splits)} to {root} (train/val left as they are).")
    start = time.perf_counter()
    summary = generate_synthetic_dataset(root, num_train=num_train, num_val=num_val, seed=seed, min_size=min_size,
                                         max_size=max_size, progress=progress, num_val_shift=num_val_shift,
                                         splits=splits)
    elapsed = time.perf_counter() - start
    for split in SYNTHETIC_SPLIT_DOMAINS:
        if split in summary:
            log(f"{split}: {summary[split]['images']} images, {summary[split]['annotations']} annotations")
    log(f"Wrote {root} in {elapsed:.1f} s")
    return summary
