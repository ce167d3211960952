"""One SFPU routine as a whole tt-metal program, for its tests and its benchmark on the simulated Wormhole.

reader (the operands' tiles -> circular buffers) -> compute (copy_tile each operand into its DST slot, the routine,
pack_tile the result) -> writer (a NaN-poisoned output tensor).  Where the result lands in DST is poisoned too: a
unary routine runs in place on DST[1] with a NaN tile in DST[0] (so tile addressing is exercised), an n-ary one
writes a DST slot that holds a NaN tile beforehand.  Values are batched 1024 to a tile, many tiles per program:
wolfpine charges ~0.2-0.8 s a program, the JIT build a few seconds once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tilegrid.targets.ttmetal.sfpu import SfpuRoutine

KERNELS = Path(__file__).resolve().parent / "harness_kernels"
TILE = 32 * 32
POISON = np.float32(np.nan)


def layout(operands: int) -> tuple[list[int], list[int], int]:
    """(the routine's DST arguments, the DST slot each input goes to, the DST slot packed).  Inputs are the
    operands then one NaN tile; unary routines run in place."""
    if operands == 1:
        return [1], [1, 0], 1
    args = list(range(operands))  # e.g. max(a=0, b=1, out=2): out starts as the NaN tile
    return args, args, operands - 1


def as_tiles(x: np.ndarray) -> np.ndarray:
    """Values as a (32 * rows, 32) float32 array, padded with ones to whole tiles."""
    flat = np.asarray(x, np.float32).ravel()
    pad = (-flat.size) % TILE
    return np.concatenate([flat, np.ones(pad, np.float32)]).reshape(-1, 32)


def program(r: SfpuRoutine, inputs: list[np.ndarray], fp32_dest: bool, *, engines: bool = False,
            call: str | None = None) -> dict:
    """The request for DeviceSession.run: `r` applied to `inputs` (equal-size float arrays, one per operand).
    call: a replacement for the routine's call statement ("" measures the harness alone)."""
    assert r.program is None or len(inputs) == max(1, r.program.operands - 1), "one input per operand read"
    dtype = "f32" if fp32_dest else "bf16"
    page = TILE * (4 if fp32_dest else 2)
    data = [as_tiles(x) for x in inputs]
    data.append(np.full_like(data[0], POISON))
    args, slots, out = layout(len(inputs) + (0 if len(inputs) == 1 else 1))
    tiles = data[0].size // TILE
    core = [0, 0]
    names = [f"in{k}" for k in range(len(data))]
    src = (KERNELS / "compute_sfpu.cpp").read_text()
    src = src.replace("// SFPU_DEFINITIONS", r.definitions).replace("// SFPU_INIT", r.init)
    src = src.replace("// SFPU_CALL", r.call(*args) if call is None else call)
    slot_defs = {f"DST_{k}": str(slots[k] if k < len(slots) else 0) for k in range(4)}
    return {
        "engines": engines,
        "tensors": {**{n: {"shape": list(d.shape), "dtype": dtype, "data": d} for n, d in zip(names, data)},
                    "out": {"shape": list(data[0].shape), "dtype": dtype, "output": True, "poison": True}},
        "cbs": [{"index": i, "total_size": 2 * page, "page_size": page, "format": dtype, "cores": core}
                for i in [*range(len(data)), 16]],
        "kernels": [
            {"kind": "reader", "source": (KERNELS / "reader_sfpu.cpp").read_text(), "cores": core,
             "defines": {"N_IN": str(len(data))}, "compile_args": [{"accessor": n} for n in names],
             "runtime_args": [{"core": core, "args": [*({"addr": n} for n in names), 0, tiles]}]},
            {"kind": "compute", "source": src, "cores": core, "math_fidelity": "HiFi4",
             "defines": {"N_IN": str(len(data)), "OUT_DST": str(out), **slot_defs},
             "runtime_args": [{"core": core, "args": [tiles]}], "fp32_dest_acc_en": fp32_dest,
             "unpack_to_dest": list(range(len(data))) if fp32_dest else []},
            {"kind": "writer", "source": (KERNELS / "writer_sfpu.cpp").read_text(), "cores": core,
             "compile_args": [{"accessor": "out"}], "runtime_args": [{"core": core, "args": [{"addr": "out"}, 0, tiles]}]},
        ],
    }


def run(session, r: SfpuRoutine, inputs: list[np.ndarray], fp32_dest: bool, **kw):
    """Run `r` on `inputs` (flat or any shape, equal sizes): (the results, flat float32, same size; the RunResult)."""
    n = np.asarray(inputs[0]).size
    res = session.run(program(r, inputs, fp32_dest, **kw))
    return res.outputs["out"].ravel()[:n], res
