"""One scan (or a batch) through both models: pre-process, reconstruct, difference, score.

    models = load_models()                       # the shipped cpu weights, or checkpoints given
    result = score_ct(read_ct(path), models)     # scores {"cmm", "fgm"} and viewer maps

This module joins the pieces and adds no method of its own: pre-processing (guad.preprocess),
model inputs on the config's grid (guad.data.to_config_grid), samplers (guad.sampling), the
score (guad.scoring), viewer volumes (guad.maps).

The score is computed on the model's own grid. The paper's 75-voxel rule is stated for its
grids (96 x 96 x 32 for CMM, 256 x 256 x 32 for FGM); a smaller config (the cpu models) keeps
the same PHYSICAL minimum object size: min_voxels = round(75 x paper voxel volume / config voxel
volume), at least 1. For the paper configs that is exactly 75.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from guad import paths
from guad.data import to_config_grid
from guad.maps import CaseMaps
from guad.models.configs import HDAEConfig
from guad.models.hdae import HDAE, load_model
from guad.preprocess.pipeline import CMM_SHAPE, FGM_SHAPE, Preprocessed, preprocess_ct
from guad.sampling import SamplerSpec, reconstruct
from guad.scoring import MIN_ABS_HU, MIN_VOXELS, anomaly_score, difference_map_hu
from guad.viewer import unit_to_hu

MODELS = ("cmm", "fgm")
# The paper's samplers: ancestral DDPM for CMM, deterministic DDIM for FGM (every step).
PAPER_SAMPLER = {"cmm": "ddpm", "fgm": "ddim"}
PAPER_GRID = {"cmm": CMM_SHAPE, "fgm": FGM_SHAPE}


def default_checkpoint(model: str) -> Path:
    """The shipped weights: data/weights/cpu-<model>.pt."""
    return paths.WEIGHTS_DIR / f"cpu-{model}.pt"


def checkpoint_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class LoadedModel:
    model: str  # 'cmm' | 'fgm'
    net: HDAE
    cfg: HDAEConfig
    path: str
    hash: str
    device: torch.device

    @property
    def t0(self) -> int:
        return int(self.cfg.t0)

    @property
    def min_voxels(self) -> int:
        paper = np.prod(1.0 / np.array(PAPER_GRID[self.model], float))
        ours = np.prod(1.0 / np.array(self.cfg.input_size, float))
        return max(1, int(round(MIN_VOXELS * paper / ours)))


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_models(cmm: str | Path | None = None, fgm: str | Path | None = None,
                device: str | torch.device | None = None) -> dict[str, LoadedModel]:
    """Both models from checkpoints (None -> the shipped weights). EMA weights, eval mode."""
    dev = pick_device(device)
    out = {}
    for name, given in (("cmm", cmm), ("fgm", fgm)):
        path = Path(given) if given else default_checkpoint(name)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no {name.upper()} checkpoint. Train one with `python -m guad train --model {name} ...` "
                "(see README) or pass its path.")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = load_model(ckpt, map_location=dev)
        if net.cfg.model != name:
            raise ValueError(f"{path}: this checkpoint is a {net.cfg.model.upper()} model, not {name.upper()}")
        out[name] = LoadedModel(name, net, net.cfg, str(path), checkpoint_hash(path), dev)
    return out


@dataclass
class ModelInput:
    image: np.ndarray  # (1, X, Y, Z) float32 in [0, 1] on the config's grid
    mask: np.ndarray  # (X, Y, Z) bool brain mask on that grid
    anatomy: np.ndarray | None  # (1, X, Y, Z) float32 labels (FGM)


def model_input(pp: Preprocessed, cfg: HDAEConfig) -> ModelInput:
    """The config's input, exactly as training saw it, plus the brain mask on that grid."""
    grids = to_config_grid({"cmm": pp.cmm, "fgm": pp.fgm, "anatomy": pp.anatomy}, cfg)
    src_mask = pp.cmm_mask if cfg.model == "cmm" else pp.fgm_mask
    m = torch.from_numpy(src_mask.astype(np.float32))[None, None]
    if tuple(m.shape[2:]) != tuple(cfg.input_size):
        m = F.interpolate(m, size=tuple(cfg.input_size), mode="area")
    return ModelInput(grids["image"], (m[0, 0] >= 0.5).numpy(), grids.get("anatomy"))


@dataclass
class ModelResult:
    score: float
    signed: np.ndarray  # (X, Y, Z) HU on the config grid, cleaned signed map
    recon: np.ndarray  # (X, Y, Z) model units on the config grid
    image: np.ndarray  # (X, Y, Z) model units, the input the model saw
    mask: np.ndarray  # (X, Y, Z) bool brain mask on the config grid
    seconds: float


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """'auto' -> bf16 on a GPU, fp32 on the CPU (the shipped demo store is fp32). bf16 on a CPU
    with AVX-512 BF16 roughly halves the time per network call (measured: README), at the cost
    of slightly different reconstructions, so a store records it as part of the run."""
    precision = precision or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn("bf16 was asked for on a CPU without AVX-512 BF16 or AMX: torch emulates it there, many "
                      "times slower than fp32; use --precision fp32 (or auto) on this machine", stacklevel=2)
    return precision


def cpu_has_bf16() -> bool:
    """Does this CPU do bf16 arithmetic natively (AVX-512 BF16 or AMX)? Without it bf16 autocast
    is emulated: on a 2-core AMD EPYC with AVX2 only, a network call per scan took 19.6 s (CMM)
    and 84.4 s (FGM) in bf16 against 0.59 s and 0.74 s in fp32 (bench_inference.py --threads 1
    --batches 1 --repeats 1, beside two other runs). torch keeps the check in torch.cpu behind an
    underscore; if a release drops it we say yes and do not warn."""
    checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [c for c in checks if c is not None]
    return not checks or any(c() for c in checks)


