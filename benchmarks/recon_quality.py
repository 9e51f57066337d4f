"""How closely the shipped models reconstruct held-out normals, and a figure.

    python benchmarks/recon_quality.py --manifest data/cohorts/demo/manifest.csv \
        [--n 20] [--samplers x0,ddim:10,paper] [--figure docs/figures/reconstruction.png]

Prints, per model and sampler, the mean absolute error in HU inside the brain between the
input and its reconstruction from t0 (400 CMM, 500 FGM) on validation normals (never trained
on), and the same for two references without a model: the mean training image (the template
baseline), and, for a synthetic cohort, the same patient rescanned with new scanner noise (same
pose, same anatomy). A reconstruction denoised from t0 draws its own noise texture, so even a
perfect one differs from its input by about the rescan's error: that row is the floor.
Writes a figure: input, each model's reconstruction and difference for a normal and for an
intraparenchymal bleed, at brain window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guad.commands.score import scan_seed  # noqa: E402
from guad.inference import PAPER_SAMPLER, load_models, model_input, score_batch  # noqa: E402
from guad.io import read_ct  # noqa: E402
from guad.preprocess import preprocess_ct  # noqa: E402
from guad.viewer import apply_window, take_slice  # noqa: E402


def inputs(path: Path, models) -> dict:
    """Each model's input for one scan file."""
    pp = preprocess_ct(read_ct(path))
    return {m: model_input(pp, lm.cfg) for m, lm in models.items()}


def load(manifest: Path, rows: pd.DataFrame, models):
    return [(r.scan_id, inputs(manifest.parent / r.path, models)) for r in rows.itertuples()]


def load_rescans(manifest: Path, rows: pd.DataFrame, models, noise_seed: int = 1):
    """The same synthetic patients rescanned: new scanner noise, everything else identical,
    through the same file format (int16 NIfTI) and pre-processing as the cohort's scans."""
    import tempfile

    from guad.synth.cohort import remake_scan, write_scan

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in rows.to_dict("records"):
            write_scan(remake_scan(r, noise_seed=noise_seed), Path(tmp), r["scan_id"])
            out.append((r["scan_id"], inputs(Path(tmp) / "images" / f"{r['scan_id']}.nii.gz", models)))
    return out


def errors(pairs) -> dict:
    """Mean over scans of the MAE (HU) inside the brain, overall and split by in-plane depth:
    the rim (within 2 voxels of the brain's edge, where the brain mask's cut meets the
    reconstruction) and the interior (everything deeper), so an edge artefact shows apart."""
    from scipy import ndimage as ndi

    out = {"MAE HU": [], "rim <=2 vox": [], "interior": []}
    for inp, recon in pairs:
        d = np.abs(inp.image[0] - recon) * 100.0
        # (X, Y, Z): chamfer distance to the outside, slice by slice (slices are 4-5 mm thick)
        depth = np.stack([ndi.distance_transform_cdt(inp.mask[:, :, k]) for k in range(inp.mask.shape[2])], -1)
        out["MAE HU"].append(d[inp.mask].mean())
        out["rim <=2 vox"].append(d[inp.mask & (depth <= 2)].mean())
        out["interior"].append(d[depth > 2].mean())
    return {k: float(np.mean(v)) for k, v in out.items()}


def figure(path: Path, cases: dict, models, sampler: str, t0: int | None = None) -> None:
    """Rows: a normal and a bleed; columns: input, then per model reconstruction and |diff|."""
    from PIL import Image, ImageDraw

    tiles = []
    for name, (sid, inputs) in cases.items():
        row = []
        for m, lm in models.items():
            r = score_batch(lm, [inputs[m]], [scan_seed(0, sid)], sampler, t0=t0)[0]
            k = int(np.argmax(np.abs(r.signed).sum(axis=(0, 1)))) if np.abs(r.signed).sum() else r.image.shape[2] // 2
            img = apply_window(take_slice(r.image * 100 - 10, "axial", k), 80, 40)
            rec = apply_window(take_slice(np.where(r.mask, r.recon * 100 - 10, -10), "axial", k), 80, 40)
            diff = np.clip(np.abs(take_slice((r.image - r.recon) * 100 * r.mask, "axial", k)) * 255 / 40, 0, 255).astype(np.uint8)
            if m == "cmm":
                row.append((f"{name} input (CMM grid)", img))
            row += [(f"{m.upper()} reconstruction", rec), (f"{m.upper()} |diff| 0-40 HU", diff)]
        tiles.append(row)
    size = 192
    canvas = Image.new("RGB", (size * len(tiles[0]), (size + 16) * len(tiles)), "black")
    d = ImageDraw.Draw(canvas)
    for i, row in enumerate(tiles):
        for j, (label, a) in enumerate(row):
            canvas.paste(Image.fromarray(a).resize((size, size), Image.NEAREST).convert("RGB"), (j * size, i * (size + 16) + 16))
            d.text((j * size + 3, i * (size + 16) + 2), label, fill=(255, 255, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True)
    p.add_argument("--cmm")
    p.add_argument("--fgm")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--samplers", default="x0,ddim:10")
    p.add_argument("--t0s", default="", help="comma-separated noise levels to try besides each config's (e.g. 100,200)")
    p.add_argument("--figure")
    p.add_argument("--figure-t0", type=int, default=None, help="t0 of the figure's reconstructions (default: each config's)")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    manifest = Path(args.manifest)
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False).sort_values("scan_id")
    models = load_models(args.cmm, args.fgm)
    val_rows = m[(m.split == "val") & (m.label == "normal")].head(args.n)
    val = load(manifest, val_rows, models)
    train = load(manifest, m[(m.split == "train")].head(args.n), models)
    synthetic = {"seed", "site", "size"} <= set(m.columns)
    rescans = load_rescans(manifest, val_rows, models) if synthetic else None
    rows = []
    for mdl, lm in models.items():
        mean = np.mean([inp[mdl].image[0] for _, inp in train], axis=0)
        rows.append({"model": mdl, "method": "mean training image", "calls": 0,
                     **errors((inp[mdl], mean) for _, inp in val)})
        if rescans is not None:
            rows.append({"model": mdl, "method": "same patient rescanned (new noise): the floor", "calls": 0,
                         **errors((inp[mdl], re[mdl].image[0]) for (_, inp), (_, re) in zip(val, rescans))})
        from guad.sampling import SamplerSpec
        t0s = [lm.t0] + [int(t) for t in args.t0s.split(",") if t.strip()]
        for t0 in t0s:
            for s in [s for s in args.samplers.split(",") if s]:
                s = PAPER_SAMPLER[mdl] if s == "paper" else s  # ddpm (CMM) / ddim (FGM), every step
                res = score_batch(lm, [inp[mdl] for _, inp in val], [scan_seed(0, sid) for sid, _ in val], s, t0=t0)
                rows.append({"model": mdl, "method": f"reconstruction {s} from t0={t0}",
                             "calls": SamplerSpec.parse(s).network_calls(t0),
                             **errors((inp[mdl], r.recon) for (_, inp), r in zip(val, res))})
    print(f"mean absolute error inside the brain, {len(val)} validation normals")
    print(pd.DataFrame(rows).round(2).to_string(index=False))
    if args.figure:
        crit = m[(m.split == "val") & (m.finding == "ich")]
        crit = crit.assign(ml=crit.lesion_ml.astype(float)).sort_values("ml", ascending=False).head(1)
        cases = {"normal": val[0], "bleed": load(manifest, crit, models)[0]}
        figure(Path(args.figure), cases, models, args.samplers.split(",")[-1], args.figure_t0)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
