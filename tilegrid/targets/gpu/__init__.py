"""The GPU target: tilegrid kernels compiled to Triton (see docs/gpu.md).

Lowering (block IR -> pairing -> Triton source) needs neither torch nor Triton; running needs
both, imported only then. `kernel(*tensors, backend="gpu")` runs a kernel on the GPU;
`capture(kernel, *tensors)` compiles it and returns a `GpuProgram` that launches on torch CUDA
tensors directly (what the benchmarks time).
"""

from tilegrid.targets.gpu.program import GpuProgram, GpuTarget, capture, lower

__all__ = ["GpuProgram", "GpuTarget", "capture", "lower"]
