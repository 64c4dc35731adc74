"""The best checkpoint's validation Dice on the validation scans' own grids.

The validation Dice that `train` records every epoch is taken in the working space, over the
validation slabs or windows: it drives nothing but the curves, and it differs from what counts,
the Dice of the written mask on the scan's grid. This measures that for a checkpoint, through
the one prediction path (`msseg.inference.predict.predict_scan`), once at the end of a run.

    scores = native_validation("runs/real/best.pt", validation_entries)   # `msseg train`, `cv`
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from msseg.data.cache import CacheEntry
from msseg.device import resolve_compute
from msseg.evaluation.metrics import dice
from msseg.inference.predict import model_predictor, predict_scan
from msseg.io.nifti import load_scan
from msseg.training.checkpoint import load_model

__all__ = ["native_validation"]


def native_validation(checkpoint: str | Path, entries: Sequence[CacheEntry]) -> dict[str, Any]:
    """Dice of a checkpoint's masks on the validation scans' own grids.

    Args:
        checkpoint: a training checkpoint (its config gives recipe, device and precision).
        entries: the validation scans' cache entries (with masks).
    Returns:
        ``{"checkpoint": str, "space": "native", "dice": {patient_id: Dice}, "mean_dice": float}``
        (JSON-safe).
    Raises:
        FileNotFoundError, ValueError: an unreadable checkpoint or scan, or a scan without mask.
    """
    model, config = load_model(checkpoint)  # read once: the config gives device and precision
    predictor = model_predictor(model, compute=resolve_compute(config.device, config.precision),
                                channels_last=config.channels_last)
    scores = {}
    for entry in entries:
        scan = load_scan(entry.record, allow_empty_mask=True)
        if scan.mask is None:
            raise ValueError(f"{entry.record.patient_id}: validation needs a lesion mask")
        predicted = predict_scan(scan, predictor, config=config, batch_size=config.batch_size,
                                 working=entry.load())
        scores[entry.record.patient_id] = dice(predicted.mask, scan.mask)
    return {"checkpoint": str(checkpoint), "space": "native", "dice": scores,
            "mean_dice": float(np.mean(list(scores.values())))}
