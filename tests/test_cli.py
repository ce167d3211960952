"""The command line, through `tilegrid.cli.main` (what the `tilegrid` console script runs)."""

from __future__ import annotations

import pytest

from tilegrid.cli import main

SMALL = ["attention", "--heads", "4", "--kv-heads", "1", "--seq", "64", "--head-dim", "32", "--grid", "1x1",
         "--dtype", "f32"]


@pytest.mark.parametrize("flag, heads_per_item", [("--gqa-pack", "4 Q heads per work item"), ("--no-gqa-pack", None)])
def test_attention_gqa_pack_flags(flag, heads_per_item, capsys):
    assert main([*SMALL, flag]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    plan = out.split("\n", 3)[:3]
    if heads_per_item:
        assert heads_per_item in plan[1], out
    else:  # tt-metal's layout: every Q head its own work item
        assert "Q heads per work item" not in out and "4 heads (1 KV heads) x 1 q chunks = 4 work items" in plan[1], out


def test_attention_autotune_reports_its_table_and_honest_times(capsys):
    assert main([*SMALL, "--kv-heads", "4", "--autotune", "--grid", "1x2"]) == 0
    out = capsys.readouterr().out
    assert "<- chosen" in out and "candidates" in out
    for line in ("autotune ", "planning + compile ", "simulation ", "float64 reference check "):
        assert any(s.startswith(line) and s.endswith(" s") or s.startswith(line) and " s (" in s
                   for s in out.splitlines()), (line, out)


def test_attention_no_check_skips_the_reference(capsys):
    assert main([*SMALL, "--no-check"]) == 0
    out = capsys.readouterr().out
    assert "no check against the float64 reference (--no-check)" in out
    assert "relative error" not in out and "reference check" not in out


def test_run_passes_arguments_after_the_separator_to_the_script(tmp_path):
    import sys

    script = tmp_path / "show_args.py"
    script.write_text("import sys, pathlib\npathlib.Path(sys.argv[0] + '.out').write_text(repr(sys.argv[1:]))\n")
    before = list(sys.argv)
    assert main(["run", str(script), "--", "--seqs", "1024", "-n", "3"]) == 0
    assert (tmp_path / "show_args.py.out").read_text() == repr(["--seqs", "1024", "-n", "3"])
    assert main(["run", str(script)]) == 0
    assert (tmp_path / "show_args.py.out").read_text() == "[]"
    assert sys.argv == before  # restored
