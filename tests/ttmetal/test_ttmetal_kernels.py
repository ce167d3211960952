"""Hand-written tt-metal C++ kernels (tests/ttmetal/kernels/) on wolfpine's simulated Wormhole, through tilegrid's
tt-metal environment layer: setup.find_env -> DeviceSession -> host.py -> ttnn.generic_op.

One device (one server, one simulator) for the whole module; wolfpine's cycle-cost model is on, so the per-core
cycle stamps are modelled cycles.  Skips unless `tilegrid setup tt-metal` has run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from tilegrid.targets.ttmetal.setup import find_env

ENV = find_env()
pytestmark = [
    pytest.mark.ttmetal,
    pytest.mark.skipif(ENV is None, reason="tt-metal environment not installed (or out of date): run "
                                           "`tilegrid setup tt-metal` (see docs/ttmetal_setup.md)"),
]

KERNELS = Path(__file__).resolve().parent / "kernels"
TILE_BYTES_BF16 = 32 * 32 * 2
TIMINGS: dict[str, object] = {}


def src(name: str) -> str:
    return (KERNELS / name).read_text()


def bf16(x: np.ndarray) -> np.ndarray:
    """Round to bf16 (nearest even) and back: the values the device sees, exactly."""
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def bf16_ulp(x: np.ndarray) -> np.ndarray:
    """One bf16 unit in the last place at each value's magnitude (8 significant bits)."""
    mag = np.maximum(np.abs(x), np.finfo(np.float32).tiny)
    return np.exp2(np.floor(np.log2(mag)) - 7)


def cb(index: int, cores, pages: int = 2, fmt: str = "bf16") -> dict:
    return {"index": index, "total_size": pages * TILE_BYTES_BF16, "page_size": TILE_BYTES_BF16, "format": fmt,
            "cores": cores}


def record(name: str, res, wall: float) -> None:
    TIMINGS[name] = {"wall_s": round(wall, 3), **res.timing, "built": res.built,
                     "max_span_cycles": (res.cycles or {}).get("max_span_cycles")}


@pytest.fixture(scope="module")
def dev():
    from tilegrid.targets.ttmetal.device import DeviceSession

    t0 = time.perf_counter()
    session = DeviceSession(ENV, sim_env={"TT_SIM_COST_MODEL": "1"})
    hello = session.start()
    TIMINGS["server_start_s"] = round(time.perf_counter() - t0, 3)
    TIMINGS["device_open_s"] = hello["open_s"]
    TIMINGS["import_ttnn_s"] = hello["import_s"]
    yield session
    t1 = time.perf_counter()
    session.close()
    TIMINGS["close_s"] = round(time.perf_counter() - t1, 3)
    out = ENV.logs_dir / "test_ttmetal_kernels.timings.json"
    out.write_text(json.dumps(TIMINGS, indent=1) + "\n")
    print(f"\nttmetal timings ({out}):\n{json.dumps(TIMINGS, indent=1)}")


def test_copy_two_cores(dev):
    """(a) DRAM -> L1 -> DRAM copy of a 64x64 bf16 tensor (4 tiles) on 2 cores, 2 tiles each: bit-exact."""
    a = bf16(np.random.default_rng(1).standard_normal((64, 64)))
    cores = [[0, 0], [1, 0]]
    prog = {
        "tensors": {"a": {"shape": [64, 64], "dtype": "bf16", "data": a},
                    "out": {"shape": [64, 64], "dtype": "bf16", "output": True}},
        "cbs": [cb(0, cores)],
        "kernels": [
            {"kind": "reader", "source": src("reader_tiles.cpp"), "cores": cores,
             "compile_args": [0, {"accessor": "a"}],
             "runtime_args": [{"core": [x, 0], "args": [{"addr": "a"}, 2 * x, 2]} for x in range(2)]},
            {"kind": "writer", "source": src("writer_tiles.cpp"), "cores": cores,
             "compile_args": [0, {"accessor": "out"}],
             "runtime_args": [{"core": [x, 0], "args": [{"addr": "out"}, 2 * x, 2]} for x in range(2)]},
        ],
    }
    t0 = time.perf_counter()
    res = dev.run(prog)
    record("copy", res, time.perf_counter() - t0)
    np.testing.assert_array_equal(res.outputs["out"], a)
    # Both cores ran both data-movement kernels and stamped their wall clocks (modelled cycles).
    cyc = res.cycles
    assert cyc is not None and cyc["missing_cores"] == []
    assert [c["core"] for c in cyc["cores"]] == [[0, 0], [1, 0]]
    for c in cyc["cores"]:
        assert c["brisc"]["cycles"] > 0 and c["ncrisc"]["cycles"] > 0

    # The same program again: served from tt-metal's kernel cache, no JIT build.
    t0 = time.perf_counter()
    again = dev.run(prog)
    record("copy_again", again, time.perf_counter() - t0)
    assert not again.built
    np.testing.assert_array_equal(again.outputs["out"], a)


