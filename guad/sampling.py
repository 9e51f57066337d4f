"""Reconstruction samplers: noise a scan once to t0, then denoise it back to a "normal" scan.

Samplers know the noise schedule and call a model; they never look inside it. The model
contract (guad.models.hdae.HDAE):
    latents = model.encode(x0)                       # x0: (B, 1, X, Y, Z) in model units
    eps = model(x_t, t, latents=latents, anatomy=a)  # t: (B,) long; anatomy (B, 1, X, Y, Z) or None

Samplers (`SAMPLERS`):
    ddpm     ancestral DDPM, every step t0-1 .. 0, fixed small variance (the paper's CMM)
    ddim     deterministic DDIM (eta 0), every step (the paper's FGM)
    ddim:K   DDIM over K strided steps from t0-1 down to 0
    x0       one direct prediction of the clean image from x_{t0}
    x0:K     the mean of K such predictions, each from its own noise draw to t0: the grain a
             single draw leaves averages out, at K network calls (a published fast variant)

Timestep convention (MONAI's): x_t for t in [0, T) carries alphas_cumprod[t]; the clean image
comes after the step at t = 0. "Noise to t0 = 400" means x at index t0 - 1 = 399, so the full
samplers make exactly t0 network calls, as the paper counts them (400 for CMM, 500 for FGM).

Determinism: each scan's noise (the initial noise and DDPM's per-step noise) comes from its own
CPU torch.Generator seeded by that scan's seed, so a scan's reconstruction is the same whether it
is scored alone or in a batch, on CPU or GPU (up to the device's float arithmetic).

Why the loops are written here and not MONAI's `scheduler.step`: MONAI's step draws one noise
tensor for the whole batch from one generator, which would tie a scan's result to its batch
mates, and its DDIM only strides uniformly from T - 1, not from t0. The update formulas are the
standard ones; tests check that they equal MONAI's DDPMScheduler / DDIMScheduler step by step
wherever the clamp of the predicted x0 does not bite.

Where it bites, our DDIM follows the code the authors' HDAE is built on (Diffusion Autoencoder,
from OpenAI's guided-diffusion), not MONAI: after the predicted x0 is clamped to the data range,
the noise used to step on is re-derived from it, eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t),
so x_t, x0 and eps stay one consistent triple. MONAI's DDIMScheduler (and diffusers' by default)
steps with the network's raw eps beside the clamped x0. Head CT in the [-10, 90] HU window has
most of its voxels at the bounds (air at 0, bone at 1), and there the raw form puts the clamp's
correction into x at every step, so the error grows with the number of steps: with the stage-2
cpu FGM from t0 = 500 the mean error inside the brain was 10.6 / 18.5 / 26.8 HU with 10 / 50 /
500 steps, and 6.0 / 6.4 HU for 10 / 50 steps with the re-derived eps (README, "Reconstruction").
DDPM needs no such care: its posterior mean is built from the clamped x0 and x_t directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from guad.diffusion import make_scheduler

SAMPLERS = ("ddpm", "ddim", "ddim:K", "x0", "x0:K")
X0_DRAW_SALT = 500_000  # x0:K draw k >= 1 uses salt X0_DRAW_SALT + k (never a ddpm step's t + 1)


@dataclass(frozen=True)
class SamplerSpec:
    name: str  # "ddpm" | "ddim" | "x0"
    steps: int | None = None  # strided ddim: its steps; x0: the number of draws averaged (None: 1)

    @classmethod
    def parse(cls, text: str) -> "SamplerSpec":
        text = text.strip().lower()
        if text in ("ddpm", "ddim", "x0"):
            return cls(text)
        if text.startswith(("ddim:", "x0:")):
            kind, _, k = text.partition(":")
            try:
                k = int(k)
            except ValueError:
                k = 0
            if k >= 1:
                # x0:1 is x0, under x0's name, so its store rows stay the same run
                return cls("x0") if kind == "x0" and k == 1 else cls(kind, k)
        raise ValueError(f"unknown sampler {text!r}; choose one of ddpm, ddim, ddim:K, x0, x0:K (K >= 1)")

    def __str__(self) -> str:
        return f"{self.name}:{self.steps}" if self.steps else self.name

    def timesteps(self, t0: int) -> list[int]:
        """The timesteps at which the network is called, from t0 - 1 down to 0."""
        if self.name == "x0":
            return [t0 - 1]
        if self.steps is None or self.steps >= t0:
            return list(range(t0 - 1, -1, -1))
        ts = torch.linspace(t0 - 1, 0, self.steps).round().long().tolist()
        return sorted(set(ts), reverse=True)

    def network_calls(self, t0: int) -> int:
        if self.name == "x0":
            return self.steps or 1  # K draws, all at t0 - 1
        return len(self.timesteps(t0))

    def run_params(self) -> dict:
        """What a store's run (and a benchmark's score cache) must record beyond the name so
        that scores of a changed sampler never mix with older ones: DDIM's eps has been
        re-derived from the clamped x0 since 2026-12-05 (module docstring); x0 and ddpm did
        not change and keep their keys."""
        return {"ddim_eps": "from-clamped-x0"} if self.name == "ddim" else {}

    def file_tag(self) -> str:
        """The sampler in a file name: its name and run_params, e.g. 'ddim-10_from-clamped-x0'."""
        return "".join([str(self), *(f"_{v}" for v in self.run_params().values())]).replace(":", "-")


def seeded_noise(shape_one: tuple[int, ...], seeds: list[int], salt: int = 0) -> torch.Tensor:
    """(B, *shape_one) standard normal noise, row b drawn from a CPU generator seeded seeds[b]."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) * 1_000_003 + salt)
        out.append(torch.randn(shape_one, generator=g))
    return torch.stack(out)


