"""Make a synthetic cohort of 5 mm non-contrast head CTs from the MNI152 tissue maps.

Writes DIR/images/<scan_id>.nii.gz (int16 HU, LPS, real spacing), DIR/lesions/<scan_id>.nii.gz
for scans with a finding, and DIR/manifest.csv (scan_id, path, site, split, label, finding,
lesion_ml, seed). Same preset and seed give the same bytes; an interrupted run resumes.
Presets: tiny (tests, seconds), demo (>= 2,000 scans), benchmark (>= 100 a class in test).
"""

from __future__ import annotations

from pathlib import Path

from guad.errors import InputError

HELP = "make a synthetic head-CT cohort (images, lesion masks, manifest.csv)"


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="tiny", help="tiny | demo | benchmark (default tiny)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--size", type=int, default=None, help="override the in-plane matrix")
    parser.add_argument("--limit", type=int, default=None, help="at most N scans per group")
    parser.add_argument("--preview", action="store_true",
                        help="also write DIR/preview.png, a contact sheet of every finding")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from guad.synth.cohort import PRESETS, write_cohort
    if args.preset not in PRESETS:
        raise InputError(None, f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    if args.size is not None and not 32 <= args.size <= 1024:
        raise InputError(None, f"--size {args.size}: expected 32..1024")
    out = Path(args.out)
    rows = write_cohort(args.preset, out, seed=args.seed, size=args.size, limit=args.limit,
                        progress=not args.quiet)
    print(f"wrote {len(rows)} scans to {out} (manifest: {out / 'manifest.csv'})")
    if args.preview:
        from guad.synth.preview import contact_sheet
        size = args.size or min(PRESETS[args.preset].size, 128)
        png = contact_sheet(out / "preview.png", size=size, seed=args.seed)
        print(f"preview: {png}")
    return 0
