"""Few-step flow-matching sampler of the ShotStream student (shift 8, x0-prediction, no CFG).

Tables are built in float32 exactly like the reference scheduler, so the warped timesteps are
``[1000, 957.929, 888.889, 737.589]`` to the last bit; the x0 conversion runs in float64 and the
re-noising in float32, as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FlowMatchSchedule:
    def __init__(self, denoising_steps: Sequence[int] = (1000, 740, 500, 260), shift: float = 8.0,
                 num_train_timesteps: int = 1000):
        if any(not 0 < s <= num_train_timesteps for s in denoising_steps):
            raise ValueError(f"denoising steps must lie in (0, {num_train_timesteps}], got {list(denoising_steps)}")
        sigmas = torch.linspace(1.0, 0.0, num_train_timesteps + 1)[:-1]
        self.sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)  # float32, as the reference
        self.timesteps = self.sigmas * num_train_timesteps
        # "warp_denoising_step": the nominal steps index the shifted table (with 0 appended).
        table = torch.cat([self.timesteps, torch.zeros(1)])
        self.steps = table[num_train_timesteps - torch.tensor(list(denoising_steps))]
        self.step_sigmas = torch.stack([self.sigma(float(t)) for t in self.steps])

    def sigma(self, timestep: float) -> torch.Tensor:
        """float32 sigma of the scheduler timestep nearest to ``timestep``."""
        return self.sigmas[torch.argmin((self.timesteps - timestep).abs())]

    @staticmethod
    def to_x0(flow: torch.Tensor, xt: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 = x_t - sigma * v, in float64, returned in the prediction's dtype."""
        return (xt.double() - sigma.double() * flow.double()).to(flow.dtype)

    @staticmethod
    def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """(1 - sigma) x0 + sigma * noise, in float32, returned in the noise's dtype."""
        s = sigma.float().to(x0.device)
        return ((1 - s) * x0.float() + s * noise.float()).to(noise.dtype)
