"""The timing model's cost formulas on small hand-computed cases, and its physical limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tile_matmul
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import WORMHOLE_N150
from tilegrid.kernels.gemm import matmul
from tilegrid.numerics import fidelity_matmul, round_bfp8_b
from tilegrid.perf.costs import CostContext, op_cost
from tilegrid.perf.model import Calendar, PerfModel
from tilegrid.perf.params import WORMHOLE_N150 as P
from tilegrid.perf.workloads import blocked_matmul, dram_read

FIDELITIES = {"LoFi": 16, "HiFi2": 32, "HiFi3": 48, "HiFi4": 64}


@pytest.mark.parametrize("fidelity,cycles", FIDELITIES.items())
def test_one_tile_matmul_formula(fidelity, cycles):
    ctx = CostContext(P, fidelity, cb_formats=("bf16", "bf16", "bf16"))
    c = op_cost(ctx, tile_matmul(), 1)
    assert c.fpu == cycles  # anchors: LoFi 16 / HiFi2 32 / HiFi3 48 / HiFi4 64 per tile MAC
    # two bf16 tiles through the unpackers: 4096 B at the joint 80 B/cycle; pack 2048 B at 64 B/cycle
    assert c.unpack == pytest.approx(4096 / 80)
    assert c.pack == pytest.approx(2048 / 64)
    assert c.total == pytest.approx(max(4096 / 80, cycles, 32) + P.op_overhead_cycles)
    assert c.flops == 2 * 32**3


@pytest.mark.parametrize("fidelity,cycles", FIDELITIES.items())
def test_one_tile_matmul_kernel(fidelity, cycles):
    a = np.random.default_rng(1).standard_normal((32, 32)).astype(bfloat16)
    with perf.session(fidelity) as s:
        matmul(a, a.copy(), grid=(1, 1), device=WORMHOLE_N150)
    fpu = sum(v[0] for k, v in s.last.op_totals.items() if k.startswith("matmul"))
    assert fpu == cycles + 8  # the MAC, plus the FPU copy that reloads the accumulator into DST
    assert s.last.device == "wormhole_n150"


def test_dram_read_of_known_size_and_hops():
    m = PerfModel(P, grid=(8, 8), thread_kinds={"reader": "dm0"})
    h = m.handle_dram((0, 0), "reader", "dram_read", 8 * 2048, None)
    # issue; core port 16384 B / 32 B per cycle = 512; 8 tiles on 8 channels, 2048 B / 24 B per
    # cycle each = 85.3; the data's route on NoC0 (rightwards, then down, wrapping): core (0, 0) is
    # NoC (1, 1); the farthest of channels 0-7 is channel 7 at NoC (5, 2): right 5 -> 1 is 6 hops
    # (wrapping at x = 10), down 2 -> 1 is 11 (wrapping at y = 12): 17 hops -> 2 * 5 (NIUs) +
    # 17 * 9 = 163; plus the DRAM latency. The link into (1, 1) carries all 8 tiles: 512 cycles too.
    assert m.handles[h] == pytest.approx(P.dma_issue_cycles + 512 + 163 + P.dram_latency_cycles)
    assert m.links[(0, 1, 0, "S")].bytes == 8 * 2048
    m.dma_wait((0, 0), "reader", h)
    assert m.th((0, 0), "reader").clock == pytest.approx(m.handles[h])


def test_multicast_to_a_row_is_one_transfer():
    m = PerfModel(P, grid=(8, 8), thread_kinds={"reader": "dm0"})
    row = [(0, c) for c in range(1, 8)]
    h = m.handle_mcast((0, 0), "reader", 4096, row)
    # issue; sender port once (4096 / 32 = 128 cycles), each receiver port once, each link of the
    # tree once; farthest receiver: NoC (1, 1) -> (9, 1) rightwards is 8 hops -> 10 + 72 = 82.
    assert m.handles[h] == pytest.approx(P.dma_issue_cycles + 128 + 82)
    assert {k for k in m.links} == {(0, x, 1, "E") for x in range(1, 9)}
    assert all(c.bytes == 4096 for c in m.links.values())
    assert m.ports[((0, 0), 0, "out")].bytes == 4096
    assert m.bytes["mcast_delivered"] == 7 * 4096


def test_noc_routes_are_dimension_ordered_on_a_unidirectional_torus():
    # NoC0: right, then down; NoC1: up, then left; both wrap (ISA NoC 'Routing Paths')
    assert P.route((1, 1), (3, 2), 0) == ((0, 1, 1, "E"), (0, 2, 1, "E"), (0, 3, 1, "S"))
    assert P.route((3, 2), (1, 1), 0)[0] == (0, 3, 2, "E") and len(P.route((3, 2), (1, 1), 0)) == 8 + 11
    assert P.route((1, 1), (0, 0), 1) == ((1, 1, 1, "N"), (1, 1, 0, "W"))


def test_transfers_sharing_a_link_share_its_bandwidth():
    m = PerfModel(P, grid=(8, 8), thread_kinds={"reader": "dm0"})
    # core (0, 0) -> (0, 2) crosses NoC links x = 1, 2; core (0, 1) -> (0, 3) crosses x = 2, 3
    a = m.handle_mcast((0, 0), "reader", 8192, [(0, 2)])
    b = m.handle_mcast((0, 1), "reader", 8192, [(0, 3)])
    lat = 2 * P.noc_niu_cycles + 2 * P.noc_hop_cycles
    assert m.handles[a] == pytest.approx(P.dma_issue_cycles + 8192 / 32 + lat)
    # link (2, 1) E carries both blocks: the second finishes about one block-time later (the fluid
    # calendar places capacity per window, so up to the issue time earlier)
    assert m.links[(0, 2, 1, "E")].bytes == 2 * 8192
    assert 8192 / 32 - P.dma_issue_cycles <= m.handles[b] - m.handles[a] <= 8192 / 32


def test_cb_wait_cannot_finish_before_push():
    m = PerfModel(P, grid=(1, 1), thread_kinds={"comp": "compute", "reader": "dm0"})
    m.th((0, 0), "reader").clock = 1000.0
    m.on_sync((0, 0), "reader", "push", 0, 0)
    m.on_sync((0, 0), "comp", "wait", 0, 0)
    comp = m.th((0, 0), "comp")
    assert comp.clock >= 1000 and comp.stall >= 1000 - P.cb_sync_cycles
    m.on_sync((0, 0), "comp", "pop", 0, 0)
    m.on_sync((0, 0), "reader", "reserve", 0, 0)
    assert m.th((0, 0), "reader").clock >= comp.clock


def test_calendar_never_exceeds_bandwidth():
    cal = Calendar(24.0)
    rng = np.random.default_rng(0)
    ends, total = [], 0
    for start in rng.uniform(0, 5000, 300):  # out of time order, overlapping
        n = int(rng.integers(100, 10000))
        total += n
        ends.append(cal.reserve(float(start), n))
    assert total / max(ends) <= 24.0 + 1e-9
    assert Calendar(10.0).reserve(100.0, 1000) == pytest.approx(200.0)


@pytest.mark.parametrize("fidelity", ["LoFi", "HiFi4"])
def test_dense_matmul_below_peak(fidelity):
    n = 1024
    with perf.session(fidelity, timing_only=True, trace=False) as s:
        blocked_matmul(perf.placeholder((n, n)), perf.placeholder((n, n)), grid=(4, 4), bm=4, bn=4, bk=4,
                       device=WORMHOLE_N150)
    r = s.last
    assert r.flops == 2 * n**3
    assert 0.2 < r.fraction_of_peak <= 1.0


def test_dram_read_below_dram_bandwidth():
    with perf.session(timing_only=True, trace=False) as s:
        dram_read((4096, 4096), grid=(8, 8), block=(4, 4), device=WORMHOLE_N150)
    r = s.last
    assert r.dram_bytes >= 4096 * 4096 * 2  # the input, plus one output tile per core
    assert 0.5 * 288 < r.dram_gbps <= 288.0
    # 64 cores reading every channel on NoC0: the links leaving the DRAM columns saturate first
    assert r.bound in ("DRAM", "NoC")


def test_timing_only_predicts_the_same_and_writes_trace(tmp_path):
    from tilegrid.kernels.attention import AttentionConfig, flash_attention

    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((1, 2, 256, 64)).astype(bfloat16) for _ in range(3))
    cfg = AttentionConfig(q_chunk=2, kv_chunk=2, grid=(2, 2))
    with perf.session() as full:
        out = flash_attention(q, k, v, causal=True, config=cfg)
    with perf.session(timing_only=True) as timing:
        flash_attention(q, k, v, causal=True, config=cfg)
    assert not np.isnan(np.asarray(out, np.float32)).any()
    assert full.last.cycles == pytest.approx(timing.last.cycles)
    path = full.last.write_trace(str(tmp_path / "trace.json"))
    ev = json.load(open(path))["traceEvents"]
    assert any(e.get("cat") == "wait" for e in ev) and any(e.get("cat") == "compute" for e in ev)
    assert {e["pid"] for e in ev if e["ph"] == "X"} == {0, 1, 2, 3}
    pytest.importorskip("matplotlib")
    files = full.last.write_plots(str(tmp_path))
    assert len(files) == 2


def test_fidelity_and_bfp8_numerics():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 64)).astype(bfloat16).astype(np.float32)
    b = rng.standard_normal((64, 64)).astype(bfloat16).astype(np.float32)
    ref = a.astype(np.float64) @ b
    errs = [np.linalg.norm(fidelity_matmul(a, b, f) - ref) / np.linalg.norm(ref) for f in FIDELITIES]
    assert errs[0] > errs[1] > errs[2] > errs[3] and errs[3] < 1e-6  # HiFi4 is exact on bf16
    x = rng.standard_normal((4, 64)).astype(np.float32) * np.float32(3.0)
    q = round_bfp8_b(x)
    groups = q.reshape(4, 4, 16)
    mx = np.abs(x.reshape(4, 4, 16)).max(-1, keepdims=True)
    quantum = 2.0 ** (np.floor(np.log2(mx)) - 6)
    assert np.allclose(groups / quantum, np.rint(groups / quantum))  # one shared exponent per 16
    assert np.abs(q - x).max() <= quantum.max() / 2 + 1e-7


def test_bfp8_applies_to_outputs_too():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((64, 64)).astype(bfloat16)
    b = rng.standard_normal((64, 64)).astype(bfloat16)
    plain = np.asarray(matmul(a, b, grid=(1, 1), device=WORMHOLE_N150), np.float32)
    with perf.session(data_format="bfp8_b", trace=False) as s:
        out = np.asarray(matmul(a, b, grid=(1, 1), device=WORMHOLE_N150), np.float32)
    ref = round_bfp8_b(a.astype(np.float32)).astype(np.float64) @ round_bfp8_b(b.astype(np.float32))
    assert np.array_equal(round_bfp8_b(out), out) and not np.array_equal(round_bfp8_b(plain), plain)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 2e-2
    # 4 tiles out at 1088 B each (bfp8_b), 8 in
    assert s.last.dram_bytes == (8 + 4) * 1088


def _fa(seq=512, heads=8, kv_heads=None, causal=False, **cfg):
    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import AttentionConfig, flash_attention

    q = perf.placeholder((1, heads, seq, 64))
    kv = perf.placeholder((1, kv_heads or heads, seq, 64))
    with perf.session("HiFi2", timing_only=True, trace=False, exp="approx") as s:
        flash_attention(q, kv, kv, causal=causal, config=AttentionConfig(q_chunk=2, kv_chunk=2, **cfg),
                        device=WORMHOLE)
    return s.last


def test_roadmap_effects_small():
    """The roadmap's optimisations move the model the way their design says (benchmarks/perf_roadmap.py)."""
    on, off = _fa(), _fa(double_buffer=False)
    assert on.cycles < off.cycles and on.dram_bytes == off.dram_bytes  # overlap, same traffic
    mc = _fa(mcast=True)
    assert mc.dram_bytes < off.dram_bytes / 3 and mc.mcast_bytes > 0  # K/V read once per grid row
    # seq 1024: 128 Q-chunk items on 80 cores (balancing only helps with more items than cores)
    noskip, skip = _fa(1024, causal=True, skip=False, balance=False), _fa(1024, causal=True, balance=False)
    assert skip.cycles < noskip.cycles and skip.flops < 0.6 * noskip.flops  # wholly masked chunks not computed
    assert _fa(1024, causal=True).cycles < 0.8 * skip.cycles  # balancing pairs early and late Q chunks
    per_head, packed = _fa(heads=8, kv_heads=2, gqa_pack=False), _fa(heads=8, kv_heads=2, gqa_pack=True)
    assert packed.flops == per_head.flops and packed.dram_bytes < 0.5 * per_head.dram_bytes  # K/V once per group


