"""`tilegrid setup tt-metal` is the one command that installs the target; without an install the
run environment is refused with that command named."""

from __future__ import annotations

from tilegrid.cli import main


def test_print_env_without_install_names_the_command(tmp_path, capsys):
    assert main(["setup", "tt-metal", "--print-env", "--root", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "not installed" in err and "tilegrid setup tt-metal" in err


def test_card_environment_has_no_simulator():
    """TILEGRID_TTMETAL_DEVICE=hw: tt-metal's own variables from the user's install, none of wolfpine's."""
    from tilegrid.targets.ttmetal.setup import card_env, device_kind

    env = card_env({"TILEGRID_TTMETAL_PYTHON": "/opt/tt/bin/python3", "TT_METAL_HOME": "/opt/tt-metal"})
    run = env.env({"TT_METAL_SIMULATOR": "/stale", "TT_METAL_SLOW_DISPATCH_MODE": "1", "PATH": "/bin"})
    assert run["TT_METAL_HOME"] == "/opt/tt-metal" and str(env.python) == "/opt/tt/bin/python3"
    assert "TT_METAL_SIMULATOR" not in run and "TT_METAL_SLOW_DISPATCH_MODE" not in run and run["PATH"] == "/bin"
    assert (device_kind({}), device_kind({"TILEGRID_TTMETAL_DEVICE": "hw"})) == ("sim", "hw")


def test_card_environment_names_what_is_missing():
    import pytest

    from tilegrid.targets.ttmetal.setup import SetupError, card_env, device_kind

    with pytest.raises(SetupError, match="TILEGRID_TTMETAL_PYTHON.*missing: TILEGRID_TTMETAL_PYTHON, TT_METAL_HOME"):
        card_env({})
    with pytest.raises(SetupError, match="must be 'sim'"):
        device_kind({"TILEGRID_TTMETAL_DEVICE": "card"})
