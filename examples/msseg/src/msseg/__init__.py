"""MSSEG-2016 lesion segmentation from raw FLAIR with a planar-3D res-u-net (Kolarik et al.,
ICPR 2020), as an example of planar3d: NIfTI in, a lesion mask on the scan's own grid out.
Run ``msseg --help`` (or ``python examples/msseg --help``); the example's README tells more.

Layout, by pipeline stage; imports only go down this list, never up or across to `commands`:

    commands/    the command line: one thin module per command (flags in, library calls)
    evaluation/  metrics, scoring, reports, cross-validation, baseline, overlays, the demo
    inference/   the one prediction path (scan -> slabs -> network -> cube -> native mask)
    training/    the engine (CPU, GPU, torchrun DDP), its runtime, checkpoints, logs
    model/       encoder, planar res-u-net, loss, parameter summary, memory estimate
    phantom/     the synthetic MSSEG look-alike (grid, anatomy, lesions, generator)
    data/        preprocessing, slabs and their Dataset, cube cache, back to native, splits
    io/          finding scans, NIfTI, orientation, the one atomic writer
    config.py, slab_geometry.py, device.py, progress.py
                 the settings and their vocabulary, the slab tiling rule, the device and
                 precision resolver, progress bars: used by every stage
"""
