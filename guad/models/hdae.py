"""The 3D hierarchical diffusion autoencoder (HDAE): a semantic encoder and a DDPM U-Net.

Read top to bottom, in the order data flows. Sizes come from `HDAEConfig` (configs.py).
Tensors are (B, C, X, Y, Z) with depth Z last, so the anisotropic (2, 2, 1) steps keep depth.

    x0 ──SemanticEncoder──> [z_0, ..., z_{L-1}]      one 512-vector per U-Net level
    x_t (+ anatomy for FGM), t, [z] ──UNet──> eps    predicted noise

Every residual block of the U-Net uses adaptive group norm: the time embedding scales and
shifts, the level's latent only scales. Level i on the way down and on the way up takes z_i,
the middle block takes the deepest latent: shallow latents condition shallow levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from guad.models.configs import HDAEConfig


def zero_init(module: nn.Module) -> nn.Module:
    """Start a residual branch at zero so every block begins as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def run_block(block: nn.Module, checkpoint: bool, *args):
    """block(*args), or under activation checkpointing: its activations are not kept for the
    backward pass but recomputed there (one extra forward pass for a fraction of the memory;
    what lets paper-fgm train at batch 1 on a 24 GB machine: 8.2 GB, README). Dropout's random draws
    are replayed, so the gradients are the same as without it."""
    if checkpoint and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]                        # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)    # (B, 2*half)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """Residual block with adaptive group norm.

    h = conv1(SiLU(GN(x)));  h = GN(h) * (1 + t_scale) + t_shift;  h = h * (1 + z_scale)
    out = skip(x) + conv2(Dropout(SiLU(h)))      conv2 starts at zero.
    Without time_dim / latent_dim (the encoder's blocks) the conditioning is left out.
    """

    def __init__(self, cin: int, cout: int, groups: int, dropout: float,
                 time_dim: int | None = None, latent_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, 2 * cout) if time_dim else None
        self.latent_proj = nn.Linear(latent_dim, cout) if latent_dim else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv3d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv3d(cin, cout, 1)

    def forward(self, x, t_emb=None, z=None):
        h = self.conv1(F.silu(self.norm1(x)))                       # (B, cout, X, Y, Z)
        h = self.norm2(h)
        if self.time_proj is not None:
            scale, shift = self.time_proj(F.silu(t_emb))[:, :, None, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift                             # time scales and shifts
        if self.latent_proj is not None:
            h = h * (1 + self.latent_proj(F.silu(z))[:, :, None, None, None])  # latent scales only
        return self.skip(x) + self.conv2(self.dropout(F.silu(h)))


class Attention(nn.Module):
    """Multi-head self-attention over all voxels of a (small, deep) feature map."""

    def __init__(self, channels: int, groups: int, head_channels: int):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x, *_):
        B, C, X, Y, Z = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)                 # (B, N, C), N = X*Y*Z
        q, k, v = self.qkv(h).view(B, -1, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v)                 # (B, heads, N, C/heads)
        h = self.proj(h.transpose(1, 2).reshape(B, -1, C))          # (B, N, C)
        return x + h.transpose(1, 2).reshape(B, C, X, Y, Z)


class Downsample(nn.Module):
    """Strided 3x3x3 conv: (2, 2, 1) halves X and Y and keeps depth."""

    def __init__(self, channels: int, factor: tuple[int, int, int]):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=factor, padding=1)

    def forward(self, x, *_):
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by the matching factor, then a 3x3x3 conv."""

    def __init__(self, channels: int, factor: tuple[int, int, int]):
        super().__init__()
        self.factor = tuple(float(f) for f in factor)
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x, *_):
        dtype = x.dtype  # nearest 3D upsampling lacks bf16 kernels on some builds
        x = F.interpolate(x.float(), scale_factor=self.factor, mode="nearest").to(dtype)
        return self.conv(x)


