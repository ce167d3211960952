"""The performance model as a target: the functional simulator with the timing model observing it.

Selected by `perf.session(...)` (or `backend="perf"`): the kernel is lowered for the simulator in
the session's numerics (fidelity, exp mode, data format; no arithmetic in timing-only mode) and
run by the one simulation loop, with a `PerfModel` as observer (tilegrid/perf/model.py). The
model's summary is appended to the session's results.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tilegrid.context import RunContext
from tilegrid.lang.spec import KernelConfig
from tilegrid.perf.model import Options, PerfModel
from tilegrid.perf.params import params_for
from tilegrid.perf.run import Session
from tilegrid.sim.observer import tee
from tilegrid.targets import sim
from tilegrid.targets.compile import Compiled, write_outputs


def _session(ctx: RunContext) -> Session:
    return ctx.perf if ctx.perf is not None else Session(Options())


class PerfTarget:
    """Target "perf": predicted cycles, time and bound of every launch (tilegrid.perf)."""

    name = "perf"
    level = "tile"

    def lower(self, compiled: Compiled, ctx: RunContext, config: KernelConfig) -> sim.SimProgram:
        s = _session(ctx)
        fidelity = None if s.options.fidelity == "HiFi4" else s.options.fidelity  # HiFi4 on bf16: exact
        return sim.lower(compiled, sim.SimOptions(fidelity, s.options.exp, arithmetic=not s.timing_only))

    def run(self, program: sim.SimProgram, tensors: Sequence[Any], config: KernelConfig, ctx: RunContext) -> Any:
        s = _session(ctx)
        args = program.compiled.args
        kinds, dm = {}, 0
        for src in program.sources:
            if src.kind == "compute":
                kinds[src.name] = "compute"
            else:
                kinds[src.name] = f"dm{dm}"
                dm += 1
        fmt = s.options.data_format
        # the kernel's bf16 tensors (inputs and outputs, as tt-metal's dtype= applies to both) are
        # stored in DRAM and their CBs in the run's data format; L1 intermediates stay as declared
        formats = [fmt if (fmt and a["dtype"] == "bf16") else a["dtype"] for a in args]
        model = PerfModel(s.params or params_for(config.device.name), s.options, kernel=config.name,
                          grid=tuple(config.grid), infos=args, thread_kinds=kinds, formats=formats)
        t0 = time.perf_counter()
        arrays = sim.run(program, tensors, config, observer=tee(model, config.observer, s.forward),
                         formats=formats if fmt else None)
        s.wall_seconds.append(time.perf_counter() - t0)
        s.results.append(model.finish())
        return write_outputs(tensors, arrays, args)