@torch.no_grad()
def reconstruct(
    model: torch.nn.Module,
    x0: torch.Tensor,
    *,
    t0: int,
    sampler: str | SamplerSpec,
    seeds: list[int],
    anatomy: torch.Tensor | None = None,
    clip: tuple[float, float] = (0.0, 1.0),
    progress=None,
) -> torch.Tensor:
    """Reconstruct x0 (B, 1, X, Y, Z) as the model's "normal" version. Returns (B, 1, X, Y, Z).

    clip: the data range; predicted clean images are clamped to it at every step.
    progress: optional callable(done, total) for progress bars.
    """
    spec = sampler if isinstance(sampler, SamplerSpec) else SamplerSpec.parse(sampler)
    if len(seeds) != x0.shape[0]:
        raise ValueError(f"need one seed per scan: {len(seeds)} seeds for batch {x0.shape[0]}")
    sched = make_scheduler()  # the paper's schedule (guad.diffusion), values from MONAI
    device = x0.device
    acp = sched.alphas_cumprod.to(device=device, dtype=torch.float64)
    betas = sched.betas.to(device=device, dtype=torch.float64)
    lo, hi = clip

    latents = model.encode(x0)
    ts = spec.timesteps(t0)
    shape_one = tuple(x0.shape[1:])
    noise = seeded_noise(shape_one, seeds).to(device=device, dtype=x0.dtype)
    t_start = ts[0]

    def noised(n: torch.Tensor) -> torch.Tensor:  # q(x_{t_start} | x0) with the given noise
        return acp[t_start].sqrt().to(x0.dtype) * x0 + (1 - acp[t_start]).sqrt().to(x0.dtype) * n

    x = noised(noise)

    def predict_x0(x_t: torch.Tensor, t: int) -> torch.Tensor:
        tt = torch.full((x_t.shape[0],), t, device=device, dtype=torch.long)
        eps = model(x_t, tt, latents=latents, anatomy=anatomy).to(torch.float64)
        a = acp[t]
        x_t = x_t.to(torch.float64)
        x0_hat = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(lo, hi)
        # the eps of the clamped x0, so that x_t, x0_hat and eps stay one consistent triple
        # (guided-diffusion; see the module docstring). Only DDIM steps on it.
        return x0_hat, (x_t - a.sqrt() * x0_hat) / (1 - a).sqrt()

    if spec.name == "x0":
        # (B, 1, X, Y, Z): the mean of K single-step predictions; draw 0 is plain x0's noise
        k_draws = spec.steps or 1
        total = predict_x0(x, t_start)[0]
        for k in range(1, k_draws):
            if progress is not None:
                progress(k, k_draws)
            n_k = seeded_noise(shape_one, seeds, salt=X0_DRAW_SALT + k).to(device=device, dtype=x0.dtype)
            total = total + predict_x0(noised(n_k), t_start)[0]
        if progress is not None:
            progress(k_draws, k_draws)
        return (total / k_draws).to(x0.dtype).clamp(lo, hi)

    for i, t in enumerate(ts):
        x0_hat, eps = predict_x0(x, t)
        if spec.name == "ddpm":
            # Posterior q(x_{t-1} | x_t, x0_hat), fixed small variance (DDPM eq. 6-7).
            a_t = acp[t]
            a_prev = acp[t - 1] if t > 0 else torch.ones((), dtype=torch.float64, device=device)
            beta_t = betas[t]
            alpha_t = 1 - beta_t
            mean = (a_prev.sqrt() * beta_t / (1 - a_t)) * x0_hat + (alpha_t.sqrt() * (1 - a_prev) / (1 - a_t)) * x.to(torch.float64)
            if t > 0:
                var = ((1 - a_prev) / (1 - a_t) * beta_t).clamp(min=1e-20)
                z = seeded_noise(shape_one, seeds, salt=t + 1).to(device=device, dtype=torch.float64)
                mean = mean + var.sqrt() * z
            x = mean.to(x0.dtype)
        else:
            # DDIM, eta = 0: move x0_hat to the next (lower) timestep along the same eps.
            t_next = ts[i + 1] if i + 1 < len(ts) else -1
            if t_next < 0:
                x = x0_hat.to(x0.dtype)
            else:
                # DDIM eq. 12, on the eps of the clamped x0 (predict_x0).
                a_next = acp[t_next]
                x = (a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps).to(x0.dtype)
        if progress is not None:
            progress(i + 1, len(ts))
    return x.clamp(lo, hi)
