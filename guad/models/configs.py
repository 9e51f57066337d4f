"""Every size of the two networks in one place, as dataclasses (nanoGPT's GPTConfig).

`paper-cmm` and `paper-fgm` reproduce the authors' networks (method-facts.md);
`cpu-cmm` and `cpu-fgm` are the same architecture made small enough to train on two CPU
cores (they are what the demo ships); `tiny-cmm` and `tiny-fgm` exist for tests only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class HDAEConfig:
    name: str
    model: str                       # 'cmm' (coarse, 1 input channel) | 'fgm' (fine, + anatomy)
    input_size: Triple               # (X, Y, Z) of the model grid; Z (depth) last
    unet_channels: tuple[int, ...]   # one per U-Net level
    enc_channels: tuple[int, ...]    # one per semantic-encoder block (every block downsamples)
    pool_sizes: tuple[Triple, ...]   # one per latent = one per U-Net level
    unet_down: tuple[Triple, ...]    # U-Net downsampling between levels (len = levels - 1)
    enc_down: tuple[Triple, ...]     # encoder downsampling, one per encoder block
    groups: int = 32                 # GroupNorm groups in the U-Net
    enc_groups: int = 32             # GroupNorm groups in the encoder (latent heads: min(32, C))
    time_dim: int = 128              # time-embedding width (= 4 x unet_channels[0] in the paper)
    latent_dim: int = 512
    head_channels: int = 32          # self-attention: channels per head
    num_res_blocks: int = 2          # per level on the way down (the way up has one more)
    dropout: float = 0.1             # residual blocks and latent heads
    in_channels: int = 1             # U-Net input: 1 (CMM) or 2 (FGM: noisy image + anatomy)
    t0: int = 400                    # inference noise level (sampling's default)
    lr: float = 4e-5                 # AdamW peak learning rate
    lr_min: float = 2e-5             # cosine floor
    batch_size: int = 8

    def __post_init__(self):
        levels = len(self.unet_channels)
        if self.model not in ("cmm", "fgm"):
            raise ValueError(f"model must be 'cmm' or 'fgm', not {self.model!r}")
        if len(self.pool_sizes) != levels or len(self.unet_down) != levels - 1:
            raise ValueError(f"{self.name}: one pool size per level and levels-1 down factors")
        if len(self.enc_down) != len(self.enc_channels) or len(self.enc_channels) + 1 < levels:
            raise ValueError(f"{self.name}: the encoder needs at least levels-1 blocks")
        if any(c % self.groups for c in self.unet_channels):
            raise ValueError(f"{self.name}: U-Net channels must be multiples of groups")
        if self.unet_channels[-1] % self.head_channels:
            raise ValueError(f"{self.name}: deepest channels must be a multiple of head_channels")
        for axis in range(3):  # the grid must divide evenly through every downsampling
            for downs in (self.unet_down, self.enc_down):
                f = 1
                for d in downs:
                    f *= d[axis]
                if self.input_size[axis] % f:
                    raise ValueError(f"{self.name}: input size {self.input_size} does not divide "
                                     f"by the downsampling {downs}")

    @property
    def levels(self) -> int:
        return len(self.unet_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HDAEConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("input_size", "unet_channels", "enc_channels"):
            kw[k] = tuple(kw[k])
        for k in ("pool_sizes", "unet_down", "enc_down"):
            kw[k] = tuple(tuple(x) for x in kw[k])
        return cls(**kw)


_XY1 = (2, 2, 1)
_XYZ = (2, 2, 2)

CONFIGS: dict[str, HDAEConfig] = {}


def _register(cfg: HDAEConfig) -> None:
    CONFIGS[cfg.name] = cfg


# The authors' coarse model: 96 x 96 x 32 -> 48 -> 24 -> 12 (depth kept at 32).
_register(HDAEConfig(
    name="paper-cmm", model="cmm", input_size=(96, 96, 32),
    unet_channels=(32, 128, 256, 512), enc_channels=(32, 128, 256, 512),
    pool_sizes=((8, 8, 4), (6, 6, 4), (4, 4, 4), (2, 2, 4)),
    unet_down=(_XY1,) * 3, enc_down=(_XY1,) * 4,
    groups=32, time_dim=128, in_channels=1, t0=400, lr=4e-5, batch_size=8,
))
# The authors' fine model: 256 x 256 x 32 -> 128 -> 64 -> 32 x 32 x 32 -> 16 x 16 x 16.
_register(HDAEConfig(
    name="paper-fgm", model="fgm", input_size=(256, 256, 32),
    unet_channels=(16, 32, 64, 128, 256), enc_channels=(32, 64, 128, 256),
    pool_sizes=((8, 8, 4), (6, 6, 4), (4, 4, 4), (2, 2, 2), (2, 2, 2)),
    unet_down=(_XY1, _XY1, _XY1, _XYZ), enc_down=(_XY1, _XY1, _XY1, _XYZ),
    groups=16, time_dim=64, in_channels=2, t0=500, lr=3e-5, batch_size=3,
))
# Two-CPU-core versions: same blocks, routing, attention and AdaGN; smaller grid and widths.
# Sizes chosen by measurement (benchmarks/bench_train.py): ~0.5-1 s a batch-4 iteration.
_register(HDAEConfig(
    name="cpu-cmm", model="cmm", input_size=(48, 48, 16),    # 96x96x32 halved on every axis
    unet_channels=(8, 16, 32, 64), enc_channels=(8, 16, 32),
    pool_sizes=((4, 4, 2), (3, 3, 2), (2, 2, 2), (2, 2, 2)),
    unet_down=(_XY1, _XY1, _XYZ), enc_down=(_XY1, _XY1, _XYZ),   # 48 -> 24 -> 12 -> 6 x 6 x 8
    groups=8, enc_groups=8, time_dim=32, in_channels=1, t0=400,
    lr=2e-4, lr_min=2e-5, batch_size=4,
))
_register(HDAEConfig(
    name="cpu-fgm", model="fgm", input_size=(64, 64, 16),    # 256x256x32 / 4 in-plane, / 2 depth
    unet_channels=(8, 16, 32, 64), enc_channels=(8, 16, 32),
    pool_sizes=((4, 4, 2), (3, 3, 2), (2, 2, 2), (2, 2, 2)),
    unet_down=(_XY1, _XY1, _XYZ), enc_down=(_XY1, _XY1, _XYZ),   # 64 -> 32 -> 16 -> 8 x 8 x 8
    groups=8, enc_groups=8, time_dim=32, in_channels=2, t0=500,
    lr=2e-4, lr_min=2e-5, batch_size=4,
))
# For tests only: a few thousand parameters, milliseconds a step.
_register(HDAEConfig(
    name="tiny-cmm", model="cmm", input_size=(16, 16, 8),
    unet_channels=(8, 16), enc_channels=(8, 16),
    pool_sizes=((2, 2, 2), (2, 2, 2)), unet_down=(_XY1,), enc_down=(_XY1, _XY1),
    groups=4, enc_groups=4, time_dim=32, latent_dim=32, head_channels=8,
    in_channels=1, t0=400, lr=1e-3, lr_min=1e-4, batch_size=2,
))
_register(HDAEConfig(
    name="tiny-fgm", model="fgm", input_size=(16, 16, 8),
    unet_channels=(8, 16), enc_channels=(8, 16),
    pool_sizes=((2, 2, 2), (2, 2, 2)), unet_down=(_XYZ,), enc_down=(_XY1, _XYZ),
    groups=4, enc_groups=4, time_dim=32, latent_dim=32, head_channels=8,
    in_channels=2, t0=500, lr=1e-3, lr_min=1e-4, batch_size=2,
))


def get_config(name: str) -> HDAEConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}") from None
