"""The networks: paper sizes, shapes, AdaGN conditioning, routing; the noise schedule."""

import pytest
import torch

from guad.diffusion import NoiseSchedule, make_scheduler
from guad.models import CONFIGS, HDAE, HDAEConfig, count_parameters, get_config
from guad.models.hdae import ResBlock

PAPER = {"paper-cmm": (166.6e6, 55.8e6), "paper-fgm": (43.0e6, 21.4e6)}


@pytest.mark.parametrize("name", PAPER)
def test_paper_parameter_counts_within_5_percent(name):
    n = count_parameters(get_config(name))  # meta device: nothing allocated
    unet, enc = PAPER[name]
    assert abs(n["unet"] / unet - 1) < 0.05, n
    assert abs(n["encoder"] / enc - 1) < 0.05, n


@pytest.mark.parametrize("name", ["paper-cmm", "paper-fgm"])
def test_paper_output_shapes_on_meta(name):
    cfg = get_config(name)
    with torch.device("meta"):
        model = HDAE(cfg)
        x = torch.zeros(2, 1, *cfg.input_size)
        eps = model(x, torch.zeros(2, dtype=torch.long), x0=x, anatomy=x)
        latents = model.encode(x)
    assert eps.shape == (2, 1, *cfg.input_size)
    assert len(latents) == cfg.levels and all(z.shape == (2, 512) for z in latents)


@pytest.mark.parametrize("name", ["cpu-cmm", "cpu-fgm", "tiny-cmm", "tiny-fgm"])
def test_small_configs_run_and_start_at_zero(name):
    cfg = get_config(name)
    torch.manual_seed(0)
    model = HDAE(cfg).eval()
    x = torch.rand(1, 1, *cfg.input_size)
    anatomy = torch.randint(0, 5, x.shape).float() if cfg.model == "fgm" else None
    with torch.no_grad():
        eps = model(x, torch.tensor([100]), x0=x, anatomy=anatomy)
    assert eps.shape == x.shape
    assert torch.count_nonzero(eps) == 0  # zero-initialised output conv: eps starts at 0


def test_fgm_needs_anatomy_and_forward_needs_a_condition():
    cfg = get_config("tiny-fgm")
    model = HDAE(cfg)
    x = torch.rand(1, 1, *cfg.input_size)
    with pytest.raises(ValueError, match="anatomy"):
        model(x, torch.tensor([1]), x0=x)
    with pytest.raises(ValueError, match="x0 or latents"):
        HDAE(get_config("tiny-cmm"))(x, torch.tensor([1]))


def test_adagn_latent_scales_and_never_shifts():
    torch.manual_seed(0)
    blk = ResBlock(8, 8, groups=4, dropout=0.0, time_dim=16, latent_dim=12).eval()
    torch.nn.init.normal_(blk.conv2.weight)
    x, temb = torch.randn(2, 8, 4, 4, 2), torch.randn(2, 16)
    # a latent that makes z_scale = -1 zeroes the modulated features: pure scaling, no shift
    with torch.no_grad():
        blk.latent_proj.weight.zero_()
        blk.latent_proj.bias.fill_(-1.0)
        out = blk(x, temb, torch.zeros(2, 12))
        expected = blk.skip(x) + blk.conv2(torch.zeros(2, 8, 4, 4, 2))
    assert torch.allclose(out, expected, atol=1e-6)


def test_each_level_reads_its_own_latent():
    cfg = get_config("tiny-cmm")
    torch.manual_seed(0)
    model = HDAE(cfg).eval()
    for p in model.parameters():  # leave the zero-init so the output depends on everything
        if p.ndim > 1 and torch.count_nonzero(p) == 0:
            torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(1, 1, *cfg.input_size)
    t = torch.tensor([50])
    with torch.no_grad():
        z = model.encode(x)
        base = model(x, t, latents=z)
        for i in range(cfg.levels):
            z2 = [zi.clone() for zi in z]
            z2[i] += 1.0
            assert not torch.allclose(model(x, t, latents=z2), base)
        assert torch.equal(model(x, t, x0=x), base)  # x0 is encoded the same way


def test_config_round_trips_through_a_dict():
    for cfg in CONFIGS.values():
        assert HDAEConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        HDAEConfig(name="x", model="cmm", input_size=(15, 16, 8), unet_channels=(8, 16),
                   enc_channels=(8,), pool_sizes=((2, 2, 2),) * 2, unet_down=((2, 2, 1),),
                   enc_down=((2, 2, 1),), groups=4)


def test_schedule_is_the_papers_linear_one():
    s = NoiseSchedule.linear()
    assert s.num_timesteps == 1000
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(2e-2)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - s.betas, 0))
    x0, noise, t = torch.rand(3, 1, 4, 4, 2), torch.randn(3, 1, 4, 4, 2), torch.tensor([0, 399, 549])
    x_t = s.q_sample(x0, t, noise)
    assert torch.allclose(x_t, make_scheduler().add_noise(x0, noise, t), atol=1e-6)
    assert torch.allclose(s.predict_x0(x_t, t, noise), x0, atol=1e-4)
    assert torch.allclose(s.predict_eps(x_t, t, x0), noise, atol=1e-3)
    ts = s.sample_timesteps(10_000, torch.Generator().manual_seed(0))
    assert ts.min() >= 0 and ts.max() < 550


@pytest.mark.parametrize("name", ["tiny-cmm", "tiny-fgm"])
def test_activation_checkpointing_keeps_outputs_and_gradients(name):
    """Checkpointing recomputes activations in the backward pass; dropout is on (train mode),
    so this also checks that its random draws are replayed: same loss, same gradients."""
    cfg = get_config(name)
    torch.manual_seed(0)
    model = HDAE(cfg).train()
    for p in model.parameters():  # zero-initialised branches would hide a wrong recompute
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 1, *cfg.input_size)
    anatomy = torch.randint(0, 5, x.shape).float() if cfg.model == "fgm" else None
    t = torch.tensor([10, 300])

    def grads(on: bool):
        model.set_checkpointing(on)
        model.zero_grad()
        torch.manual_seed(1)
        loss = model(x, t, x0=x, anatomy=anatomy).square().mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss0, g0 = grads(False)
    loss1, g1 = grads(True)
    assert model.unet.checkpointing and model.encoder.checkpointing
    torch.testing.assert_close(loss1, loss0)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], msg=lambda m: f"{n}: {m}")
    # and it does not store the blocks' activations: fewer tensors saved for backward
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        for on in (False, True):
            model.set_checkpointing(on)
            saved.append(-1)
            model(x, t, x0=x, anatomy=anatomy).sum()
    cut = saved.index(-1, 1)
    assert sum(saved[cut + 1:]) < 0.5 * sum(saved[1:cut])
