"""The files `predict` writes: ``<out>/<id>_mask.nii.gz`` and ``<out>/<id>_prob.nii.gz``.

The mask is uint8 {0, 1}, the probability map float32, both on the FLAIR's grid with its
affine, qform and sform. Earlier outputs of a scan are only replaced on request (`overwrite`),
and then all of them: the old probability map goes even when no new one is written, so a mask
never sits next to a probability map of another run. The mask is written last: where it exists,
the scan's prediction is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from msseg.data.native import NativePrediction
from msseg.io.discovery import PREDICTION_KINDS, prediction_path
from msseg.io.nifti import save_nifti
from msseg.io.orientation import Geometry

__all__ = ["existing_outputs", "write_prediction"]


def existing_outputs(out_dir: str | Path, patient_ids: Sequence[str]) -> list[Path]:
    """The output files of these scans that exist in `out_dir` already."""
    return [path for patient_id in patient_ids for kind in PREDICTION_KINDS
            if (path := prediction_path(out_dir, patient_id, kind)).exists()]


def write_prediction(
    prediction: NativePrediction,
    geometry: Geometry,
    out_dir: str | Path,
    patient_id: str,
    *,
    probabilities: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write one scan's mask (and probability map) into `out_dir`.

    Args:
        prediction: the native-grid prediction (`msseg.inference.predict.predict_scan`).
        geometry: the scan's geometry (shape, affine, qform, sform).
        out_dir: the output folder (created).
        patient_id: names the files.
        probabilities: also write ``<id>_prob.nii.gz``.
        overwrite: replace earlier outputs of this scan (all of them, see the module docstring).
    Returns:
        The mask path.
    Raises:
        FileExistsError: an output of this scan exists and `overwrite` is False.
    """
    found = existing_outputs(out_dir, [patient_id])
    if found and not overwrite:
        raise FileExistsError(f"{found[0]} exists already; pass --overwrite to replace it "
                              f"(overwrite=True) or write to another output folder")
    for path in found:
        path.unlink()
    if probabilities:
        save_nifti(prediction.probability, geometry, prediction_path(out_dir, patient_id, "prob"))
    return save_nifti(prediction.mask, geometry, prediction_path(out_dir, patient_id))
