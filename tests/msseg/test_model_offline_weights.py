"""The demo's encoder: torchvision's genuine ImageNet MobileNetV2, renamed to timm's names by
position, equals torchvision's network on every slice after planar conversion."""

import pytest
import torch
import torchvision
from msseg.model.encoder import build_encoder, offline_mobilenet_v2


@pytest.mark.realweights
def test_offline_mobilenet_v2_loads_into_the_timm_encoder_by_position():
    try:
        path = offline_mobilenet_v2()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    reference.eval()
    encoder = build_encoder("mobilenetv2_100", weights=path, slab=4).module.eval()
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        taps = encoder(x)
        # timm's 4th tap (96 channels, stride 16) is torchvision's features[:14]
        for d in range(4):
            expected = reference.features[:14](x[:, :, d])
            torch.testing.assert_close(taps[3][:, :, d], expected, rtol=1e-4, atol=1e-4)
    assert taps[3].abs().max() > 1  # real activations, not an all-zero coincidence