def test_cli_attention_perf_with_exp_modes(tmp_path, capsys):
    from tilegrid.cli import main

    args = ["attention", "--heads", "2", "--seq", "256", "--causal", "--grid", "2x2", "--perf", str(tmp_path)]
    assert main(args + ["--exp", "approx", "--fast-exp"]) == 0
    out = capsys.readouterr().out
    assert "approx exp:" in out and "exp approx" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["exp"] == "approx" and summary["cycles"] > 0
    assert (tmp_path / "trace.json").exists()


def test_autotune_inside_a_session_tunes_for_its_settings():
    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import AttentionConfig, autotune_attention, flash_attention

    q = perf.placeholder((1, 8, 1024, 128))
    picks = {}
    for fid, exp in (("HiFi4", "accurate"), ("HiFi2", "approx")):
        plans = []
        with perf.session(fid, exp=exp, timing_only=True, trace=False):
            flash_attention(q, q, q, config=AttentionConfig(autotune=True), device=WORMHOLE, plan_out=plans)
        want, _ = autotune_attention(q.shape, q.shape, device=WORMHOLE, fidelity=fid, exp=exp, log=None,
                                     config=AttentionConfig())
        picks[fid] = (plans[0].config.q_chunk, plans[0].config.kv_chunk)
        assert picks[fid] == (want.q_chunk, want.kv_chunk)


