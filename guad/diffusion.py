"""The noise schedule and the forward (noising) process. Samplers live in guad/sampling.py.

Linear betas 1e-4 .. 2e-2 over T = 1000 steps (MONAI's DDPMScheduler makes the values);
training draws t uniformly from [0, 550). With abar_t = prod_{s<=t} (1 - beta_s):

    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    x0  = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.schedulers import DDPMScheduler

T = 1000
BETA_START, BETA_END = 1e-4, 2e-2
TRAIN_T_MAX = 550  # training draws t from [0, TRAIN_T_MAX)


def make_scheduler() -> DDPMScheduler:
    """MONAI's DDPM scheduler with the paper's schedule (for the samplers to step with)."""
    return DDPMScheduler(num_train_timesteps=T, schedule="linear_beta",
                         beta_start=BETA_START, beta_end=BETA_END)


@dataclass
class NoiseSchedule:
    betas: torch.Tensor            # (T,) float32
    alphas_cumprod: torch.Tensor   # (T,) float32, abar_t

    @classmethod
    def linear(cls) -> "NoiseSchedule":
        s = make_scheduler()
        return cls(betas=s.betas.clone(), alphas_cumprod=s.alphas_cumprod.clone())

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(like.device)[t.to(like.device).long()].float()
        return a.view(-1, *([1] * (like.ndim - 1)))  # (B, 1, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise x0 (B, C, ...) to timesteps t (B,)."""
        a = self._abar(t, x0)
        return (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(x0.dtype)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self._abar(t, x_t)
        return ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).to(x_t.dtype)

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        a = self._abar(t, x_t)
        return ((x_t - a.sqrt() * x0) / (1 - a).sqrt()).to(x_t.dtype)

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None,
                         t_max: int = TRAIN_T_MAX, device=None) -> torch.Tensor:
        """Training timesteps, uniform on [0, t_max)."""
        return torch.randint(0, t_max, (n,), generator=generator).to(device or "cpu")
