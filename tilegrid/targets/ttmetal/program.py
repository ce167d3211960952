"""A compiled kernel as a tt-metal program: C++ kernels plus the host program that runs them.

`lower(compiled, options)` writes one compute kernel (the compute thread) and up to two data-movement
kernels (BRISC, NCRISC), and describes the host side the way ttnn's `generic_op` takes it: tensors,
CBs, semaphores, and per kernel its source, cores, compile-time and runtime arguments. `request`
turns that into the device server's JSON (tilegrid/targets/ttmetal/host.py).

Grid mapping: tilegrid's grid is (rows, cols) and `core_index(0)` is the row; a tt-metal logical
core is (x = col, y = row). Every kernel runs on every core of the grid; its first two runtime
arguments are the core's row and column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tilegrid.errors import CompileError
from tilegrid.passes.common import loc_of
from tilegrid.targets.compile import Compiled
from tilegrid.targets.ttmetal.compute import ComputeWriter
from tilegrid.targets.ttmetal.dataflow import Args, DataflowWriter, dataflow_kernel
from tilegrid.targets.ttmetal.layout import Layout, plan
from tilegrid.targets.ttmetal.spelling import SfpuModes

FIDELITIES = ("LoFi", "HiFi2", "HiFi3", "HiFi4")


@dataclass(frozen=True)
class Options:
    """How the compute kernel is configured: math fidelity and the DST mode (fp32 accumulation, and
    double buffering: `dst_full_sync_en` is its opposite), and how its SFPU ops are spelled (`sfpu`:
    tt-metal's kernel API or tilegrid's raw routines, per op; spelling.py)."""

    math_fidelity: str = "HiFi4"
    fp32_dest_acc: bool = True
    dst_double_buffer: bool = True
    sfpu: SfpuModes = SfpuModes()


@dataclass
class Kernel:
    """One tt-metal kernel of the program."""

    name: str  # also its file name (without .cpp)
    kind: str  # "compute" or "dataflow"
    source: str
    threads: list[str]
    processor: int = 0  # a data-movement kernel's RISC-V (0: BRISC, 1: NCRISC)
    noc: int = 0  # its NoC
    tensors: list[int] = field(default_factory=list)  # tensor arguments it addresses (accessor order)
    noc_tables: bool = False
    unpack_to_dest: list[int] = field(default_factory=list)
    staging: bool = False  # it sets remote semaphores through a staging semaphore of its own


@dataclass
class TtMetalProgram:
    """A kernel compiled for tt-metal: `sources` (file name -> C++), `host` (the generic_op program)."""

    compiled: Compiled
    kernels: list[Kernel]
    layout: Layout
    options: Options
    semaphores: list[int]  # initial values of the user's semaphores, then one staging word per kernel
    sfpu: list[tuple[str, str | None]]  # SFPU ops (name, user's line) spelled as kernel-API calls (need sfpi)

    @property
    def name(self) -> str:
        return self.compiled.name

    @property
    def grid(self) -> tuple[int, int]:
        return self.compiled.program.grid_shape

    @property
    def sources(self) -> dict[str, str]:
        return {f"{k.name}.cpp": k.source for k in self.kernels}

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, src in sorted(self.sources.items()):
            h.update(name.encode() + src.encode())
        return h.hexdigest()[:12]

    def write_sources(self, directory: Path) -> dict[str, Path]:
        """Write the C++ kernels into `directory`; returns file name -> path."""
        directory.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, src in self.sources.items():
            path = directory / name
            if not path.exists() or path.read_text() != src:
                path.write_text(src)
            out[name] = path
        return out

    def tensor_name(self, i: int) -> str:
        name = "".join(ch if ch.isalnum() else "_" for ch in self.compiled.args[i]["name"])
        return f"{i}_{name}"

    def host(self, data: list[Any] | None = None) -> dict:
        """The program as the device server runs it (`data`: the input arrays, else file names)."""
        gr, gc = self.grid
        cores = [[0, 0], [gc - 1, gr - 1]]
        tensors = {}
        for i, info in enumerate(self.compiled.args):
            spec: dict[str, Any] = {"shape": tile_padded(info["shape"]), "dtype": info["dtype"]}
            if info["output"]:
                spec["output"] = True
            elif data is not None:
                spec["data"] = pad_to_tiles(np.asarray(data[i], dtype=np.float32))
            else:
                spec["input"] = f"{self.tensor_name(i)}.npy"
            tensors[self.tensor_name(i)] = spec
        per_core = [{"core": [c, r], "args": [r, c]} for r in range(gr) for c in range(gc)]
        kernels = []
        for k in self.kernels:
            entry: dict[str, Any] = {"name": k.name, "source": k.source, "cores": cores, "runtime_args": per_core}
            if k.kind == "compute":
                entry.update(kind="compute", math_fidelity=self.options.math_fidelity,
                             fp32_dest_acc_en=self.options.fp32_dest_acc,
                             dst_full_sync_en=not self.options.dst_double_buffer, math_approx_mode=False)
                if k.unpack_to_dest:
                    entry["unpack_to_dest_fp32"] = k.unpack_to_dest
            else:
                entry.update(kind="dataflow", processor=k.processor, noc=k.noc,
                             compile_args=[{"accessor": self.tensor_name(t)} for t in k.tensors],
                             common_runtime_args=[{"addr": self.tensor_name(t)} for t in k.tensors]
                             + ([{"noc_x": [c, 0]} for c in range(gc)] + [{"noc_y": [0, r]} for r in range(gr)]
                                if k.noc_tables else []))
            kernels.append(entry)
        cbs = [{**cb.host(), "cores": cores} for cb in self.layout.cbs]
        sems = [{"id": i, "initial_value": v, "cores": cores} for i, v in enumerate(self.semaphores)]
        return {"tensors": tensors, "cbs": cbs, "semaphores": sems, "kernels": kernels}


def tile_padded(shape: Any) -> list[int]:
    """A tensor's shape in DRAM: a row vector [..., 1, N] or column vector [..., M, 1] is padded to whole
    tiles (32 rows / columns), as the readers address it (a page a tile) and as L1 holds it."""
    dims = [int(d) for d in shape]
    return [*dims[:-2], *(-(-d // 32) * 32 for d in dims[-2:])] if len(dims) >= 2 else dims


def pad_to_tiles(a: np.ndarray) -> np.ndarray:
    """`a` zero-padded to `tile_padded(a.shape)` (unchanged when it is whole tiles already)."""
    pad = [(0, t - d) for d, t in zip(a.shape, tile_padded(a.shape))]
    return np.pad(a, pad) if any(p for _, p in pad) else a


def lower(compiled: Compiled, options: Options = Options()) -> TtMetalProgram:
    """The tile IR of a compiled kernel as tt-metal kernels and a host program."""
    prog = compiled.program
    if options.math_fidelity not in FIDELITIES:
        raise CompileError(f"math fidelity must be one of {', '.join(FIDELITIES)}, got {options.math_fidelity!r}")
    infos = prog.arg_infos()
    layout = plan(prog, compiled.module, options.fp32_dest_acc)
    threads = prog.threads
    compute = [t for t in threads if t.kind.data == "compute"]
    user = [t for t in threads if t.kind.data == "datamovement" and t.implicit is None]
    implicit = [t for t in threads if t.kind.data == "datamovement" and t.implicit is not None]
    if len(compute) != 1:
        raise CompileError(f"the tt-metal target needs exactly one compute thread, got {len(compute)}")
    if len(user) > 2:
        raise CompileError(f"kernel '{compiled.name}' has {len(user)} data-movement threads; a Tensix core has two "
                           "data-movement RISC-Vs", loc_of(next(iter(user[2].body.block.ops), user[2])),
                           note="merge data-movement threads (one thread may read several CBs)")
    # which threads share a RISC-V: implicit ones become polled services beside a user thread
    swap = False
    if len(user) == 2:
        plan_dm = [(user[0], []), (user[1], implicit)]
    elif len(user) == 1:
        plan_dm = [(user[0], [])] + ([(None, implicit)] if implicit else [])
    else:
        readers = [t for t in implicit if t.implicit.data == "reader"]
        writers = [t for t in implicit if t.implicit.data == "writer"]
        plan_dm = [(None, group) for group in (writers, readers) if group]
        # only the compiler's readers and writers: readers on NoC 0, writers on NoC 1, as tt-metal places DRAM
        # reads and writes on Wormhole (its preferred NoCs); on wolfpine a 4-block add's reader saves ~6%
        swap = bool(readers and writers)  # (their kernels use `noc_index`: any NoC works)
    nsems = len(prog.semaphore_inits)
    tiles = {i: info["block"][0] * info["block"][1] for i, info in enumerate(infos)}
    kernels = []
    for p, (thread, services) in enumerate(plan_dm):
        args = Args()
        w = DataflowWriter(layout, infos, prog.grid_shape, args, nsems, nsems + p)
        names = [t.thread_name.data for t in ([thread] if thread else []) + services]
        noc = 1 - p if swap else p
        src = dataflow_kernel(w, compiled.name, thread, services, p, scaler=p == 0, noc=noc)
        kernels.append(Kernel(_file(compiled.name, names), "dataflow", src, names, p, noc, list(args.tensors),
                              args.noc_tables, staging=w.staged))
    capacity = prog.dst_capacity.data
    cw = ComputeWriter(layout, capacity, options.fp32_dest_acc, options.sfpu)
    src = cw.kernel(compute[0], compiled.name, tiles)
    dest = [layout.constants[layout.area_dest]] if layout.area_dest else []
    if options.fp32_dest_acc:  # an fp32 CB that only copies read goes straight to DST
        for i, name in layout.arg_cb.items():
            if infos[i]["dtype"] == "f32" and name in cw.copy_reads and name not in cw.fpu_reads:
                dest.append(i)
        if layout.index:
            dest.append(layout.constants[layout.index])
    name = compute[0].thread_name.data
    kernels.insert(0, Kernel(_file(compiled.name, [name]), "compute", src, [name], unpack_to_dest=sorted(dest)))
    staging = max((p + 1 for p, k in enumerate(k for k in kernels if k.kind == "dataflow") if k.staging), default=0)
    sems = list(prog.semaphore_inits) + [0] * staging  # a staging word for each kernel that sets remote ones
    return TtMetalProgram(compiled, kernels, layout, options, sems, cw.sfpu)


def _file(kernel: str, threads: list[str]) -> str:
    return "_".join(["".join(ch if ch.isalnum() else "_" for ch in s) for s in [kernel, *threads]])[:96]