def test_sessions_nest_a_perf_session_inside_planning_inside_another():
    """The autotuner runs its own perf sessions inside FlashAttention's planning, itself inside the
    caller's session: the caller's session sees only its kernel's run, with the same numbers as
    the same run alone, and the context is restored after every session."""
    from tilegrid import context
    from tilegrid.kernels.attention import AttentionConfig, flash_attention

    q = perf.placeholder((1, 4, 512, 64))
    plans: list = []
    with perf.session("HiFi2", exp="approx", timing_only=True, trace=False) as outer:
        flash_attention(q, q, q, causal=True, config=AttentionConfig(autotune=True, grid=(2, 2)), plan_out=plans)
        assert context.current().perf is outer
    assert context.current().perf is None and context.current().target is None
    assert len(outer.results) == 1  # the tuner's candidate runs went to its own sessions
    with perf.session("HiFi2", exp="approx", timing_only=True, trace=False) as alone:
        flash_attention(q, q, q, causal=True, config=plans[0].config)
    assert outer.last.cycles == alone.last.cycles and outer.last.flops == alone.last.flops


@pytest.mark.parametrize("causal", [False, True])
def test_autotune_bounds_hold_and_its_pick_is_the_exhaustive_searchs(causal):
    """Every candidate's bound is at most its simulated time, and the tuner (which simulates few,
    stopping each once it passes the best) picks what simulating every candidate in full picks."""
    from ml_dtypes import bfloat16

    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import AttentionConfig, autotune_attention, build_kernel, choose_plan
    from tilegrid.kernels.attention.plan import arguments_shapes, make_problem

    shape = (1, 3, 384, 64)
    cfg, cands = autotune_attention(shape, shape, causal=causal, config=AttentionConfig(grid=(2, 2)),
                                    device=WORMHOLE, log=None)
    z = perf.placeholder(shape, bfloat16)
    problem = make_problem(z, z, z, causal, None, None, None)
    full = {}
    for c in cands:
        plan = choose_plan(problem, AttentionConfig(q_chunk=c.q_chunk, kv_chunk=c.kv_chunk, grid=(2, 2)), WORMHOLE,
                           "bf16")
        with perf.session("HiFi4", timing_only=True, trace=False) as s:
            build_kernel(plan, WORMHOLE)(*(perf.placeholder(sh, t) for sh, t in arguments_shapes(plan)))
        full[(c.q_chunk, c.kv_chunk)] = s.last.seconds
        assert c.bound <= s.last.seconds * (1 + 1e-9), (c, s.last.seconds)
        if c.seconds is not None:
            assert c.seconds == s.last.seconds
    assert full[(cfg.q_chunk, cfg.kv_chunk)] == min(full.values())
    assert sum(c.status == "simulated" for c in cands) < len(cands)  # the bounds and stops saved work


def test_autotune_table_and_progress_bar():
    import io

    from tilegrid.device import WORMHOLE
    from tilegrid.kernels.attention import AttentionConfig, autotune_attention

    lines, bar = [], io.StringIO()
    cfg, cands = autotune_attention((1, 2, 256, 64), (1, 2, 256, 64), causal=True, config=AttentionConfig(grid=(1, 2)),
                                    device=WORMHOLE, log=lines.append, progress=True, progress_file=bar)
    table = lines[0].splitlines()
    assert table[0].startswith(f"autotune (HiFi4, accurate exp): {len(cands)} candidates")
    chosen = [row for row in table if row.endswith("<- chosen")]
    assert len(chosen) == 1 and f"{32 * cfg.q_chunk:7d} {32 * cfg.kv_chunk:8d} 1x2" in chosen[0], lines[0]
    assert len(table) == 2 + len(cands)
    assert "autotune" in bar.getvalue() and "candidate" in bar.getvalue()
