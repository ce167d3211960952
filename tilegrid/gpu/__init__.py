"""The GPU backend: tilegrid kernels compiled to Triton (see docs/gpu.md).

`compile_program` (block IR -> pairing -> Triton source) needs neither torch nor Triton;
running needs both, imported only then. `kernel(*tensors, backend="gpu")` runs a kernel on
the GPU; `capture(kernel, *tensors)` compiles it and returns a `GpuProgram` that launches
on torch CUDA tensors directly (what the benchmarks time).
"""

from __future__ import annotations

from tilegrid.gpu.run import GpuProgram, capture, compile_log, compile_program, run_program_gpu

__all__ = ["GpuProgram", "capture", "compile_log", "compile_program", "run_program_gpu"]
