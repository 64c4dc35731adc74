"""MSSEG-2016 lesion segmentation from raw FLAIR with a planar-3D res-u-net (Kolarik et al.,
ICPR 2020), as an example of planar3d. Run ``python examples/msseg --help``.

Data side (one concept per module):
    dataset      find scans: MSSEG layout, {id} patterns, CSV
    nifti        load + validate a scan; atomic NIfTI writes
    orientation  canonical (sagittal-first) frame from the affine, and back
    pipeline     PipelineConfig; reorient, resample to S³, scale to [-1, 1], 3 channels
    slabs        overlapping sagittal slabs and their recomposition (paper Eq. 1)
    native       cube-frame predictions back to the scan's grid; writing masks
    cache        on-disk cache of preprocessed cubes (``preprocess`` command)
    phantom      synthetic MSSEG look-alike (``phantom`` command); anatomy, lesions, grid
    baseline     best single global threshold (``baseline`` command)

Model and training: config (TrainConfig, presets), encoder, model, losses, engine, checkpoint,
runtime, memory, summary (``summary`` command), inference.

Commands of phase B (each a module with ``add_arguments`` and ``run``):
    train        flags -> TrainConfig -> cache -> split -> engine (``train``; torchrun-ready)
    predict      FLAIR NIfTI -> mask NIfTI on the native grid (``predict``)
    evaluate     voxel and lesion-wise scores, Table 2 layout (``evaluate``)
    cv           the paper's 5-round cross-validation (``cv``); overlay: its figures
    demo         phantom -> training -> prediction -> evaluation on a CPU (``demo``)
See README.md in this folder.
"""
