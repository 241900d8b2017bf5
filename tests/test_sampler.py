"""Warped flow-matching timesteps, x0 conversion and re-noising (reference §4)."""

import pytest
import torch

from engine_core.sampler import FlowMatchSchedule


def test_warped_timesteps_and_sigmas_match_reference():
    s = FlowMatchSchedule()
    assert s.steps.dtype == torch.float32
    torch.testing.assert_close(s.steps, torch.tensor([1000.0, 957.929, 888.889, 737.589]), rtol=0, atol=1e-3)
    torch.testing.assert_close(s.step_sigmas, torch.tensor([1.0, 0.95793, 0.88889, 0.73759]), rtol=0, atol=1e-5)
    # the sigma of each step is the shifted sigma of the exact table entry
    for t, sig in zip(s.steps, s.step_sigmas):
        assert float(t) == pytest.approx(1000 * float(sig), rel=1e-6)


def test_shift_formula():
    s = FlowMatchSchedule()
    raw = 1 - 260 / 1000
    assert float(s.step_sigmas[1]) == pytest.approx(8 * raw / (1 + 7 * raw), rel=1e-6)


def test_x0_and_renoise():
    xt, v = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    sigma = torch.tensor(0.9, dtype=torch.float32)
    x0 = FlowMatchSchedule.to_x0(v, xt, sigma)
    torch.testing.assert_close(x0, (xt.double() - 0.9 * v.double()).float(), rtol=1e-6, atol=1e-6)
    eps = torch.randn_like(x0)
    torch.testing.assert_close(FlowMatchSchedule.add_noise(x0, eps, sigma), 0.1 * x0 + 0.9 * eps, rtol=1e-5, atol=1e-6)
    assert FlowMatchSchedule.add_noise(x0.bfloat16(), eps.bfloat16(), sigma).dtype == torch.bfloat16


def test_invalid_steps_rejected():
    with pytest.raises(ValueError, match="denoising steps"):
        FlowMatchSchedule((1000, 0))
