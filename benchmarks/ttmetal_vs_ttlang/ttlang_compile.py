"""Compile the comparison kernels with Tenstorrent's tt-lang (1.1.1) and write each as a host program.

Runs in a Python 3.12 venv with tt-lang 1.1.1 and its ttnn 0.69.0 (see README.md here), under
wolfpine's environment (ttnn needs a "cluster" even for host tensors; no kernel runs here). For each
kernel it writes `<out>/<name>.json`: the C++ of its three kernels as tt-lang generated them, its
circular buffers, the tensors and which kernel reads which tensor address, and the compile time.
The request format is tilegrid's device server's (tilegrid/targets/ttmetal/host.py), so
`bench.py` runs tt-lang's and tilegrid's programs through the same server.

    python ttlang_compile.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ["TTLANG_COMPILE_ONLY"] = "1"

import torch  # noqa: E402
import ttl  # noqa: E402
import ttnn  # noqa: E402

TILE = 32
# Problem sizes (elements): kept small, wolfpine simulates every instruction in Python.
ADD = (128, 128)            # y = a + b
MATMUL = (128, 256, 128)    # y = a @ b, K loop of 4 blocks of 2 tiles
EPILOGUE = (128, 256, 128)  # y = a @ b + c
BLOCK = 2                   # tiles per block side (2x2 = 64x64 elements)


@ttl.operation(grid=(1, 1))
def add(a: ttnn.Tensor, b: ttnn.Tensor, y: ttnn.Tensor):
    rows = a.shape[0] // TILE // BLOCK
    cols = a.shape[1] // TILE // BLOCK
    a_dfb = ttl.make_dataflow_buffer_like(a, shape=(BLOCK, BLOCK), block_count=2)
    b_dfb = ttl.make_dataflow_buffer_like(b, shape=(BLOCK, BLOCK), block_count=2)
    y_dfb = ttl.make_dataflow_buffer_like(y, shape=(BLOCK, BLOCK), block_count=2)

    @ttl.compute()
    def comp():
        for _ in range(rows):
            for _ in range(cols):
                with a_dfb.wait() as x, b_dfb.wait() as z, y_dfb.reserve() as o:
                    o.store(x + z)

    @ttl.datamovement()
    def read():
        for r in range(rows):
            for c in range(cols):
                with a_dfb.reserve() as x, b_dfb.reserve() as z:
                    ta = ttl.copy(a[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK], x)
                    tb = ttl.copy(b[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK], z)
                    ta.wait()
                    tb.wait()

    @ttl.datamovement()
    def write():
        for r in range(rows):
            for c in range(cols):
                with y_dfb.wait() as o:
                    ttl.copy(o, y[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK]).wait()


def _matmul(epilogue: bool):
    """tt-lang's own matmul shape (its tutorial, step 2: the accumulator lives in a DFB), with the
    first K block written instead of added to a fill(0) (fill is an SFPU op: the stand-in toolchain
    cannot build it)."""
    epi = int(epilogue)  # tt-lang folds a captured int, not a bool

    def body(a, b, c, y):
        mb = a.shape[0] // TILE // BLOCK
        nb = b.shape[1] // TILE // BLOCK
        kb = a.shape[1] // TILE // BLOCK
        a_dfb = ttl.make_dataflow_buffer_like(a, shape=(BLOCK, BLOCK), block_count=2)
        b_dfb = ttl.make_dataflow_buffer_like(b, shape=(BLOCK, BLOCK), block_count=2)
        c_dfb = ttl.make_dataflow_buffer_like(c, shape=(BLOCK, BLOCK), block_count=2)
        acc_dfb = ttl.make_dataflow_buffer_like(y, shape=(BLOCK, BLOCK), block_count=2)
        y_dfb = ttl.make_dataflow_buffer_like(y, shape=(BLOCK, BLOCK), block_count=2)

        @ttl.datamovement()
        def read():
            for m in range(mb):
                for n in range(nb):
                    if epi == 1:
                        with c_dfb.reserve() as cb:
                            ttl.copy(c[m * BLOCK:(m + 1) * BLOCK, n * BLOCK:(n + 1) * BLOCK], cb).wait()
                    for k in range(kb):
                        with a_dfb.reserve() as ab, b_dfb.reserve() as bb:
                            ta = ttl.copy(a[m * BLOCK:(m + 1) * BLOCK, k * BLOCK:(k + 1) * BLOCK], ab)
                            tb = ttl.copy(b[k * BLOCK:(k + 1) * BLOCK, n * BLOCK:(n + 1) * BLOCK], bb)
                            ta.wait()
                            tb.wait()

        @ttl.compute()
        def compute():
            for _ in range(mb):
                for _ in range(nb):
                    with a_dfb.wait() as ab, b_dfb.wait() as bb, acc_dfb.reserve() as acc:
                        acc.store(ab @ bb)
                    for _ in range(kb - 1):
                        with a_dfb.wait() as ab, b_dfb.wait() as bb, acc_dfb.wait() as pre:
                            with acc_dfb.reserve() as acc:
                                acc.store(pre + ab @ bb)
                    if epi == 1:
                        with c_dfb.wait() as cb, acc_dfb.wait() as acc, y_dfb.reserve() as yb:
                            yb.store(cb + acc)
                    else:
                        with acc_dfb.wait() as acc, y_dfb.reserve() as yb:
                            yb.store(acc)

        @ttl.datamovement()
        def write():
            for m in range(mb):
                for n in range(nb):
                    with y_dfb.wait() as yb:
                        ttl.copy(yb, y[m * BLOCK:(m + 1) * BLOCK, n * BLOCK:(n + 1) * BLOCK]).wait()

    return body


@ttl.operation(grid=(1, 1))
def matmul(a: ttnn.Tensor, b: ttnn.Tensor, c: ttnn.Tensor, y: ttnn.Tensor):
    _matmul(False)(a, b, c, y)


@ttl.operation(grid=(1, 1))
def matmul_epilogue(a: ttnn.Tensor, b: ttnn.Tensor, c: ttnn.Tensor, y: ttnn.Tensor):
    _matmul(True)(a, b, c, y)


# tt-lang 1.1.1 targets ttnn 0.69.0's kernel API; ttnn 0.81.1 runs here. The port: moved headers,
# CircularBuffer out of `experimental`, and 0.69's calls that 0.81.1 dropped, defined in 0.81.1's terms (the anchor note
# ../../shared/anchors/ttmetal_wolfpine.md lists them). tt-lang's kernel bodies are not changed.
RENAMES = [
    ('#include "experimental/circular_buffer.h"', '#include "api/dataflow/circular_buffer.h"'),
    ('#include "api/compute/compute_kernel_api.h"\n', ''),  # pulls in every SFPU op (sfpi-only)
    ('#include "tools/profiler/kernel_profiler.hpp"', '#include "api/debug/kernel_profiler.hpp"'),
    ("experimental::CircularBuffer", "CircularBuffer"),
]
COMPUTE_SHIM = """
// --- ttnn 0.69.0 calls, in ttnn 0.81.1's terms (benchmarks/ttmetal_vs_ttlang/ttlang_compile.py) ---
#include "api/compute/compute_kernel_hw_startup.h"
#include "api/compute/eltwise_binary.h"
#include "api/compute/matmul.h"
#include "api/compute/pack.h"
ALWI void mm_block_init(uint32_t in0, uint32_t in1, uint32_t out, uint32_t t = 0, uint32_t ct = 1, uint32_t rt = 1,
                        uint32_t kt = 1) {
    compute_kernel_hw_startup(in0, in1, out);
    matmul_block_init(in0, in1, t, ct, rt, kt);
}
ALWI void mm_block_init_short(uint32_t in0, uint32_t in1, uint32_t t = 0, uint32_t ct = 1, uint32_t rt = 1,
                              uint32_t kt = 1) {
    matmul_block_init(in0, in1, t, ct, rt, kt);
}
ALWI void binary_op_init_common(uint32_t a, uint32_t b, uint32_t out) { compute_kernel_hw_startup(a, b, out); }
ALWI void add_tiles_init(uint32_t a, uint32_t b) { add_init(a, b); }
ALWI void sub_tiles_init(uint32_t a, uint32_t b) { sub_init(a, b); }
ALWI void mul_tiles_init(uint32_t a, uint32_t b) { mul_init(a, b); }
ALWI void pack_tile_block(uint32_t from, uint32_t cb, uint32_t n) {
    PACK((llk_matmul_pack<DST_ACCUM_MODE, false>(from, cb, n)));
}
// --- end of the port ---
"""


def _port(source: str, compute: bool) -> str:
    for old, new in RENAMES:
        source = source.replace(old, new)
    if compute:
        at = source.index("void kernel_main()")
        source = source[:at] + COMPUTE_SHIM + source[at:]
    return source


def _compiled(op) -> object:
    """The CompiledTTNNKernel tt-lang cached for the last call (its decorator keeps a per-shape cache)."""
    for cell in op.__closure__ or ():
        value = cell.cell_contents
        if isinstance(value, dict) and value:
            return next(reversed(value.values()))
    raise RuntimeError(f"tt-lang kept no compiled kernel for {op.__name__}")


def _cb(i: int, cb) -> dict:
    if hasattr(cb, "num_tiles"):  # compiler-allocated
        tiles, fmt = cb.num_tiles * cb.block_count, {"bfloat16": "bf16", "float32": "f32"}[cb.data_format]
    else:
        tiles = cb.shape[0] * cb.shape[1] * cb.block_count
        fmt = "bf16" if "bfloat16" in str(cb.tensor.dtype).lower() else "f32"
    page = 2048 if fmt == "bf16" else 4096
    return {"index": i, "total_size": tiles * page, "page_size": page, "format": fmt}


def export(op, names: list[str], shapes: list[tuple[int, int]], out_dir: str) -> None:
    tensors = [ttnn.from_torch(torch.zeros(s, dtype=torch.bfloat16), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
               for s in shapes]
    t0 = time.perf_counter()
    op(*tensors)
    compile_s = time.perf_counter() - t0
    ck = _compiled(op)
    grid = ck.core_ranges.bounding_box().grid_size()
    cores = [[0, 0], [grid.x - 1, grid.y - 1]]
    cbs = [_cb(i, cb) | {"cores": cores} for i, cb in enumerate(ck.cb_configs)]
    kernels, noc = [], 0
    for (path, kind), indices, config in zip(ck.kernel_paths, ck.kernel_tensor_indices, ck.kernel_configs):
        source = _port(open(path).read(), kind == "compute")
        k = {"source": source, "cores": cores, "common_runtime_args": [{"addr": names[i]} for i in indices]}
        if kind == "compute":
            k |= {"kind": "compute", "compile_args": list(range(len(cbs))),
                  "fp32_dest_acc_en": bool(config.fp32_dest_acc_en), "math_fidelity": "HiFi4"}
        else:
            k |= {"kind": "reader" if noc == 0 else "writer",
                  "compile_args": list(range(len(cbs))) + [{"accessor": n} for n in names]}
            noc += 1
        kernels.append(k)
    program = {"name": op.__name__, "compile_s": compile_s, "names": names, "shapes": shapes,
               "cbs": cbs, "kernels": kernels, "semaphores": []}
    with open(os.path.join(out_dir, f"{op.__name__}.json"), "w") as f:
        json.dump(program, f, indent=1)
    print(f"tt-lang {op.__name__}: {compile_s * 1e3:.0f} ms", file=sys.stderr)


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    m, k, n = MATMUL
    export(add, ["a", "b", "y"], [ADD, ADD, ADD], out)
    export(matmul, ["a", "b", "c", "y"], [(m, k), (k, n), (m, n), (m, n)], out)
    m, k, n = EPILOGUE
    export(matmul_epilogue, ["a", "b", "c", "y"], [(m, k), (k, n), (m, n), (m, n)], out)


if __name__ == "__main__":
    main()
