"""One SFPU routine as a whole tt-metal program, for its tests and its benchmark on the simulated Wormhole.

reader (the operands' tiles -> circular buffers) -> compute (copy_tile each operand into its DST slot, the routine,
pack_tile the result) -> writer (a NaN-poisoned output tensor).  Where the result lands in DST is poisoned too: a
unary routine runs in place on DST[1] with a NaN tile in DST[0] (so tile addressing is exercised), an n-ary one
writes a DST slot that holds a NaN tile beforehand.  Values are batched 1024 to a tile, many tiles per program:
wolfpine charges ~0.2-0.8 s a program, the JIT build a few seconds, so many routines (cases) share one program.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tilegrid.targets.ttmetal.sfpu import SfpuRoutine

KERNELS = Path(__file__).resolve().parent / "harness_kernels"
TILE = 32 * 32
POISON = np.float32(np.nan)


def layout(operands: int) -> tuple[list[int], list[int], int]:
    """(the routine's DST arguments, the DST slot of each of the 4 inputs, the DST slot packed).  The inputs are the
    routine's operands, then NaN tiles; so a unary routine runs in place on DST[1] with NaN in DST[0], and an n-ary
    one writes a slot holding NaN (max(a=0, b=1, out=2); where(c=0, a=1, b=2, out=3))."""
    if operands == 1:
        return [1], [1, 2, 3, 0], 1
    return list(range(operands)), [0, 1, 2, 3], operands - 1


def as_tiles(x: np.ndarray) -> np.ndarray:
    """Values as a (32 * rows, 32) float32 array, padded with ones to whole tiles."""
    flat = np.asarray(x, np.float32).ravel()
    pad = (-flat.size) % TILE
    return np.concatenate([flat, np.ones(pad, np.float32)]).reshape(-1, 32)


def program(cases: list[tuple[SfpuRoutine, list[np.ndarray]]], fp32_dest: bool, *, engines: bool = False,
            call: str | None = None) -> tuple[dict, list[slice]]:
    """The request for DeviceSession.run that applies each case's routine to its inputs (equal-size float arrays,
    one per operand the routine reads), and where each case's results lie in the output (flat slices).
    call: a replacement for the routines' call statement ("" measures the harness alone)."""
    dtype = "f32" if fp32_dest else "bf16"
    page = TILE * (4 if fp32_dest else 2)
    tensors: list[list[np.ndarray]] = [[], [], [], []]
    code, defs, spans, start = [], [], [], 0
    for r, inputs in cases:
        ops = r.program.operands if r.program is not None else (len(inputs) + (len(inputs) > 1))
        assert len(inputs) == max(1, ops - 1), f"{r.op}: one input per operand read"
        data = [as_tiles(x) for x in inputs]
        tiles = data[0].size // TILE
        for k in range(4):
            tensors[k].append(data[k] if k < len(data) else np.full_like(data[0], POISON))
        args, slots, out = layout(ops)
        apply = r.call(*args) if call is None else call
        code.append(f"run_case<{', '.join(map(str, slots))}, {out}>({tiles}, [] {{ {apply} }});  // {r.op}")
        if r.definitions not in defs:
            defs.append(r.definitions)
        spans.append(slice(start * TILE, start * TILE + np.asarray(inputs[0]).size))
        start += tiles
    data = [np.concatenate(t) for t in tensors]
    n_in = 4
    core = [0, 0]
    names = [f"in{k}" for k in range(n_in)]
    src = (KERNELS / "compute_sfpu.cpp").read_text()
    src = src.replace("// SFPU_DEFINITIONS", "".join(defs))
    inits = "".join(sorted({r.init for r, _ in cases if r.init}))
    src = src.replace("    // SFPU_CASES", "    " + inits + "\n    ".join(code))
    return {
        "engines": engines,
        "tensors": {**{n: {"shape": list(d.shape), "dtype": dtype, "data": d} for n, d in zip(names, data)},
                    "out": {"shape": list(data[0].shape), "dtype": dtype, "output": True, "poison": True}},
        "cbs": [{"index": i, "total_size": 2 * page, "page_size": page, "format": dtype, "cores": core}
                for i in [*range(n_in), 16]],
        "kernels": [
            {"kind": "reader", "source": (KERNELS / "reader_sfpu.cpp").read_text(), "cores": core,
             "defines": {"N_IN": str(n_in)}, "compile_args": [{"accessor": n} for n in names],
             "runtime_args": [{"core": core, "args": [*({"addr": n} for n in names), 0, start]}]},
            {"kind": "compute", "source": src, "cores": core, "math_fidelity": "HiFi4",
             "defines": {"N_IN": str(n_in)}, "fp32_dest_acc_en": fp32_dest,
             "unpack_to_dest_fp32": list(range(n_in)) if fp32_dest else []},
            {"kind": "writer", "source": (KERNELS / "writer_sfpu.cpp").read_text(), "cores": core,
             "compile_args": [{"accessor": "out"}], "runtime_args": [{"core": core, "args": [{"addr": "out"}, 0, start]}]},
        ],
    }, spans


def run(session, cases: list[tuple[SfpuRoutine, list[np.ndarray]]], fp32_dest: bool, **kw):
    """Run the cases in one program: (each case's results, flat float32 of its inputs' size; the RunResult)."""
    req, spans = program(cases, fp32_dest, **kw)
    res = session.run(req)
    out = res.outputs["out"].ravel()
    return [out[s] for s in spans], res