def score_batch(lm: LoadedModel, inputs: list[ModelInput], seeds: list[int], sampler: str | None = None,
                progress: Callable[[int, int], None] | None = None, t0: int | None = None,
                precision: str = "auto") -> list[ModelResult]:
    """Reconstruct and score a batch of scans with one model. Deterministic per scan and seed.
    t0: the noise level to start from (default: the model config's, 400 CMM / 500 FGM).
    precision: network arithmetic, auto | fp32 | bf16 (autocast; the sampler's update stays fp64)."""
    spec = SamplerSpec.parse(sampler or PAPER_SAMPLER[lm.model])
    t_start = time.perf_counter()
    x = torch.from_numpy(np.stack([i.image for i in inputs])).to(lm.device)  # (B, 1, X, Y, Z)
    anat = None
    if lm.cfg.in_channels == 2:
        anat = torch.from_numpy(np.stack([i.anatomy for i in inputs])).to(lm.device)
    bf16 = resolve_precision(precision, lm.device) == "bf16"
    with torch.autocast(device_type=lm.device.type, dtype=torch.bfloat16, enabled=bf16):
        recon = reconstruct(lm.net, x, t0=t0 or lm.t0, sampler=spec, seeds=seeds, anatomy=anat, progress=progress)
    recon = recon.float().cpu().numpy()[:, 0]
    per_scan = (time.perf_counter() - t_start) / len(inputs)
    out = []
    for inp, r in zip(inputs, recon):
        diff = difference_map_hu(inp.image[0], r, inp.mask)
        s, signed = anomaly_score(diff, MIN_ABS_HU[lm.model], lm.min_voxels)
        out.append(ModelResult(s, signed, r, inp.image[0], inp.mask, per_scan))
    return out


def resample_hu_to_grid(ct, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The scan's HU (unmasked) on another grid given by its NIfTI affine: what the viewer shows."""
    vox = np.linalg.inv(np.asarray(ct.affine, np.float64)) @ np.asarray(affine, np.float64)
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)
    src = ijk @ vox[:3, :3].T + vox[:3, 3]  # (X, Y, Z, 3) input voxel coordinates
    size = np.array(ct.hu.shape, float)
    norm = 2.0 * src / np.maximum(size - 1, 1) - 1.0
    grid = torch.from_numpy(norm[..., ::-1].copy()).float()[None]  # grid_sample wants (z, y, x)
    vol = torch.from_numpy(np.ascontiguousarray(ct.hu, np.float32))[None, None]
    out = F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, 0].numpy()


def display_input(ct, pp: Preprocessed) -> np.ndarray:
    """The scan's HU on the FGM (display) grid, unmasked: the viewer's input pane."""
    return resample_hu_to_grid(ct, pp.fgm_affine, tuple(pp.fgm.shape))


def case_maps(ct, pp: Preprocessed, results: dict[str, ModelResult]) -> CaseMaps:
    """Viewer volumes: the input HU on the FGM display grid; each model's reconstruction (HU,
    inside the brain) and signed map on that model's own grid (CaseMaps.display() aligns them)."""
    maps = CaseMaps(affine=pp.fgm_affine, input_hu=display_input(ct, pp))
    for m, r in results.items():
        maps.recon[m] = np.where(r.mask, unit_to_hu(r.recon), 0.0).astype(np.float32)
        maps.signed[m] = r.signed.astype(np.float32)
    return maps


@dataclass
class ScanResult:
    scores: dict[str, float]
    maps: CaseMaps
    seconds: float = 0.0  # wall time of the whole scan (pre-processing included)
    model_seconds: dict[str, float] = field(default_factory=dict)  # reconstruction + score, per model
    samplers: dict[str, str] = field(default_factory=dict)


def score_ct(ct, models: dict[str, LoadedModel], sampler: str | dict | None = None, seed: int = 0,
             progress: Callable[[float, str], None] | None = None, t0: int | dict | None = None) -> ScanResult:
    """Score one CTVolume with both models. progress(fraction, text) for progress bars.

    sampler: one name for both models, a {model: name} dict, or None -> each model's paper
    sampler (ddpm for CMM, ddim for FGM). t0: likewise one number, a dict, or None (configs').
    """
    per_model = dict(sampler) if isinstance(sampler, dict) else {m: sampler for m in MODELS}
    t0_of = dict(t0) if isinstance(t0, dict) else {m: t0 for m in MODELS}
    report = progress or (lambda frac, text: None)
    t_start = time.perf_counter()
    report(0.0, "pre-processing")
    pp = preprocess_ct(ct)
    results = {}
    names = [m for m in MODELS if m in models]
    for k, name in enumerate(names):
        lm = models[name]
        inp = model_input(pp, lm.cfg)

        def step(done, total, k=k, name=name):
            report((k + done / total) / len(names), f"{name.upper()}: step {done}/{total}")

        results[name] = score_batch(lm, [inp], [seed], per_model.get(name), progress=step, t0=t0_of.get(name))[0]
    report(1.0, "done")
    return ScanResult(
        scores={m: r.score for m, r in results.items()},
        maps=case_maps(ct, pp, results),
        seconds=time.perf_counter() - t_start,
        model_seconds={m: r.seconds for m, r in results.items()},
        samplers={m: str(SamplerSpec.parse(per_model.get(m) or PAPER_SAMPLER[m])) for m in results},
    )