def test_add_two_cores(dev):
    """(b) Elementwise add of two 64x64 bf16 tensors on 2 cores (reader, compute add_tiles, writer): within one bf16
    ulp of the exact (float64) sum of the bf16 inputs."""
    rng = np.random.default_rng(2)
    a = bf16(rng.standard_normal((64, 64)) * 4)
    b = bf16(rng.standard_normal((64, 64)))
    cores = [[0, 0], [1, 0]]
    prog = {
        "tensors": {"a": {"shape": [64, 64], "dtype": "bf16", "data": a},
                    "b": {"shape": [64, 64], "dtype": "bf16", "data": b},
                    "out": {"shape": [64, 64], "dtype": "bf16", "output": True}},
        "cbs": [cb(0, cores), cb(1, cores), cb(16, cores)],
        "kernels": [
            {"kind": "reader", "source": src("reader_binary.cpp"), "cores": cores,
             "compile_args": [0, 1, {"accessor": "a"}, {"accessor": "b"}],
             "runtime_args": [{"core": [x, 0], "args": [{"addr": "a"}, {"addr": "b"}, 2 * x, 2]} for x in range(2)]},
            {"kind": "compute", "source": src("compute_add.cpp"), "cores": cores, "compile_args": [0, 1, 16],
             "runtime_args": [{"core": [x, 0], "args": [2]} for x in range(2)], "math_fidelity": "HiFi4"},
            {"kind": "writer", "source": src("writer_tiles.cpp"), "cores": cores,
             "compile_args": [16, {"accessor": "out"}],
             "runtime_args": [{"core": [x, 0], "args": [{"addr": "out"}, 2 * x, 2]} for x in range(2)]},
        ],
    }
    t0 = time.perf_counter()
    res = dev.run(prog)
    record("add", res, time.perf_counter() - t0)
    ref = a.astype(np.float64) + b.astype(np.float64)
    err = np.abs(res.outputs["out"].astype(np.float64) - ref)
    assert np.all(err <= bf16_ulp(ref)), f"max error {err.max()} ulps {np.max(err / bf16_ulp(ref))}"
    # How often the device differs from round-to-nearest-even of the exact sum (by one ulp, as asserted above).
    TIMINGS["add_fraction_off_rne"] = round(float(np.mean(res.outputs["out"] != bf16(ref))), 4)
    # All five RISC-V engines of both cores stamped (unpack / math / pack TRISCs included).
    for c in res.cycles["cores"]:
        assert {"brisc", "ncrisc", "trisc0", "trisc1", "trisc2"} <= c.keys()


