import subprocess
import sys

from guad.cli import COMMANDS, build_parser, main


def test_help_lists_every_landed_command(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    assert "python -m guad" in help_text
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert name in COMMANDS


def test_no_command_prints_help_and_exits_zero(capsys):
    assert main([]) == 0
    assert "usage" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "guad", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "usage" in out.stdout
