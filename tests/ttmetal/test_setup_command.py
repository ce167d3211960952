"""`tilegrid setup tt-metal` is the one command that installs the target; without an install the
run environment is refused with that command named."""

from __future__ import annotations

from tilegrid.cli import main


def test_print_env_without_install_names_the_command(tmp_path, capsys):
    assert main(["setup", "tt-metal", "--print-env", "--root", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "not installed" in err and "tilegrid setup tt-metal" in err
