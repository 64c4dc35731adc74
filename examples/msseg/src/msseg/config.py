"""The settings of msseg: the training config with its presets, and the preprocessing settings.

`TrainConfig` holds every choice of a run (model, data geometry, optimisation, runtime); it is
saved inside every checkpoint (`to_dict`) and rebuilt from one (`from_dict`), so prediction uses
exactly the recipe, windows and threshold the model was trained with (`pipeline`, `slabs`).

`RECIPES` lists the recipes that take a scan to the working space the network sees, by the
name `TrainConfig.recipe` gives (`recipe_named`); each is one module of `msseg.recipes`, which
owns its fields, their checks and everything else that differs between recipes:
- "paper" (`msseg.recipes.paper`): the ICPR 2020 pipeline, exactly: every scan resampled to a
  `volume_size`³ cube with sagittal slices first, slabs of whole planes, recomposed by the
  paper's Eq. 1 (or averaged).
- "spacing" (`msseg.recipes.spacing`): for real scans of any size and voxel size: the planar
  axis along the scan's thickest axis (the acquisition's slice direction), in-plane resampling
  to `spacing_mm`, no interpolation across thick slices, and windows of `slab` x `window`² slid
  over the volume with overlap and Gaussian blending.

Presets:

- `paper`: the ICPR 2020 setting (VGG-16 encoder and bottleneck frozen, Adam 5e-5 with Keras
  decay, batch 2, 100 epochs, patience 40, 16-slice slabs of 256³ volumes, min-max scaling).
- `real`: the same network and optimisation with the real-data recipe: "spacing" (target
  in-plane spacing: the median of the training scans', as nnU-Net takes it), 16 x 256²
  windows, intensities scaled by robust percentiles of the head. The command line's default.
- `demo`: the paper's recipe and res-u-net at a size a 2-core CPU trains in minutes (64³
  volumes, decoder and bottleneck a quarter as wide, bottleneck trainable, lr 1e-3, 20 epochs) on
  a MobileNetV2 encoder with genuine ImageNet weights (`encoder.offline_mobilenet_v2`; see the
  example's README for VGG-16 on the demo). The demo's phantom is `DEMO_PHANTOM_SCALE` and
  `DEMO_PHANTOM_SEED`.

`PipelineConfig` holds the preprocessing settings that shape the working volume. The recipes,
the vocabulary of the other settings (precisions, depth policies) and the paper's constants
are here or imported here, so that command-line help can show them without importing torch.

    cfg = preset("demo", epochs=3, out_dir="runs/try")   # preset + overrides, validated
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from msseg.recipes.paper import PAPER_THRESHOLD, PaperRecipe
from msseg.recipes.recipe import (
    DEFAULT_PERCENTILES,
    Normalisation,
    Recipe,
    check_positive_int,
    check_scaling,
)
from msseg.recipes.spacing import SpacingRecipe
from msseg.slab_geometry import SlabGeometry

if TYPE_CHECKING:
    from msseg.io.discovery import ScanRecord

__all__ = [
    "DEMO_PHANTOM_SCALE",
    "DEMO_PHANTOM_SEED",
    "PAPER_THRESHOLD",
    "PRECISIONS",
    "PRESETS",
    "RECIPES",
    "PipelineConfig",
    "TrainConfig",
    "preset",
    "recipe_named",
]

# The recipes by name (`TrainConfig.recipe`); a new recipe is a module of msseg.recipes and a
# line here.
RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (PaperRecipe(), SpacingRecipe())}
# Autocast precision: "auto" = bf16 on a GPU that has it, else fp32 (no autocast).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEPTH_POLICIES = ("pool", "keep")
DEMO_PHANTOM_SCALE = 0.125  # centre 01: 18 x 64 x 64 voxels, so the 64³ cube never shrinks a scan
DEMO_PHANTOM_SEED = 0


def recipe_named(name: str) -> Recipe:
    """The recipe `name` of `RECIPES`.

    Raises:
        ValueError: no recipe has that name.
    """
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {name!r}")
    return RECIPES[name]


@dataclass(frozen=True)
class TrainConfig:
    # --- model -------------------------------------------------------------------------------
    encoder: str = "vgg16"  # timm model name; its features_only stages become the planar encoder
    encoder_stages: int = 4  # feature stages used as skips (VGG-16: blocks 1-4; block 5 unused)
    depth_policy: str = "pool"  # "pool": encoder max-pools also pool depth (the paper); "keep"
    pretrained: bool = False  # ImageNet weights from the timm hub (needs a reachable hub)
    weights: str | None = None  # local 2D checkpoint (timm/torchvision state_dict) for the encoder
    train_encoder: bool = False  # the paper freezes the transferred encoder
    train_bottleneck: bool = False  # the paper's public code freezes its (random) bottleneck too
    bottleneck_filters: int = 512  # the two planar (1,3,3) bottleneck convs
    decoder_filters: tuple[int, ...] = (256, 128, 64, 32)  # per decoder level, deepest first
    # --- data geometry -------------------------------------------------------------------------
    recipe: str = "paper"  # one of RECIPES: "paper" (S³ cubes, whole sagittal planes), "spacing"
    volume_size: int = 256  # "paper": S, scans are resampled to S³ cubes (sagittal slices first)
    spacing_mm: float | None = None  # "spacing": in-plane voxel size; None = from spacing_rule
    spacing_rule: str = "median"  # "spacing", spacing_mm None: "median" or "finest" of the scans'
    window: int = 256  # "spacing": in-plane edge of a window (voxels); inputs (N, 3, slab, w, w)
    window_overlap: float = 0.5  # "spacing": in-plane overlap of neighbouring windows (0 to < 1)
    slab: int = 16  # slices per network input, along the planar axis
    slab_step: int = 8  # stride between consecutive slabs (overlap = slab - slab_step)
    normalisation: str = "minmax"  # FLAIR to [-1, 1]: "minmax" (paper) or "percentile" (robust)
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES  # "percentile": (low, high) of the head
    threshold: float = PAPER_THRESHOLD  # probability -> binary lesion mask, in the working space
    # --- optimisation ----------------------------------------------------------------------------
    batch_size: int = 2  # global batch (split evenly across DDP ranks)
    lr: float = 5e-5  # Adam learning rate
    lr_decay: float = 1.99e-7  # Keras decay: lr_t = lr / (1 + lr_decay * optimizer steps)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas (Keras defaults)
    adam_eps: float = 1e-7  # Adam epsilon (Keras default)
    dice_smooth: float = 1.0  # smoothing of the soft Dice in the loss BCE - Dice + 1
    epochs: int = 100  # maximum number of epochs
    samples_per_epoch: int | None = None  # training samples per epoch, drawn afresh (None: all)
    patience: int = 40  # early stopping: epochs without a lower validation loss
    seed: int = 1337  # model init and data order (the sampler shuffles with seed + epoch)
    # --- runtime ---------------------------------------------------------------------------------
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 on a GPU that has it, else fp32), "fp32", "bf16", "fp16"
    channels_last: bool = True  # channels_last_3d memory format for weights and activations
    compile: bool = False  # torch.compile the model (GPU; also works on CPU with a C++ compiler)
    deterministic: bool = False  # deterministic kernels (slower on GPU; CPU training already is)
    num_workers: int = 0  # DataLoader workers (slabs come from memory; 0 is usually enough)
    out_dir: str = "runs/msseg"  # checkpoints, history.csv, curves.png, tensorboard/
    progress: bool = True  # tqdm progress bars (rank 0 only)
    tensorboard: bool = True  # TensorBoard scalars when `tensorboard` is installed

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder_filters", tuple(self.decoder_filters))
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if self.weights is not None:  # a Path would not load back with weights_only=True
            object.__setattr__(self, "weights", str(self.weights))
        self.validate()

    def validate(self) -> None:
        """Check every field; the recipe checks its own (`msseg.recipes.recipe.Recipe.check`).

        Raises:
            ValueError: naming the field, the value found, what is expected and how to fix it.
        """
        for name in ("encoder_stages", "bottleneck_filters", "slab", "slab_step", "batch_size",
                     "epochs"):
            check_positive_int(name, getattr(self, name))
        if self.samples_per_epoch is not None:
            check_positive_int("samples_per_epoch", self.samples_per_epoch)
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 epochs, got {self.patience}")
        if len(self.decoder_filters) != self.encoder_stages or min(self.decoder_filters) < 1:
            raise ValueError(
                f"decoder_filters needs one positive filter count per encoder stage "
                f"(encoder_stages={self.encoder_stages}), got {self.decoder_filters}; e.g. "
                f"{tuple(32 * 2 ** i for i in reversed(range(self.encoder_stages)))}"
            )
        if self.depth_policy not in DEPTH_POLICIES:
            raise ValueError(
                f"depth_policy must be one of {DEPTH_POLICIES}, got {self.depth_policy!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.pretrained and self.weights:
            raise ValueError(
                "pretrained=True (timm hub) and weights=FILE (local) both give encoder weights; "
                "choose one"
            )
        recipe_named(self.recipe).check(self)
        check_scaling(self.normalisation, self.percentiles)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be a probability in (0, 1), got {self.threshold}")
        if self.lr <= 0 or self.lr_decay < 0 or self.adam_eps <= 0 or self.dice_smooth < 0:
            raise ValueError(
                f"need lr > 0, lr_decay >= 0, adam_eps > 0, dice_smooth >= 0; got lr={self.lr}, "
                f"lr_decay={self.lr_decay}, adam_eps={self.adam_eps}, "
                f"dice_smooth={self.dice_smooth}"
            )
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def slabs(self) -> SlabGeometry:
        """The slab geometry: `slab` slices every `slab_step` over `volume_size` (31 slabs for
        the paper's 256 / 16 / 8)."""
        return SlabGeometry(self.volume_size, self.slab, self.slab_step)

    @property
    def pipeline(self) -> PipelineConfig:
        """The preprocessing a model of this config was trained on.

        Raises:
            ValueError: a setting the recipe takes from the data is not set yet (recipe
                "spacing" with `spacing_mm` None: `with_data` first).
        """
        return PipelineConfig(recipe=self.recipe, volume_size=self.volume_size,
                              spacing_mm=self.spacing_mm, normalisation=self.normalisation,
                              percentiles=self.percentiles)

    def with_data(self, records: Sequence[ScanRecord]) -> TrainConfig:
        """This config with what its recipe takes from the training scans filled in (recipe
        "spacing" without `spacing_mm`: the median, or with `spacing_rule` "finest" the
        finest, in-plane voxel size of `records`, from their headers); itself when nothing is
        left to fill in.

        Raises:
            ValueError: no records; FileNotFoundError: a FLAIR file is missing.
        """
        return recipe_named(self.recipe).with_data(self, records)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied and validated.

        Raises:
            TypeError: for an unknown field name (the message lists the valid ones).
            ValueError: for an invalid value.
        """
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(
                f"unknown TrainConfig field(s) {unknown}; valid fields: "
                f"{[f.name for f in fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One ``field = value`` line per field, for logs and reports."""
        return "\n".join(f"  {k:<18} = {v}" for k, v in self.to_dict().items())

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (lists for tuples), safe for `torch.load(weights_only=True)`."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`.

        Raises:
            TypeError: for unknown keys (e.g. a checkpoint from a newer version).
        """
        return cls().replace(**values)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings that shape the working volume; invalid combinations raise ValueError."""

    recipe: str = "paper"  # one of RECIPES (see the module docstring)
    volume_size: int = 256  # "paper": edge S of the canonical cube (paper: 256)
    spacing_mm: float | None = None  # "spacing": in-plane voxel size of the working grid
    flair_order: int = 2  # spline order resampling FLAIR (paper: 2)
    mask_order: int = 0  # spline order resampling the mask, both ways; > 0 cut at 0.5 (paper: 0)
    normalisation: Normalisation = "minmax"  # "minmax" (paper) or "percentile"
    percentiles: tuple[float, float] | None = None  # "percentile" only; None = (0.5, 99.5)

    def __post_init__(self) -> None:
        recipe_named(self.recipe).check_grid(self)
        for name in ("flair_order", "mask_order"):
            order = getattr(self, name)
            if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 5:
                raise ValueError(f"{name} must be a spline order 0..5 (scipy.ndimage.zoom); "
                                 f"found {order!r}")
        check_scaling(self.normalisation, self.percentiles)
        if self.percentiles is not None:
            object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))

    def settings(self) -> dict[str, Any]:
        """The fields that shape this recipe's working volume (the cache key): the recipe's own
        grid settings (`Recipe.grid_settings`) and, for "percentile", the percentiles."""
        return {"recipe": self.recipe, **recipe_named(self.recipe).grid_settings(self),
                "flair_order": self.flair_order, "mask_order": self.mask_order,
                "normalisation": self.normalisation,
                "percentiles": (list(self.percentiles or DEFAULT_PERCENTILES)
                                if self.normalisation == "percentile" else None)}


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    "real": TrainConfig(recipe="spacing", normalisation="percentile"),
    "demo": TrainConfig(
        encoder="mobilenetv2_100",
        volume_size=64,
        bottleneck_filters=128,
        decoder_filters=(64, 32, 16, 8),
        train_bottleneck=True,
        lr=1e-3,
        epochs=20,
        patience=8,
        out_dir="demo_out/train",
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset `name` ("paper", "real" or "demo") with `overrides` applied.

    Raises:
        ValueError: for an unknown preset name or an invalid override value.
        TypeError: for an unknown field name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
