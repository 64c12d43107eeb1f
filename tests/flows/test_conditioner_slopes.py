"""Conditioner.features_and_slopes: the features of ``features`` and their exact derivatives.

(TorchScript: compiled and checked as part of flowff.energy.md_energy's export.)"""

from __future__ import annotations

import pytest
import torch

from flowff.flows.conditioner import Conditioner


@pytest.mark.parametrize(
    "circular", [[True, False, True, False, True], [True, True, True], [False, False]]
)
def test_features_and_slopes_match_features_and_autograd(circular: list[bool]) -> None:
    conditioner = Conditioner(torch.tensor(circular), [(2, torch.zeros(3))]).double()
    generator = torch.Generator().manual_seed(0)
    context = torch.rand(4, 6, len(circular), generator=generator, dtype=torch.float64) * 1.4 - 0.2
    features, slopes = conditioner.features_and_slopes(context)
    torch.testing.assert_close(features, conditioner.features(context), rtol=0.0, atol=0.0)
    # each feature depends on one context column: its gradient is the slope there, 0 elsewhere
    inputs = conditioner.feature_inputs
    assert inputs.numel() == features.size(-1)
    for j in range(features.size(-1)):
        xr = context.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(conditioner.features(xr)[..., j].sum(), xr)
        expected = torch.zeros_like(grad)
        expected[..., inputs[j]] = slopes[..., j]
        torch.testing.assert_close(grad, expected, rtol=1e-14, atol=1e-14)