@pytest.mark.parametrize("fp32_acc", [False, True], ids=["bf16-dst", "fp32-dst"])
def test_matmul_one_core_k_loop(dev, fp32_acc):
    """(c) 64x64 @ 64x64 bf16 matmul on one core, K loop of 2 tiles accumulated in DST, HiFi4: within bf16 rounding
    of the float64 product.  A bf16 DST rounds each K-tile partial and their sum (three roundings); an fp32 DST
    (fp32_dest_acc_en) only rounds the packed bf16 result."""
    rng = np.random.default_rng(3)
    a = bf16(rng.standard_normal((64, 64)))
    b = bf16(rng.standard_normal((64, 64)))
    core = [0, 0]
    mt = kt = nt = 2
    prog = {
        "engines": not fp32_acc,  # also ask wolfpine's per-unit counters for this program
        "tensors": {"a": {"shape": [64, 64], "dtype": "bf16", "data": a},
                    "b": {"shape": [64, 64], "dtype": "bf16", "data": b},
                    "c": {"shape": [64, 64], "dtype": "bf16", "output": True}},
        "cbs": [cb(0, core), cb(1, core), cb(16, core)],
        "kernels": [
            {"kind": "reader", "source": src("reader_matmul.cpp"), "cores": core,
             "compile_args": [0, 1, {"accessor": "a"}, {"accessor": "b"}],
             "runtime_args": [{"core": [0, 0], "args": [{"addr": "a"}, {"addr": "b"}, mt, kt, nt]}]},
            {"kind": "compute", "source": src("compute_matmul.cpp"), "cores": core, "compile_args": [0, 1, 16],
             "runtime_args": [{"core": [0, 0], "args": [mt, kt, nt]}], "math_fidelity": "HiFi4",
             "fp32_dest_acc_en": fp32_acc},
            {"kind": "writer", "source": src("writer_tiles.cpp"), "cores": core,
             "compile_args": [16, {"accessor": "c"}],
             "runtime_args": [{"core": [0, 0], "args": [{"addr": "c"}, 0, mt * nt]}]},
        ],
    }
    name = "matmul_fp32_dst" if fp32_acc else "matmul"
    t0 = time.perf_counter()
    res = dev.run(prog)
    record(name, res, time.perf_counter() - t0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64
    # Each rounding to bf16 costs at most one ulp (2^-7 relative), bounded through |A|@|B| >= |partial sums|.
    bound = (1 if fp32_acc else 3) * 2.0**-7 * (np.abs(a64) @ np.abs(b64))
    err = np.abs(res.outputs["c"].astype(np.float64) - ref)
    TIMINGS[f"{name}_max_abs_err"] = float(err.max())
    TIMINGS[f"{name}_max_abs_ref"] = float(np.abs(ref).max())
    assert np.all(err <= bound), f"max error {err.max()} (bound there {bound.flat[np.argmax(err - bound)]})"
    if fp32_acc:
        return
    # wolfpine's cost model charged the matrix unit for the 8 tile products (2 x 2 outputs x 2 K steps), and the
    # wall-clock stamps of the five RISC-V threads bracket them.
    units = res.reply["engines"]["cores"]["0,0"]
    assert units["MATRIX"]["busy_cycles"] > 0 and units["PACKER"]["ops"] > 0 and units["UNPACKER"]["ops"] > 0
    TIMINGS["matmul_engines"] = {u: units[u] for u in ("MATRIX", "PACKER", "UNPACKER") if u in units}
    TIMINGS["matmul_cycles"] = {k: v["cycles"] for k, v in res.cycles["cores"][0].items() if isinstance(v, dict)}


def test_semaphore_handshake_and_multicast(dev):
    """(d) Core (0,0) reads a tile, waits on a semaphore until core (1,0) is ready, multicasts the tile into (1,0)'s
    CB and sets (1,0)'s "valid" semaphore by multicast; both cores then write their copy to DRAM."""
    a = bf16(np.random.default_rng(4).standard_normal((32, 32)))
    cores = [[[0, 0], [1, 0]]]  # one rectangle: both cores
    ready, valid = 0, 1
    recv = [1, 0]
    prog = {
        "tensors": {"a": {"shape": [32, 32], "dtype": "bf16", "data": a},
                    "out": {"shape": [32, 64], "dtype": "bf16", "output": True}},
        "cbs": [cb(0, cores, pages=1)],
        "semaphores": [{"id": ready, "initial_value": 0, "cores": cores},
                       {"id": valid, "initial_value": 0, "cores": cores}],
        "kernels": [
            {"kind": "dataflow", "processor": 0, "noc": 0, "source": src("mcast_sender.cpp"), "cores": [0, 0],
             "compile_args": [0, {"accessor": "a"}],
             "runtime_args": [{"core": [0, 0], "args": [{"addr": "a"}, {"noc_x": recv}, {"noc_y": recv},
                                                        {"noc_x": recv}, {"noc_y": recv}, 1, ready, valid]}]},
            {"kind": "dataflow", "processor": 0, "noc": 0, "source": src("mcast_receiver.cpp"), "cores": recv,
             "compile_args": [0],
             "runtime_args": [{"core": recv, "args": [{"noc_x": [0, 0]}, {"noc_y": [0, 0]}, ready, valid]}]},
            {"kind": "dataflow", "processor": 1, "noc": 1, "source": src("writer_tiles.cpp"), "cores": cores,
             "compile_args": [0, {"accessor": "out"}],
             "runtime_args": [{"core": [x, 0], "args": [{"addr": "out"}, x, 1]} for x in range(2)]},
        ],
    }
    t0 = time.perf_counter()
    res = dev.run(prog)
    record("multicast", res, time.perf_counter() - t0)
    out = res.outputs["out"]
    np.testing.assert_array_equal(out[:, :32], a)  # the sender's own copy
    np.testing.assert_array_equal(out[:, 32:], a)  # what arrived by multicast


def test_compile_error_is_structured(dev):
    """A kernel that does not compile comes back as DeviceError(kind="compile") with the compiler's message, and the
    session stays usable."""
    from tilegrid.targets.ttmetal.device import DeviceError

    bad = "#include \"api/dataflow/dataflow_api.h\"\nvoid kernel_main() { tilegrid_no_such_function(); }\n"
    prog = {
        "tensors": {"a": {"shape": [32, 32], "dtype": "bf16", "data": np.zeros((32, 32), np.float32)},
                    "out": {"shape": [32, 32], "dtype": "bf16", "output": True}},
        "kernels": [{"kind": "writer", "source": bad, "cores": [0, 0]}],
    }
    with pytest.raises(DeviceError) as info:
        dev.run(prog)
    assert info.value.kind == "compile" and not info.value.fatal
    assert "tilegrid_no_such_function" in info.value.detail["compiler_output"]
    assert dev.ping()


def test_hang_is_reported_and_session_recovers(dev):
    """A kernel that waits forever (cb_wait_front on a CB nobody fills) trips wolfpine's deadlock watchdog: the run
    fails with kind "deadlock" and the watchdog's report, and the next request gets a fresh server."""
    from tilegrid.targets.ttmetal.device import DeviceError

    hang = ("#include \"api/dataflow/dataflow_api.h\"\n"
            "void kernel_main() { cb_wait_front(0, 1); }  // nobody ever pushes\n")
    prog = {
        "tensors": {"a": {"shape": [32, 32], "dtype": "bf16", "data": np.zeros((32, 32), np.float32)},
                    "out": {"shape": [32, 32], "dtype": "bf16", "output": True}},
        "cbs": [cb(0, [0, 0], pages=1)],
        "kernels": [{"kind": "writer", "source": hang, "cores": [0, 0]}],
    }
    t0 = time.perf_counter()
    with pytest.raises(DeviceError) as info:
        dev.run(prog, timeout_s=120)
    TIMINGS["hang_detected_s"] = round(time.perf_counter() - t0, 3)
    assert info.value.kind == "deadlock" and info.value.fatal
    assert "no observable progress" in info.value.detail["watchdog"]
    t0 = time.perf_counter()
    assert dev.ping()  # a fresh server and device
    TIMINGS["restart_s"] = round(time.perf_counter() - t0, 3)
    assert dev.restarts == 1
