"""The ceiling of a recipe: what a perfect model would score on the scans' own grids.

Every ground-truth mask goes into the working space exactly as for training (the recipe's
resampling, cut at 0.5) and back exactly as a prediction does (the decision mapped as labels,
`msseg.data.native`); the Dice of that round trip against the original is the best any model
trained with this recipe can reach on the scan, since a perfect working-space prediction
scores exactly this. Boundary errors are also given in mm (`msseg.evaluation.surface`).

    results = recipe_ceiling(records, config.pipeline)       # `msseg ceiling`
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from msseg.config import PipelineConfig
from msseg.data.native import mask_to_native
from msseg.data.preprocess import preprocess_scan
from msseg.evaluation.metrics import dice
from msseg.evaluation.surface import surface_distances
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg.progress import progress_bar

__all__ = ["Ceiling", "recipe_ceiling"]


@dataclass(frozen=True)
class Ceiling:
    """One scan's mask after the round trip through the working space."""

    patient_id: str
    working_shape: tuple[int, int, int]  # (D, H, W), planar axis first
    lesion_voxels: int  # in the scan's consensus
    round_trip_voxels: int  # after the round trip
    dice: float
    hd95_mm: float
    assd_mm: float

    def as_dict(self) -> dict:
        return asdict(self)


def recipe_ceiling(records: Sequence[ScanRecord], config: PipelineConfig, *,
                   progress: bool = True) -> list[Ceiling]:
    """The round-trip scores of every scan's mask under a recipe (see the module docstring).

    Args:
        records: scans with masks.
        config: the recipe (e.g. `TrainConfig.pipeline` of a preset or checkpoint).
        progress: show a progress bar (on a terminal).
    Returns:
        One `Ceiling` per record, in order.
    Raises:
        ValueError: a record without mask; FileNotFoundError, msseg.io.nifti.ScanError: as
            `load_scan`.
    """
    results = []
    for record in progress_bar(records, desc="ceiling", unit="scan", enabled=progress):
        if record.mask is None:
            raise ValueError(f"{record.patient_id}: the ceiling needs the lesion mask; found "
                             f"none. Point --data at scans with masks.")
        scan = load_scan(record, allow_empty_mask=True)
        working = preprocess_scan(scan, config)
        back = mask_to_native(working.mask, working.grid)
        spacing = np.linalg.norm(scan.geometry.affine[:3, :3], axis=0)  # per stored axis
        hd95, assd = surface_distances(back, scan.mask, spacing=spacing)
        results.append(Ceiling(record.patient_id, tuple(working.flair.shape),
                               int(scan.mask.sum()), int(back.sum()),
                               dice(back, scan.mask), hd95, assd))
    return results