class SemanticEncoder(nn.Module):
    """Image -> one latent vector per U-Net level. No time input; every block downsamples.

    Features: the first conv's output, then each block's output. Latent k < L-1 pools
    feature k; the deepest latent pools the encoder's last feature, so every block is used.
    (For FGM, 4 blocks and 5 levels, that is exactly the authors' routing. Their CMM
    encoder ran a fourth 512-channel block whose output no latent read; here it feeds
    the deepest latent instead of being dead weight.) Each latent head: GN, SiLU,
    Dropout, adaptive average pool, flatten, Linear to latent_dim.
    """

    def __init__(self, cfg: HDAEConfig):
        super().__init__()
        self.checkpointing = False                                  # set by HDAE.set_checkpointing
        ch, g = cfg.enc_channels, cfg.enc_groups
        self.conv_in = nn.Conv3d(1, ch[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        cin = ch[0]
        for c, factor in zip(ch, cfg.enc_down):
            self.blocks.append(nn.Sequential(
                ResBlock(cin, c, g, cfg.dropout),
                ResBlock(c, c, g, cfg.dropout),
                Downsample(c, factor),
            ))
            cin = c
        feat_ch = [ch[0]] + list(ch)                                # channels of each feature
        self.taps = list(range(cfg.levels - 1)) + [len(ch)]         # which feature each latent reads
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(min(g, feat_ch[k]), feat_ch[k]), nn.SiLU(), nn.Dropout(cfg.dropout),
                nn.AdaptiveAvgPool3d(pool), nn.Flatten(),
                nn.Linear(feat_ch[k] * math.prod(pool), cfg.latent_dim),
            )
            for k, pool in zip(self.taps, cfg.pool_sizes)
        )

    def forward(self, x0: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(x0)                                        # (B, enc0, X, Y, Z)
        feats = [h]
        for block in self.blocks:
            h = run_block(block, self.checkpointing, h)             # (B, enc_i, X/2, Y/2, Z or Z/2)
            feats.append(h)
        return [head(feats[k]) for head, k in zip(self.heads, self.taps)]  # L x (B, latent_dim)


class ResAttn(nn.Module):
    """A residual block, then self-attention where the level has it, then (middle block
    only) a second residual block. All take the same time embedding and latent."""

    def __init__(self, res: ResBlock, attn: nn.Module | None = None, res2: ResBlock | None = None):
        super().__init__()
        self.res, self.attn, self.res2 = res, attn, res2

    def forward(self, h, emb, z):
        h = self.res(h, emb, z)
        if self.attn is not None:
            h = self.attn(h)
        if self.res2 is not None:
            h = self.res2(h, emb, z)
        return h


class UNet(nn.Module):
    """Anisotropic DDPM U-Net, 2 residual blocks a level down and 3 up, self-attention at
    the deepest level and in the middle block, each level conditioned on its own latent."""

    def __init__(self, cfg: HDAEConfig):
        super().__init__()
        self.checkpointing = False                                  # set by HDAE.set_checkpointing
        ch, g, L = cfg.unet_channels, cfg.groups, cfg.levels
        res = dict(groups=g, dropout=cfg.dropout, time_dim=cfg.time_dim, latent_dim=cfg.latent_dim)

        def attn(c: int, here: bool) -> Attention | None:
            return Attention(c, g, cfg.head_channels) if here else None

        self.t_in = ch[0]
        self.time_mlp = nn.Sequential(
            nn.Linear(ch[0], cfg.time_dim), nn.SiLU(), nn.Linear(cfg.time_dim, cfg.time_dim))
        self.conv_in = nn.Conv3d(cfg.in_channels, ch[0], 3, padding=1)

        # down: level i holds [res+attn?] x num_res_blocks, then (down); each output is a skip
        self.down = nn.ModuleList()
        skip_ch = [ch[0]]
        cin = ch[0]
        for i in range(L):
            level = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                level.append(ResAttn(ResBlock(cin, ch[i], **res), attn(ch[i], i == L - 1)))
                cin = ch[i]
                skip_ch.append(cin)
            if i < L - 1:
                level.append(Downsample(cin, cfg.unet_down[i]))
                skip_ch.append(cin)
            self.down.append(level)

        self.mid = ResAttn(ResBlock(cin, cin, **res), attn(cin, True), ResBlock(cin, cin, **res))

        # up: level i (deepest first) holds [res+attn?] x (num_res_blocks + 1), then (up);
        # each residual block first takes one skip (last in, first out)
        self.up = nn.ModuleList()
        for i in reversed(range(L)):
            level = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.append(ResAttn(ResBlock(cin + skip_ch.pop(), ch[i], **res), attn(ch[i], i == L - 1)))
                cin = ch[i]
            if i > 0:
                level.append(Upsample(cin, cfg.unet_down[i - 1]))
            self.up.append(level)

        self.out = nn.Sequential(
            nn.GroupNorm(g, ch[0], eps=1e-6), nn.SiLU(), zero_init(nn.Conv3d(ch[0], 1, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, latents: list[torch.Tensor]) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.t_in).to(x.dtype))   # (B, time_dim)
        h = self.conv_in(x)                                         # (B, ch0, X, Y, Z)
        skips = [h]
        for i, level in enumerate(self.down):                       # level i takes latent i
            for block in level:
                h = run_block(block, self.checkpointing, h, emb, latents[i])  # down: (B, ch_i, X/2, Y/2, Z)
                skips.append(h)
        h = run_block(self.mid, self.checkpointing, h, emb, latents[-1])  # the deepest latent
        for j, level in enumerate(self.up):                         # up level j: latent L-1-j
            z = latents[len(self.up) - 1 - j]
            for block in level:
                if isinstance(block, ResAttn):
                    h = torch.cat([h, skips.pop()], dim=1)          # (B, C + C_skip, ...)
                h = run_block(block, self.checkpointing, h, emb, z)  # up: (B, C, 2X, 2Y, Z)
        return self.out(h)                                          # (B, 1, X, Y, Z)


class HDAE(nn.Module):
    """Semantic encoder + U-Net. FGM concatenates the anatomy label map to the noisy input."""

    def __init__(self, cfg: HDAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SemanticEncoder(cfg)
        self.unet = UNet(cfg)

    def set_checkpointing(self, on: bool = True) -> "HDAE":
        """Activation checkpointing of every encoder block and U-Net block (training memory
        for compute; outputs and gradients unchanged). A runtime switch, not part of the config:
        the weights are the same either way."""
        self.encoder.checkpointing = self.unet.checkpointing = bool(on)
        return self

    def encode(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, X, Y, Z) clean image in [0, 1] -> L x (B, latent_dim)."""
        return self.encoder(x0)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor | None = None,
                latents: list[torch.Tensor] | None = None,
                anatomy: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in x_t (B, 1, X, Y, Z) at timesteps t (B,).

        Condition on `latents` (from `encode`), or on `x0`, which is encoded first.
        FGM also needs `anatomy` (B, 1, X, Y, Z): raw label values 0-4.
        """
        if latents is None:
            if x0 is None:
                raise ValueError("HDAE.forward needs x0 or latents")
            latents = self.encode(x0)
        if self.cfg.in_channels == 2:
            if anatomy is None:
                raise ValueError("the fine model (FGM) needs the anatomy label map")
            x_t = torch.cat([x_t, anatomy.to(x_t.dtype)], dim=1)    # (B, 2, X, Y, Z)
        return self.unet(x_t, t, latents)


def count_parameters(cfg: HDAEConfig) -> dict[str, int]:
    """Parameter counts without allocating memory (built on the meta device)."""
    with torch.device("meta"):
        model = HDAE(cfg)
    enc = sum(p.numel() for p in model.encoder.parameters())
    unet = sum(p.numel() for p in model.unet.parameters())
    return {"unet": unet, "encoder": enc, "total": unet + enc}


def load_model(checkpoint, map_location: str | torch.device = "cpu", weights: str = "model") -> HDAE:
    """Build the network a checkpoint describes and load its weights (EMA by default;
    weights="raw_model" gives the un-averaged ones). `checkpoint`: a path or a loaded dict."""
    if not isinstance(checkpoint, dict):
        checkpoint = torch.load(checkpoint, map_location=map_location, weights_only=True)
    model = HDAE(HDAEConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint[weights])
    return model.to(map_location).eval()
