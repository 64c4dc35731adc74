"""MSSEG-2016 lesion segmentation from raw FLAIR with a planar-3D res-u-net (Kolarik et al.,
ICPR 2020), as an example of planar3d: NIfTI in, a lesion mask on the scan's own grid out.
Run ``msseg --help`` (or ``python examples/msseg --help``); the example's README tells more.

Layout, by pipeline stage; imports only go down this list, never up or across to `commands`:

    commands/    the command line: one thin module per command (flags in, library calls)
    workflows/   what runs the stages together: cross-validation, the demo, validation,
                 a recipe's ceiling, the threshold baseline
    inference/   the one prediction path (scan -> working volume -> network -> mask), the
                 network as a predictor
    training/    the engine (CPU, GPU, torchrun DDP), its runtime, checkpoints, logs
    model/       encoder, planar res-u-net, loss, parameter summary, memory estimate
    data/        preprocessing, slabs or windows as a Dataset, the cache, back to native, splits
    evaluation/  metrics, surface distances, scoring mask files, tables, overlays
    device.py    the device and precision resolver
    config.py    the settings and their vocabulary, the presets, the recipes by name
    phantom/     the synthetic MSSEG look-alike (grid, anatomy, lesions, generator)
    recipes/     one module per recipe: its working grid, samples, prediction and checks
    io/, slab_geometry.py, progress.py
                 finding scans, NIfTI, orientation, the one atomic writer; the slab tiling
                 rule; progress bars
"""
