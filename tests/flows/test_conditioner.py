"""Conditioner MLP: shapes, identity initialisation, periodic embedding, trainability."""

from __future__ import annotations

import pytest
import torch

from flowff.flows.conditioner import Conditioner


def test_shapes_and_identity_initialisation() -> None:
    identity_a = torch.arange(3, dtype=torch.float64)
    identity_b = torch.tensor([-1.0, 5.0], dtype=torch.float64)
    conditioner = Conditioner(
        torch.tensor([True, False, True]), [(4, identity_a), (2, identity_b)]
    ).double()
    context = torch.rand(5, 7, 3, dtype=torch.float64)
    params_a, params_b = conditioner(context)
    assert params_a.shape == (5, 7, 4, 3) and params_b.shape == (5, 7, 2, 2)
    torch.testing.assert_close(params_a, identity_a.expand(5, 7, 4, 3))
    torch.testing.assert_close(params_b, identity_b.expand(5, 7, 2, 2))


def test_default_architecture_is_64_64_silu() -> None:
    conditioner = Conditioner(torch.tensor([False, True]), [(3, torch.zeros(2))])
    linear = [m for m in conditioner.network if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(3, 64), (64, 64), (64, 6)]
    assert sum(isinstance(m, torch.nn.SiLU) for m in conditioner.network) == 2


def test_circular_inputs_are_periodic(toys) -> None:
    conditioner = Conditioner(torch.tensor([True, False]), [(2, torch.zeros(3))]).double()
    toys.randomize_parameters(conditioner)
    context = torch.rand(10, 2, dtype=torch.float64)
    shifted = context + torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(conditioner(shifted)[0], conditioner(context)[0])
    moved = context + torch.tensor([0.0, 0.1], dtype=torch.float64)
    assert (conditioner(moved)[0] - conditioner(context)[0]).abs().max() > 1e-3


def test_every_parameter_gets_a_gradient_after_one_step(toys) -> None:
    conditioner = Conditioner(torch.tensor([True, False]), [(2, torch.zeros(3))]).double()
    optimizer = torch.optim.SGD(conditioner.parameters(), lr=0.1)
    context = torch.rand(8, 2, dtype=torch.float64)
    # With a zero last layer only that layer has a gradient at first (by design, so the flow
    # starts at identity); after one optimiser step every parameter receives a gradient.
    for step in range(2):
        optimizer.zero_grad()
        ((conditioner(context)[0] - 1.0) ** 2).sum().backward()
        gradients = {name: p.grad.abs().sum() for name, p in conditioner.named_parameters()}
        if step == 0:
            assert gradients["network.4.weight"] > 0 and gradients["network.4.bias"] > 0
            assert gradients["network.0.weight"] == 0
        optimizer.step()
    for name, gradient in gradients.items():
        assert gradient > 0, name


def test_without_inputs_parameters_are_trainable_constants() -> None:
    identity = torch.tensor([0.5, -0.5], dtype=torch.float64)
    conditioner = Conditioner(torch.zeros(0, dtype=torch.bool), [(3, identity)]).double()
    (params,) = conditioner(torch.zeros(4, 0, dtype=torch.float64))
    assert params.shape == (4, 3, 2)
    torch.testing.assert_close(params, identity.expand(4, 3, 2))
    params.sum().backward()
    assert [name for name, _ in conditioner.named_parameters()] == ["constant"]
    assert conditioner.constant.grad.abs().min() > 0


def test_bad_inputs_raise() -> None:
    conditioner = Conditioner(torch.tensor([True, False]), [(2, torch.zeros(3))])
    with pytest.raises(ValueError, match="expects 2 inputs"):
        conditioner(torch.rand(4, 3))
    with pytest.raises(ValueError, match="at least one output group"):
        Conditioner(torch.tensor([True]), [])
    with pytest.raises(ValueError, match="hidden widths"):
        Conditioner(torch.tensor([True]), [(1, torch.zeros(2))], hidden=(0,))
