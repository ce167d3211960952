"""Compile a Program for the GPU (cached per shape signature) and run it through Triton."""

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

from tilegrid import ir
from tilegrid.errors import CompileError, TilegridError
from tilegrid.gpu.lower import GpuSource, lower_program
from tilegrid.gpu.pairing import pair_program
from tilegrid.passes.common import program_of

BLOCK_IR_PASSES = ("infer-shapes", "implicit-data-movement", "fuse-elementwise")
_cache: dict[Any, GpuProgram] = {}
compile_log: list[GpuProgram] = []  # programs compiled with mode="compile" (what `capture` returns)


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


def block_ir(config: Any, threads: Sequence[Any], args: list[dict], streams: dict[int, int]) -> Any:
    """The kernel's block IR after the passes the GPU backend starts from (before lower-to-tile)."""
    from tilegrid.frontend.builder import build_module
    from tilegrid.passes.pipeline import PIPELINE, verify

    module = build_module(config.name, config.grid, args, list(threads), streams)
    verify(module, "the frontend")
    ctx = ir.context()
    for p in PIPELINE:
        if p.name not in BLOCK_IR_PASSES:
            break
        p.apply(ctx, module)
        verify(module, p.name)
    return module


@dataclass
class GpuProgram:
    """A kernel compiled to Triton for one shape signature."""

    src: GpuSource
    module: Any = None
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


def _key(config: Any, threads: Sequence[Any], args: list[dict], streams: dict[int, int]) -> Any:
    from tilegrid.runner import _closure_key

    return (config.name, config.grid, tuple(_closure_key(t.fn) for t in threads), tuple(t.kind for t in threads),
            tuple(tuple(sorted(a.items())) for a in args), tuple(sorted(streams.values())))


def compile_program(config: Any, threads: Sequence[Any], args: list[dict], streams: dict[int, int]) -> GpuProgram:
    """Block IR -> pairing -> Triton source (no torch or Triton needed), cached."""
    key = _key(config, threads, args, streams)
    if key in _cache:
        return _cache[key]
    t0 = time.perf_counter()
    try:
        module = block_ir(config, threads, args, streams)
        prog = program_of(module)
        src = lower_program(prog, pair_program(prog))
    except TilegridError as e:
        if e.loc is None and config.loc is not None:
            e = type(e)(e.message, config.loc, kernel=e.kernel, note=e.note)
        raise e.with_kernel(config.name) from None
    out = GpuProgram(src, module, time.perf_counter() - t0)
    _cache[key] = out
    return out


def _device(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "cpu"
    raise TilegridError("the GPU backend found no CUDA GPU",
                        note="run on a machine with an NVIDIA GPU, or set TRITON_INTERPRET=1 to run the generated "
                             "Triton kernels on the CPU (slow)")


def run_program_gpu(config: Any, threads: Sequence[Any], tensors: Sequence[Any], args: list[dict],
                    streams: dict[int, int]) -> Any:
    """`backend="gpu"`: compile to Triton, copy the inputs to the GPU, run, copy the outputs back."""
    gp = compile_program(config, threads, args, streams)
    nouts = config.num_outs
    if config.mode == "compile":
        compile_log.append(gp)
        return tensors[-nouts] if nouts == 1 else tuple(tensors[-nouts:])
    torch = require("torch")
    require("triton")
    from tilegrid.lang.kernel import _as_array

    dev = _device(torch)
    tdt = {"bf16": torch.bfloat16, "f32": torch.float32}
    dev_tensors = []
    for t, a in zip(tensors, args):
        if a["output"]:
            dev_tensors.append(torch.full(a["shape"], float("nan"), dtype=tdt[a["dtype"]], device=dev))
        else:
            arr = np.ascontiguousarray(np.asarray(_as_array(t), dtype=np.float32))
            dev_tensors.append(torch.from_numpy(arr).to(dev).to(tdt[a["dtype"]]))
    gp(*dev_tensors)
    outs = []
    for t, d, a in zip(tensors, dev_tensors, args):
        if not a["output"]:
            continue
        res = d.float().cpu().numpy()
        if isinstance(t, np.ndarray):
            t[...] = res.astype(t.dtype)
            outs.append(t)
        elif type(t).__module__.startswith("torch"):
            t.copy_(d.to(t.device))
            outs.append(t)
        else:
            outs.append(res)
    return outs[0] if len(outs) == 1 else tuple(outs)


def capture(kernel: Any, *tensors: Any) -> GpuProgram:
    """Compile `kernel` for the shapes of `tensors` (NumPy arrays) without running it; the
    returned program launches on torch tensors: `prog(*torch_tensors)`."""
    before = len(compile_log)
    kernel(*tensors, backend="gpu", mode="compile")
    if len(compile_log) == before:
        raise CompileError(f"kernel '{getattr(kernel, '__name__', kernel)}' compiled no Program for the GPU")
    return compile_log[-1]
