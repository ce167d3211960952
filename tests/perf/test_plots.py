"""The timing model's plots cover the whole run at any grid size (tilegrid/perf/plots.py, activity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tilegrid import perf
from tilegrid.perf.activity import MAX_BINS, Activity


def test_activity_counts_every_cycle_in_a_bounded_number_of_bins():
    rng = np.random.default_rng(0)
    a = Activity(width=16.0)
    total = 0.0
    for start in np.sort(rng.uniform(0, 2e6, 3000)):
        length = float(rng.uniform(1, 5000))
        a.add(("core", "t"), float(start), float(start) + length)
        total += length
    bins = a.tracks[("core", "t")]
    assert len(bins) <= MAX_BINS and a.width > 16.0  # coarsened as the run grew
    assert sum(bins) == pytest.approx(total)


@pytest.mark.parametrize("grid", [(1, 1), (8, 10)])
def test_plots_cover_the_whole_run_on_small_and_full_grids(grid, tmp_path):
    pytest.importorskip("matplotlib")
    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import AttentionConfig, flash_attention

    q = perf.placeholder((1, 4, 1024, 64))
    with perf.session("HiFi4", timing_only=True, trace_cores=4) as s:  # the Perfetto trace keeps 4 cores
        flash_attention(q, q, q, causal=True, config=AttentionConfig(grid=grid), device=WORMHOLE)
    summary = s.last
    # every core's compute ops are in the activity bins, over the whole run (not the trace's excerpt)
    compute = {k: sum(v) for k, v in summary.activity.tracks.items() if k[1] == "attention"}
    assert len(compute) == grid[0] * grid[1]
    assert sum(compute.values()) == pytest.approx(sum(t[4] for t in summary.op_totals.values()))
    assert summary.activity.width * MAX_BINS >= summary.cycles
    files = summary.write_plots(str(tmp_path), "fa_")
    assert [f.rsplit("/", 1)[1] for f in files] == ["fa_utilisation.png", "fa_timeline.png"]
    from matplotlib.image import imread

    for f in files:
        h, w = imread(f).shape[:2]
        assert 200 < h < 2200 and 600 < w < 2200, (f, h, w)  # readable, not a sliver nor a poster
