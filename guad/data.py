"""The training set: a cohort manifest's train-split normals, pre-processed once and cached.

    ts = TrainingSet("data/cohorts/tiny/manifest.csv", get_config("cpu-cmm"))
    ts.dataset[i]   # {"image": (1, X, Y, Z) float32 in [0, 1], "anatomy": (1, X, Y, Z) (FGM)}
    ts.skipped      # [(path, problem)] scans that failed to load: reported, never fatal

Each scan is read (`guad.io.read_ct`) and pre-processed (`guad.preprocess.preprocess_ct`) once;
the model grids (96 x 96 x 32, 256 x 256 x 32 and the anatomy map) are cached under
`guad.paths.CACHE_DIR/preprocessed/` keyed by the file's content hash and a hash of the
pre-processing code, so editing either re-does the work and nothing else does. A config with
a smaller grid (the cpu configs) is resampled from those: the image by area averaging, the
anatomy map by majority vote. Those arrays are cached again as .npy per config and memory-mapped.

A manifest row may also point at an `.npz` holding `cmm`, `fgm` and `anatomy` arrays already
on the model grids (what pre-processing produces): it is used as is.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import Dataset

from guad import paths
from guad.errors import InputError
from guad.models.configs import HDAEConfig

N_LABELS = 5  # anatomy labels 0..4


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, or of every file under a folder (a DICOM series)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise InputError(path, "no such file, or an empty folder")
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def preprocess_version() -> str:
    """A hash of the reader's and pre-processing's source: changing the code empties the cache."""
    import guad.io
    import guad.preprocess

    h = hashlib.sha256()
    for mod in (guad.io, guad.preprocess):
        for f in sorted(Path(mod.__file__).parent.glob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _atomic_save(path: Path, save: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save(str(tmp))
    os.replace(tmp, path)


def load_model_grids(path: Path, cache_dir: Path, version: str,
                     read: Callable | None = None, preprocess: Callable | None = None) -> dict:
    """{'cmm', 'fgm', 'anatomy'} model-grid arrays of one scan, from the cache when there."""
    path = Path(path)
    if path.suffix == ".npz":  # already on the model grids
        try:
            with np.load(path) as z:
                return {k: z[k] for k in ("cmm", "fgm", "anatomy")}
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(path, f"not a pre-processed .npz with cmm, fgm, anatomy ({exc})") from exc
    key = file_hash(path)
    cached = cache_dir / "preprocessed" / version / f"{key}.npz"
    if cached.exists():
        with np.load(cached) as z:
            return {k: z[k] for k in ("cmm", "fgm", "anatomy")}
    if read is None:
        from guad.io import read_ct as read
    if preprocess is None:
        from guad.preprocess import preprocess_ct as preprocess
    pp = preprocess(read(path))
    arrays = {"cmm": pp.cmm.astype(np.float32), "fgm": pp.fgm.astype(np.float32),
              "anatomy": pp.anatomy.astype(np.uint8)}
    def save(p):
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    _atomic_save(cached, save)
    return arrays


def to_config_grid(arrays: dict, cfg: HDAEConfig) -> dict[str, np.ndarray]:
    """The config's input(s), (1, X, Y, Z) each: CMM's image from the 96 grid, FGM's image and
    anatomy from the 256 grid, resampled when the config's grid is smaller."""
    size = tuple(cfg.input_size)
    src = arrays["cmm"] if cfg.model == "cmm" else arrays["fgm"]
    img = torch.from_numpy(np.ascontiguousarray(src, np.float32))[None, None]  # (1, 1, X, Y, Z)
    if tuple(img.shape[2:]) != size:
        img = F.interpolate(img, size=size, mode="area")
    out = {"image": img[0].numpy().astype(np.float32)}
    if cfg.model == "fgm":
        lab = torch.from_numpy(arrays["anatomy"].astype(np.int64))
        if tuple(lab.shape) != size:  # majority vote per output voxel
            onehot = F.one_hot(lab, N_LABELS).permute(3, 0, 1, 2)[None].float()
            lab = F.interpolate(onehot, size=size, mode="area")[0].argmax(0)
        out["anatomy"] = lab[None].numpy().astype(np.float32)
    return out


def _save_npy(p: str, a: np.ndarray) -> None:
    with open(p, "wb") as fh:
        np.save(fh, a)


def load_item(item: dict) -> dict:
    """{"image": file or array, ...} -> {"image": float32 tensor (1, X, Y, Z), ...}."""
    out = {}
    for k, v in item.items():
        arr = np.load(v, mmap_mode="r") if isinstance(v, (str, Path)) else v
        out[k] = torch.from_numpy(np.array(arr, dtype=np.float32))
    return out


class ArrayDataset(Dataset):
    """A MONAI Dataset of items {"image", ("anatomy")}: .npy files (memory-mapped) or arrays,
    each loaded as float32 tensors (1, X, Y, Z) - the item the training loop takes."""

    def __init__(self, items: list[dict]):
        super().__init__(data=items, transform=load_item)


class TrainingSet:
    """Train-split normals of a manifest, ready for one model config."""

    def __init__(self, manifest: str | Path, cfg: HDAEConfig, cache_dir: Path | None = None,
                 read: Callable | None = None, preprocess: Callable | None = None,
                 log: Callable[[str], None] | None = None, progress: bool = True):
        import pandas as pd

        manifest = Path(manifest)
        log = log or (lambda msg: print(msg, file=sys.stderr))
        cache_dir = Path(cache_dir or paths.CACHE_DIR)
        try:
            table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise InputError(manifest, f"cannot read the manifest ({exc})") from exc
        missing = {"path", "split", "label"} - set(table.columns)
        if missing:
            raise InputError(manifest, f"manifest lacks column(s) {', '.join(sorted(missing))}")
        rows = table[(table["split"] == "train") & (table["label"] == "normal")]
        custom = read is not None or preprocess is not None  # injected stand-ins cache apart
        version = None
        self.items: list[dict] = []
        self.skipped: list[tuple[str, str]] = []
        grid_dir = cache_dir / "train_grids" / f"{cfg.model}_{'x'.join(map(str, cfg.input_size))}"
        it = rows["path"].tolist()
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="pre-processing", unit="scan", file=sys.stderr, leave=False)
        for rel in it:
            path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
            try:
                if version is None and path.suffix != ".npz":
                    version = preprocess_version() + ("-custom" if custom else "")
                arrays = load_model_grids(path, cache_dir, version, read, preprocess)
                self.items.append(self._grid_files(arrays, cfg, grid_dir, path))
            except Exception as exc:  # noqa: BLE001 - one bad scan never stops training
                problem = exc.problem if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
                self.skipped.append((str(path), problem))
                log(f"skipped {path}: {problem}")
        if not self.items:
            raise InputError(manifest, f"no usable train-split normal scans "
                                       f"({len(rows)} listed, {len(self.skipped)} failed)")
        self.dataset = ArrayDataset(self.items)

    @staticmethod
    def _grid_files(arrays: dict, cfg: HDAEConfig, grid_dir: Path, path: Path) -> dict:
        h = hashlib.sha256()
        for k in ("cmm", "fgm", "anatomy"):
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        key = h.hexdigest()[:24]
        files = {k: grid_dir / f"{key}_{k}.npy" for k in (["image", "anatomy"] if cfg.model == "fgm" else ["image"])}
        if not all(f.exists() for f in files.values()):
            grids = to_config_grid(arrays, cfg)
            for k, f in files.items():
                _atomic_save(f, lambda p, a=grids[k]: _save_npy(p, a))
        return {k: str(f) for k, f in files.items()}
