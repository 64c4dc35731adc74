"""A trained model's validation Dice on the validation scans' own grids.

The validation Dice that `train` records every epoch is taken in the working space, over the
validation slabs or windows: it drives nothing but the curves, and it differs from what counts,
the Dice of the written mask on the scan's grid. This measures that for the best checkpoint of a
run, through the one prediction path (`msseg.inference.predict.predict_scan`), once at the end.

    predictor, config = load_predictor(best, device=config.device, precision=config.precision)
    scores = native_validation(predictor, config, validation_entries, checkpoint=best)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from msseg.config import TrainConfig
from msseg.data.cache import CacheEntry
from msseg.evaluation.metrics import dice
from msseg.inference.predict import predict_scan
from msseg.io.nifti import load_scan
from msseg.recipes.recipe import Predictor

__all__ = ["native_validation"]


def native_validation(predictor: Predictor, config: TrainConfig, entries: Sequence[CacheEntry],
                      *, checkpoint: str | Path) -> dict[str, Any]:
    """Dice of a model's masks on the validation scans' own grids.

    Args:
        predictor: the model (`msseg.inference.predictor.load_predictor` of `checkpoint`).
        config: the config it was trained with.
        entries: the validation scans' cache entries (with masks).
        checkpoint: where the model came from, for the record.
    Returns:
        ``{"checkpoint": str, "space": "native", "dice": {patient_id: Dice}, "mean_dice": float}``
        (JSON-safe).
    Raises:
        FileNotFoundError, ValueError: an unreadable scan, or a scan without mask.
    """
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
