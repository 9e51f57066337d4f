"""Samplers: exact agreement with MONAI's schedulers, determinism, timestep bookkeeping."""

import pytest
import torch

from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from guad.diffusion import make_scheduler
from guad.sampling import SamplerSpec, reconstruct, seeded_noise


class ToyModel(torch.nn.Module):
    """A deterministic stand-in with the HDAE contract: encode(x0) and forward(x_t, t, latents, anatomy)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 3, padding=1)
        torch.nn.init.normal_(self.conv.weight, std=0.1, generator=torch.Generator().manual_seed(0))

    def encode(self, x0):
        return [x0.mean(dim=(1, 2, 3, 4))]

    def forward(self, x_t, t, latents=None, anatomy=None):
        return torch.tanh(self.conv(x_t)) * (1 + 0.001 * t.float().view(-1, 1, 1, 1, 1)) + latents[0].view(-1, 1, 1, 1, 1)


@pytest.fixture
def scan():
    g = torch.Generator().manual_seed(1)
    return torch.rand((1, 1, 8, 8, 4), generator=g)


def monai_loop(scheduler, model, x0, t0, seed, clip=(0.0, 1.0), **step_kw):
    acp = scheduler.alphas_cumprod
    noise = seeded_noise(tuple(x0.shape[1:]), [seed])
    t = t0 - 1
    x = acp[t].sqrt() * x0 + (1 - acp[t]).sqrt() * noise
    lat = model.encode(x0)
    for t in range(t0 - 1, -1, -1):
        eps = model(x, torch.tensor([t]), latents=lat)
        if isinstance(scheduler, DDPMScheduler) and t > 0:
            # the per-step noise our sampler uses for this scan, fed through MONAI's generator slot
            g = torch.Generator().manual_seed(seed * 1_000_003 + t + 1)
            x, _ = scheduler.step(eps, t, x, generator=g, **step_kw)
        else:
            x, _ = scheduler.step(eps, t, x, **step_kw)
    return x.clamp(*clip)


def test_ddpm_equals_monai_ddpm_scheduler(scan):
    model = ToyModel()
    ref_s = DDPMScheduler(1000, "linear_beta", clip_sample_min=0.0, clip_sample_max=1.0, beta_start=1e-4, beta_end=2e-2)
    ref = monai_loop(ref_s, model, scan, t0=20, seed=5)
    ours = reconstruct(model, scan, t0=20, sampler="ddpm", seeds=[5])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_full_ddim_equals_monai_ddim_scheduler_where_the_clamp_does_not_bite(scan):
    model = ToyModel()
    ref_s = DDIMScheduler(1000, "linear_beta", clip_sample_min=-50.0, clip_sample_max=50.0, beta_start=1e-4, beta_end=2e-2)
    ref_s.set_timesteps(1000)
    ref = monai_loop(ref_s, model, scan, t0=30, seed=2, clip=(-50.0, 50.0), eta=0.0)
    ours = reconstruct(model, scan, t0=30, sampler="ddim", seeds=[2], clip=(-50.0, 50.0))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_ddim_steps_on_the_eps_of_the_clamped_x0(scan):
    """Where the clamp bites, DDIM re-derives eps from the clamped x0 (guided-diffusion / DiffAE,
    the authors' code base), unlike MONAI's raw-eps step: checked against a hand-written loop."""
    model = ToyModel()
    x0 = scan.clone()
    x0[..., :4, :, :] = 0.0  # "air": voxels at the lower bound of the data range, as in head CT
    acp = make_scheduler().alphas_cumprod.double()
    lat = model.encode(x0)
    t0, bites = 30, 0
    x = acp[t0 - 1].sqrt() * x0.double() + (1 - acp[t0 - 1]).sqrt() * seeded_noise(tuple(x0.shape[1:]), [4]).double()
    for t in range(t0 - 1, -1, -1):
        eps = model(x.float(), torch.tensor([t]), latents=lat).double()
        raw = (x - (1 - acp[t]).sqrt() * eps) / acp[t].sqrt()
        x0_hat = raw.clamp(0, 1)
        bites += int((raw != x0_hat).sum())
        eps = (x - acp[t].sqrt() * x0_hat) / (1 - acp[t]).sqrt()  # the eps of the clamped x0
        x = acp[t - 1].sqrt() * x0_hat + (1 - acp[t - 1]).sqrt() * eps if t > 0 else x0_hat
    assert bites > 0  # the clamp bit at some step
    ours = reconstruct(model, x0, t0=t0, sampler="ddim", seeds=[4])
    torch.testing.assert_close(ours.double(), x, atol=1e-5, rtol=1e-5)
    # and it is not MONAI's raw-eps step, which takes another path from the same start
    ref_s = DDIMScheduler(1000, "linear_beta", clip_sample_min=0.0, clip_sample_max=1.0, beta_start=1e-4, beta_end=2e-2)
    ref_s.set_timesteps(1000)
    monai = monai_loop(ref_s, model, x0, t0=t0, seed=4, eta=0.0)
    assert (ours - monai).abs().max() > 2e-3


def test_sampler_run_params_keep_old_keys_for_unchanged_samplers():
    assert SamplerSpec.parse("x0").run_params() == {} and SamplerSpec.parse("ddpm").run_params() == {}
    assert SamplerSpec.parse("ddim").run_params() == SamplerSpec.parse("ddim:10").run_params() != {}


def test_schedule_is_the_papers():
    s = make_scheduler()
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(2e-2)
    assert len(s.betas) == 1000


@pytest.mark.parametrize("name", ["ddpm", "ddim", "ddim:5", "x0", "x0:3"])
def test_same_scan_and_seed_same_reconstruction_regardless_of_batch(name, scan):
    model = ToyModel()
    other = torch.rand((1, 1, 8, 8, 4), generator=torch.Generator().manual_seed(9))
    a = reconstruct(model, scan, t0=25, sampler=name, seeds=[7])
    b = reconstruct(model, scan, t0=25, sampler=name, seeds=[7])
    batch = reconstruct(model, torch.cat([other, scan]), t0=25, sampler=name, seeds=[3, 7])
    assert torch.equal(a, b)
    torch.testing.assert_close(batch[1:], a, atol=1e-6, rtol=0)
    if name == "ddpm":  # a different seed gives a different (stochastic) reconstruction
        assert not torch.equal(a, reconstruct(model, scan, t0=25, sampler=name, seeds=[8]))


def test_network_calls_and_timesteps():
    assert SamplerSpec.parse("ddpm").network_calls(400) == 400
    assert SamplerSpec.parse("ddim").network_calls(500) == 500
    assert SamplerSpec.parse("x0").network_calls(400) == 1
    spec = SamplerSpec.parse("ddim:20")
    ts = spec.timesteps(400)
    assert len(ts) == 20 and ts[0] == 399 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert str(spec) == "ddim:20"
    with pytest.raises(ValueError, match="unknown sampler"):
        SamplerSpec.parse("euler")
    with pytest.raises(ValueError):
        SamplerSpec.parse("ddim:0")


def test_x0_k_is_the_mean_of_k_single_step_predictions(scan):
    """x0:K averages K x0 predictions at t0 - 1, each from its own seeded noise draw; draw 0 is
    plain x0's, so x0:1 is x0 (same name, same store rows)."""
    model = ToyModel()
    t0, seed = 60, 7
    acp = make_scheduler().alphas_cumprod.double()
    a = acp[t0 - 1]
    lat = model.encode(scan)
    by_hand = []
    for salt in (0, 500_001, 500_002):
        n = seeded_noise(tuple(scan.shape[1:]), [seed], salt=salt)
        x_t = a.sqrt().float() * scan + (1 - a).sqrt().float() * n
        eps = model(x_t, torch.tensor([t0 - 1]), latents=lat).double()
        by_hand.append(((x_t.double() - (1 - a).sqrt() * eps) / a.sqrt()).clamp(0, 1))
    want = (sum(by_hand) / 3).float()
    got = reconstruct(model, scan, t0=t0, sampler="x0:3", seeds=[seed])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    one = reconstruct(model, scan, t0=t0, sampler="x0", seeds=[seed])
    assert torch.equal(reconstruct(model, scan, t0=t0, sampler="x0:1", seeds=[seed]), one)
    assert not torch.allclose(got, one, atol=1e-4)
    assert str(SamplerSpec.parse("x0:1")) == "x0" and str(SamplerSpec.parse("x0:4")) == "x0:4"
    assert SamplerSpec.parse("x0:4").network_calls(400) == 4
    assert SamplerSpec.parse("x0:4").file_tag() == "x0-4"
    with pytest.raises(ValueError, match="unknown sampler"):
        SamplerSpec.parse("x0:0")


def test_counts_calls_made():
    calls = []

    class Counting(ToyModel):
        def forward(self, x_t, t, latents=None, anatomy=None):
            calls.append(int(t[0]))
            return super().forward(x_t, t, latents, anatomy)

    x = torch.rand((1, 1, 4, 4, 2))
    reconstruct(Counting(), x, t0=40, sampler="ddim:8", seeds=[0])
    assert len(calls) == 8 and calls[0] == 39 and calls[-1] == 0
    calls.clear()
    reconstruct(Counting(), x, t0=40, sampler="x0:4", seeds=[0])
    assert calls == [39] * 4


@pytest.mark.parametrize("name", ["ddim:10", "x0"])
def test_bf16_autocast_reconstruction_is_close_to_fp32_and_repeatable(name, scan):
    """`--precision bf16` on the CPU: the network runs in bf16, the sampler's update in fp64."""
    model = ToyModel()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return reconstruct(model, scan, t0=100, sampler=name, seeds=[7])

    full = reconstruct(model, scan, t0=100, sampler=name, seeds=[7])
    half = run()
    assert half.dtype == scan.dtype and torch.equal(half, run())
    assert not torch.equal(half, full)  # autocast did take effect ...
    torch.testing.assert_close(half, full, atol=0.03, rtol=0)  # ... and only to bf16 rounding


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(native, monkeypatch):
    """bf16 autocast is emulated on a CPU without AVX-512 BF16 or AMX (33x / 114x slower than fp32
    for CMM / FGM there, measured: guad.inference.cpu_has_bf16); asking for it says so, 'auto' stays fp32."""
    import warnings

    from guad.inference import cpu_has_bf16, resolve_precision

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: native, raising=False)
    assert cpu_has_bf16() is native
    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16", cpu) == "bf16"
        assert resolve_precision("auto", cpu) == "fp32"
        assert resolve_precision("fp32", cpu) == "fp32"
    said = [str(w.message) for w in caught]
    assert (len(said) == 1 and "AVX-512 BF16" in said[0]) if not native else said == []
