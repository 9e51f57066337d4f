"""`python -m guad <command>`: the command-line interface.

Each command lives in its own module under guad/commands/ and exposes:
    HELP: str                      one line for `python -m guad --help`
    add_arguments(parser) -> None  its flags
    run(args) -> int               exit status (0 ok, 2 bad input)
The list below is the only place that names them, so `--help` always lists every command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from guad.errors import GuadError

# command name -> module under guad.commands (ordered as a user meets them)
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "preprocess": "preprocess",
    "models": "models",
    "train": "train",
    "score": "score",
    "maps": "maps",
    "import": "import_",
    "report": "report",
    "benchmark": "benchmark",
}


def _load(module: str):
    return importlib.import_module(f"guad.commands.{module}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m guad",
        description="Unsupervised anomaly detection in non-contrast head CT "
        "(coarse + fine diffusion autoencoders) to take unremarkable scans off the worklist.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, module in COMMANDS.items():
        try:
            mod = _load(module)
        except ModuleNotFoundError as exc:  # a command whose module has not landed yet
            if exc.name != f"guad.commands.{module}":
                raise
            continue
        # argparse %-formats help strings: escape a literal % ("95% CI")
        p = sub.add_parser(name, help=mod.HELP.replace("%", "%%"), description=(mod.__doc__ or mod.HELP).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except GuadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
