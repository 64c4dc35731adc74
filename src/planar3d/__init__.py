"""planar3d: exact 2D-to-3D transfer learning for CNNs and vision transformers.

`planar3d.convert(model)` turns a 2D network into a 3D network for (N, C, D, H, W) volumes that
starts from the 2D weights and, in planar mode, reproduces the 2D network slice by slice.
"""

from . import converters  # noqa: F401  (registers the built-in converters)
from .channels import adapt_input_channels
from .context import Axis, ConversionContext, DepthLayer, DepthPolicy, Mode
from .convert import convert
from .errors import UnsupportedModuleError
from .kernels import center_kernel, inflate_kernel, kernel_to_2d, planar_kernel
from .layers.acs_conv import ACSConv3d, acs_split
from .layers.fold import fold_module, is_folded, unfold_module
from .layers.planar_conv import PlanarConv3d, PlanarConvTranspose3d
from .layers.planar_norm import PlanarBatchNorm3d
from .layers.planar_pool import (
    HeadAdaptiveAvgPool2d,
    HeadAdaptiveMaxPool2d,
    PlanarAdaptiveAvgPool3d,
    PlanarAdaptiveMaxPool3d,
    PlanarAvgPool3d,
    PlanarMaxPool3d,
)
from .layers.thick_conv import ThickConv3d
from .registry import default_converters, fold, keep, register_converter
from .report import ConversionReport, conversion_report
from .state_dict import load_2d_state_dict, map_2d_state_dict
from .thicken import planar_to_2d, thicken

__all__ = [
    "ACSConv3d",
    "Axis",
    "ConversionContext",
    "ConversionReport",
    "DepthLayer",
    "DepthPolicy",
    "HeadAdaptiveAvgPool2d",
    "HeadAdaptiveMaxPool2d",
    "Mode",
    "PlanarAdaptiveAvgPool3d",
    "PlanarAdaptiveMaxPool3d",
    "PlanarAvgPool3d",
    "PlanarBatchNorm3d",
    "PlanarConv3d",
    "PlanarConvTranspose3d",
    "PlanarMaxPool3d",
    "ThickConv3d",
    "UnsupportedModuleError",
    "acs_split",
    "adapt_input_channels",
    "center_kernel",
    "conversion_report",
    "convert",
    "default_converters",
    "fold",
    "fold_module",
    "inflate_kernel",
    "is_folded",
    "keep",
    "kernel_to_2d",
    "load_2d_state_dict",
    "map_2d_state_dict",
    "planar_to_2d",
    "planar_kernel",
    "register_converter",
    "thicken",
    "unfold_module",
]

__version__ = "0.1.0"
