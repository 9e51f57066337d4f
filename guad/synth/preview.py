"""Contact sheet: one row per finding (and a normal), brain window W80/L40, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guad.synth.findings import BENIGN, CRITICAL


def brain_window(hu: np.ndarray, level: float = 40.0, width: float = 80.0) -> np.ndarray:
    return (np.clip((hu - (level - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def axial_tile(hu: np.ndarray, k: int, lesion: np.ndarray | None = None) -> np.ndarray:
    """RGB tile of slice k in radiological convention (vol[:, :, k].T), lesion outlined red."""
    g = brain_window(hu[:, :, k].T)
    rgb = np.repeat(g[..., None], 3, -1)
    if lesion is not None and lesion[:, :, k].any():
        m = lesion[:, :, k].T
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        rgb[edge] = (255, 40, 40)
    return rgb


def contact_sheet(out: str | Path, size: int = 128, seed: int = 0, slices: int = 5,
                  findings=None, site=None) -> Path:
    """One row per finding: the slices around the lesion's largest cross-section (left:
    plain, right: lesion outlined). Returns the PNG path."""
    from PIL import Image

    from guad.synth.generator import generate_scan
    findings = [None] + list(CRITICAL + BENIGN) if findings is None else findings
    rows = []
    for i, f in enumerate(findings):
        scan = generate_scan(seed * 1000 + i, finding=f, size=size, site=site)
        les = scan.truth["lesion"]
        nz = scan.hu.shape[2]
        kc = int(np.argmax(les.sum((0, 1)))) if les.any() else nz // 2
        ks = np.clip(np.arange(kc - slices // 2, kc - slices // 2 + slices), 0, nz - 1)
        tiles = [axial_tile(scan.hu, int(k)) for k in ks]
        tiles.append(axial_tile(scan.hu, kc, les))
        row = np.concatenate(tiles, 1)
        label = np.full((14, row.shape[1], 3), 0, np.uint8)
        rows.append(np.concatenate([label, row], 0))
        rows[-1] = _label(rows[-1], f"{f or 'normal'}  {scan.lesion_ml:.1f} mL")
    sheet = np.concatenate(rows, 0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out)
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((3, 1), text, fill=(255, 255, 0))
    return np.asarray(im)
