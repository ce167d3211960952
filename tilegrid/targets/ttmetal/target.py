"""Target "tt-metal": a kernel compiled to tt-metal C++ kernels and run through ttnn's `generic_op`.

Without a Tenstorrent card it runs on wolfpine's simulated Wormhole through the device server
(`shared_session()`, one per process; docs/ttmetal_setup.md). Outputs are written back into the
caller's arrays as on every target; each run's cycle stamps and timings go to the kernel call's
observer when it listens (`on_device_run(DeviceRun)`).

The stand-in RISC-V compiler cannot build the kernel API's SFPU calls, so a simulated run of a
kernel that needs them is refused up front, naming the op and the user's line; its C++ still
compiles here (what a card with sfpi runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilegrid.context import RunContext
from tilegrid.errors import CompileError, DeadlockError, TilegridError
from tilegrid.lang.spec import KernelConfig
from tilegrid.numerics import NP_DTYPES
from tilegrid.targets.compile import Compiled, as_array, write_outputs
from tilegrid.targets.ttmetal.device import DeviceError, shared_session
from tilegrid.targets.ttmetal.program import Options, TtMetalProgram, lower
from tilegrid.targets.ttmetal.setup import SetupError, card_env, device_kind
from tilegrid.targets.ttmetal.spelling import RAW_OPS, SfpuModes, has_raw

COST_MODEL = {"TT_SIM_COST_MODEL": "1"}  # wolfpine's cycle-cost model: cycle stamps are modelled cycles


@dataclass
class DeviceRun:
    """One run on the device: per-core cycle stamps (`cycles`: host.py's record, wolfpine's modelled
    cycles on the simulator), wall timings, whether tt-metal compiled anything, and the program."""

    program: TtMetalProgram
    cycles: dict | None
    timing: dict
    built: bool
    source_dir: Path | None
    engines: dict | None = None  # wolfpine's per-core, per-unit counters (asked for by an observer with `engines`)

    @property
    def max_span_cycles(self) -> int | None:
        return (self.cycles or {}).get("max_span_cycles")


def options_of(config: KernelConfig, simulated: bool = True) -> Options:
    """The program options of a kernel call; `simulated`: for the simulated device (where sfpu="auto" picks
    tilegrid's raw SFPU routines), else for a card (the kernel API)."""
    sfpu = SfpuModes.of(getattr(config, "sfpu", None), simulated, config.loc, config.name)
    return Options(config.math_fidelity, config.fp32_acc, config.dst_double_buffer, sfpu)


def refuse_sfpu(program: TtMetalProgram) -> None:
    """The simulated device cannot run SFPU kernel-API calls: say so, naming the op and the line."""
    if not program.sfpu:
        return
    op, loc = program.sfpu[0]
    others = sorted({name for name, _ in program.sfpu[1:]} - {op})
    selected = [name for name, _ in program.sfpu if has_raw(name)]
    raise CompileError(
        f"'{op}' runs on the SFPU, whose kernel-API calls the stand-in RISC-V compiler cannot build: this kernel "
        "compiles to tt-metal C++ (what a card with Tenstorrent's sfpi compiler runs) but cannot run on the simulated "
        "Wormhole" + (f" (it also needs {', '.join(others)})" if others else "")
        + ("" if has_raw(op) else f"; tilegrid has no raw SFPU routine for '{op}'"),
        loc, kernel=program.name,
        note=(f"{', '.join(sorted(set(selected)))} {'has' if len(set(selected)) == 1 else 'have'} raw routines that "
              "run here: leave sfpu= at 'auto' (or pass sfpu='raw'); " if selected else "")
        + "run it with backend='sim', or on a Tenstorrent card; the raw SFPU routines cover "
          f"{', '.join(sorted(RAW_OPS))}, and x + s, x - s, s - x, x * s, x / s with a scalar s")


def source_dir(program: TtMetalProgram, root: Path) -> Path:
    return root / "generated" / f"{program.name}-{program.digest}"


def run_program(program: TtMetalProgram, tensors: Sequence[Any], session: Any, *, simulated: bool = True,
                root: Path | None = None, engines: bool = False) -> tuple[list[np.ndarray | None], DeviceRun]:
    """Run a lowered program on `session` (a DeviceSession); returns each argument's array after the run
    (None for inputs) and the run's record. Generated sources are written under `root`/generated first.
    engines: also read wolfpine's per-unit counters (busy cycles of the matrix unit, SFPU, packer, ...)."""
    if simulated:
        refuse_sfpu(program)
    where = None
    if root is not None:
        where = source_dir(program, root)
        program.write_sources(where)
    args = program.compiled.args
    data = [np.asarray(as_array(t), np.float32) if not a["output"] else None for t, a in zip(tensors, args)]
    try:
        res = session.run({**program.host(data), "engines": engines})
    except DeviceError as e:
        if e.kind == "runtime" and not _L1_OVERFLOW.search(e.message):
            session.close()  # a program that failed to launch can leave the device wedged: the next run starts afresh
        raise device_error(program, e, where) from None
    arrays: list[np.ndarray | None] = []
    for i, info in enumerate(args):
        out = res.outputs.get(program.tensor_name(i)) if info["output"] else None
        if out is not None:  # a vector output comes back padded to whole tiles
            out = np.asarray(out, np.float32)[tuple(slice(0, d) for d in info["shape"])]
        arrays.append(None if out is None else out.astype(NP_DTYPES[info["dtype"]]))
    return arrays, DeviceRun(program, res.cycles, res.timing, res.built, where, (res.reply or {}).get("engines"))


def device_error(program: TtMetalProgram, e: Any, where: Path | None) -> TilegridError:
    """A device server failure as tilegrid's error: which kernel, which generated file, where to look."""
    detail = e.detail or {}
    if e.kind == "compile":
        log = detail.get("compiler_output", "")
        failed = [k for k in program.kernels if _built_by(e.message + "\n" + log, k)] or program.kernels
        files = ", ".join(str(where / f"{k.name}.cpp") if where else f"{k.name}.cpp" for k in failed)
        errors = [_SOURCE_FILE.sub(f"{failed[0].name}.cpp:", ln) for ln in log.splitlines() if "error" in ln][:8]
        return CompileError(
            f"tt-metal could not compile the generated kernel {', '.join(repr(k.name) for k in failed)} "
            f"(thread {', '.join(t for k in failed for t in k.threads)}): generated source {files}; the compiler "
            "said:\n      " + "\n      ".join(errors or log.splitlines()[:8]),
            kernel=program.name,
            note="this is a bug of tilegrid's tt-metal target (the C++ it generated does not compile): the whole "
                 "compiler log is in the tt-metal environment's logs (host-stderr.log)")
    if e.kind == "deadlock":
        return DeadlockError(f"the simulated device hangs: {e.message}\n{detail.get('watchdog', '')}",
                             kernel=program.name, note=f"the generated kernels are in {where}" if where else None)
    text = e.message
    l1 = _L1_OVERFLOW.search(text)
    if l1:
        need = sum(cb.total_size for cb in program.layout.cbs)
        end, size = int(l1.group(1)), int(l1.group(2))
        return CompileError(
            f"the kernel's circular buffers take {need} bytes per core, and on this device they would end at byte "
            f"{end} of L1, beyond its {size} bytes (tt-metal keeps the first {end - need} bytes for itself: "
            f"{size - (end - need)} bytes are left for circular buffers)", kernel=program.name,
            note="use smaller block_factors or a shallower CB depth, or spread the work over more cores")
    return TilegridError(f"the tt-metal device failed ({e.kind}): {text[:1500]}", kernel=program.name,
                         note=f"the generated kernels are in {where}" if where else None)


_L1_OVERFLOW = re.compile(r"circular buffers .* grow to (\d+) B which is beyond max L1 size of (\d+) B")
_SOURCE_FILE = re.compile(r"\.\./(chlkc_(unpack|math|pack)|kernel[^:]*)\.cpp:")
_BUILDER = {"trisc": "compute", "brisc": 0, "ncrisc": 1}  # tt-metal's build names -> our kernels


def _built_by(log: str, k: Any) -> bool:
    """Whether tt-metal's build log blames kernel `k` ("trisc0 build failed", "ncrisc build failed")."""
    for name, which in _BUILDER.items():
        if re.search(rf"\b{name}\d? build failed", log):
            if which == "compute" and k.kind == "compute" or which == k.processor and k.kind == "dataflow":
                return True
    return False


def on_card(config: KernelConfig) -> bool:
    """Whether runs go to a Tenstorrent card (TILEGRID_TTMETAL_DEVICE=hw) rather than the simulated Wormhole."""
    try:
        return device_kind() == "hw"
    except SetupError as e:
        raise TilegridError(str(e), kernel=config.name) from None


class TtMetalTarget:
    """Target "tt-metal": tt-metal C++ kernels + a ttnn host program (run on wolfpine without a card)."""

    name = "tt-metal"
    level = "tile"

    def lower(self, compiled: Compiled, ctx: RunContext, config: KernelConfig) -> TtMetalProgram:
        simulated = ctx.mode != "compile" and not on_card(config)  # compile only: what a card runs
        options = options_of(config, simulated=simulated)
        key = ("tt-metal", options)
        if key not in compiled.programs:
            compiled.programs[key] = lower(compiled, options)
        return compiled.programs[key]

    def run(self, program: TtMetalProgram, tensors: Sequence[Any], config: KernelConfig, ctx: RunContext) -> Any:
        hw = on_card(config)
        if not hw:
            refuse_sfpu(program)
        try:
            session = shared_session(env=card_env(), sim_env={}) if hw else shared_session(sim_env=COST_MODEL)
        except (DeviceError, SetupError) as e:
            raise TilegridError(f"backend 'tt-metal' cannot open its device: {getattr(e, 'message', e)}",
                                kernel=program.name,
                                note="a card: TILEGRID_TTMETAL_DEVICE=hw with TILEGRID_TTMETAL_PYTHON and TT_METAL_HOME "
                                     "(docs/ttmetal.md); the simulated Wormhole: `tilegrid setup tt-metal`") from None
        arrays, record = run_program(program, tensors, session, simulated=not hw, root=session.env.root,
                                     engines=not hw and bool(getattr(config.observer, "engines", False)))
        listener = getattr(config.observer, "on_device_run", None)
        if listener is not None:
            listener(record)
        return write_outputs(tensors, arrays, program.compiled.args)
