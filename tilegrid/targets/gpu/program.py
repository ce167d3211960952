"""The GPU target: a kernel's block IR lowered to Triton (cached per compiled kernel), run on torch tensors."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tilegrid import context
from tilegrid.context import RunContext
from tilegrid.errors import CompileError, TilegridError
from tilegrid.passes.common import program_of
from tilegrid.targets.compile import Compiled, as_array, write_outputs
from tilegrid.targets.gpu.lower import GpuSource, lower_program
from tilegrid.targets.gpu.pairing import pair_program


def require(name: str) -> Any:
    """Import torch or triton, or say clearly what is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise TilegridError(
            f"the GPU backend needs {name}, which is not installed ({e})",
            note="install the GPU extra: pip install -e '.[gpu]' (torch and triton; an NVIDIA GPU, or "
                 "TRITON_INTERPRET=1 to run the generated kernels on the CPU)",
        ) from None


@dataclass
class GpuProgram:
    """A kernel compiled to Triton for one shape signature."""

    src: GpuSource
    compiled: Any = None
    compile_seconds: float = 0.0
    options: dict = field(default_factory=dict)
    _fn: Any = None

    @property
    def source(self) -> str:
        return self.src.source

    def function(self) -> Any:
        if self._fn is None:
            require("triton")
            digest = hashlib.sha1(self.source.encode()).hexdigest()[:16]
            d = os.path.join(tempfile.gettempdir(), f"tilegrid-gpu-{os.getuid() if hasattr(os, 'getuid') else 0}")
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, f"{self.src.function}_{digest}.py")
            if not os.path.exists(path):
                with open(path + ".tmp", "w") as f:
                    f.write(self.source)
                os.replace(path + ".tmp", path)
            mod_name = f"tilegrid_gpu_{self.src.function}_{digest}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = mod
            spec.loader.exec_module(mod)
            self._fn = getattr(mod, self.src.function)
        return self._fn

    def __call__(self, *tensors: Any, num_warps: int | None = None, num_stages: int | None = None) -> None:
        """Launch on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1), in kernel-argument order;
        outputs are written in place."""
        if len(tensors) != len(self.src.args):
            raise TilegridError(f"GPU kernel '{self.src.kernel}' takes {len(self.src.args)} tensors, got {len(tensors)}")
        for t, a in zip(tensors, self.src.args):
            if tuple(t.shape) != a["shape"] or not t.is_contiguous():
                raise TilegridError(f"GPU kernel '{self.src.kernel}': argument '{a['name']}' must be a contiguous "
                                    f"tensor of shape {a['shape']}, got {tuple(t.shape)}")
        w = num_warps or self.options.get("num_warps") or self.src.num_warps
        s = num_stages or self.options.get("num_stages") or self.src.num_stages
        fn = self.function()
        from triton.runtime.errors import OutOfResources

        while True:
            try:
                fn[self.src.grid](*tensors, num_warps=w, num_stages=s)
                return
            except OutOfResources:
                if s <= 1 or num_stages is not None:
                    raise
                s -= 1  # fewer pipeline stages: less shared memory (large fp32 blocks)
                self.options["num_stages"] = s

    def autotune(self, tensors: Sequence[Any], candidates: Sequence[tuple[int, int]] = ((4, 2), (4, 3), (8, 2), (8, 3)),
                 ) -> tuple[int, int]:
        """Time the launch with each (num_warps, num_stages) and keep the fastest (do_bench median)."""
        triton = require("triton")
        best = None
        for w, s in candidates:
            try:
                ms = triton.testing.do_bench(lambda w=w, s=s: self(*tensors, num_warps=w, num_stages=s), return_mode="median")
            except Exception:  # a configuration that does not fit (shared memory, registers)
                continue
            if best is None or ms < best[0]:
                best = (ms, w, s)
        if best is None:
            raise TilegridError(f"GPU kernel '{self.src.kernel}': no launch configuration ran")
        self.options.update(num_warps=best[1], num_stages=best[2])
        return best[1], best[2]


def lower(compiled: Compiled) -> GpuProgram:
    """Block IR -> pairing -> Triton source (no torch or Triton needed), kept with the compiled kernel."""
    hit = compiled.programs.get("gpu")
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    try:
        prog = program_of(compiled.module)
        src = lower_program(prog, pair_program(prog))
    except TilegridError as e:
        raise e.with_kernel(compiled.name) from None
    out = compiled.programs["gpu"] = GpuProgram(src, compiled, compiled.compile_seconds + time.perf_counter() - t0)
    return out


def _device(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "cpu"
    raise TilegridError("the GPU backend found no CUDA GPU",
                        note="run on a machine with an NVIDIA GPU, or set TRITON_INTERPRET=1 to run the generated "
                             "Triton kernels on the CPU (slow)")


class GpuTarget:
    """Target "gpu": NVIDIA GPUs through Triton (CUDA, or the Triton interpreter on the CPU)."""

    name = "gpu"
    level = "block"

    def lower(self, compiled: Compiled, ctx: RunContext, config: Any) -> GpuProgram:
        return lower(compiled)

    def run(self, gp: GpuProgram, tensors: Sequence[Any], config: Any, ctx: RunContext) -> Any:
        """Inputs already on the device are used as they are; others are copied there. Outputs are
        written into the caller's tensors (in place on the device) or arrays."""
        torch = require("torch")
        require("triton")
        dev = _device(torch)
        tdt = {"bf16": torch.bfloat16, "f32": torch.float32}
        dev_tensors = []
        for t, a in zip(tensors, gp.src.args):
            on_device = isinstance(t, torch.Tensor) and t.device.type == dev and t.dtype == tdt[a["dtype"]]
            if a["output"]:
                dev_tensors.append(t if on_device and t.is_contiguous() else
                                   torch.full(a["shape"], float("nan"), dtype=tdt[a["dtype"]], device=dev))
            elif on_device:
                dev_tensors.append(t.contiguous())
            else:
                arr = np.ascontiguousarray(np.asarray(as_array(t), dtype=np.float32))
                dev_tensors.append(torch.from_numpy(arr).to(dev).to(tdt[a["dtype"]]))
        gp(*dev_tensors)
        results = [d if a["output"] and d is not t else None for t, d, a in zip(tensors, dev_tensors, gp.src.args)]
        return write_outputs(tensors, results, gp.src.args)


def capture(kernel: Any, *tensors: Any) -> GpuProgram:
    """Compile `kernel` for the shapes of `tensors` (NumPy arrays) without running it; the
    returned program launches on torch tensors: `prog(*torch_tensors)`."""
    log: list = []
    with context.use(target="gpu", mode="compile", log=log):
        kernel(*tensors)
    if not log:
        raise CompileError(f"kernel '{getattr(kernel, '__name__', kernel)}' compiled no Program for the GPU")
    return log[-1]
