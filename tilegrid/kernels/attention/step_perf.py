"""Predicted Tensix time of attention in a training step: the forward and the three backward
programs under the performance model (tilegrid.perf, timing-only: no data, production sizes in
seconds), each with its bound.

    from tilegrid.kernels.attention.step_perf import predict_step
    step = predict_step((1, 8, 2048, 128), (1, 8, 2048, 128), causal=True)
    print(step.text())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ml_dtypes import bfloat16

from tilegrid import perf
from tilegrid.device import WORMHOLE, Device
from tilegrid.kernels.attention.backward import KERNELS, argument_shapes, choose_backward_plan
from tilegrid.kernels.attention.kernel import build_kernel
from tilegrid.kernels.attention.plan import arguments_shapes, choose_plan, make_problem
from tilegrid.kernels.attention.problem import AttentionConfig


@dataclass
class StepPrediction:
    """Each program's Summary (forward, prep, dkdv, dq) and the FlashAttention-2 FLOP counts."""

    summaries: dict[str, Any] = field(default_factory=dict)
    forward_flops: float = 0.0  # 4 * B * H * Sq * Skv * D, halved for causal (as FlashAttention counts)

    @property
    def forward_seconds(self) -> float:
        return self.summaries["forward"].seconds

    @property
    def backward_seconds(self) -> float:
        return sum(self.summaries[k].seconds for k in KERNELS)

    def text(self) -> str:
        lines = [f"{'program':<10} {'time (ms)':>10} {'TFLOP/s':>8}  bound"]
        for name, s in self.summaries.items():
            lines.append(f"{name:<10} {s.seconds * 1e3:10.3f} {s.tflops:8.1f}  {s.bound}")
        fwd, bwd = self.forward_seconds, self.backward_seconds
        lines.append(f"forward {fwd * 1e3:.3f} ms ({self.forward_flops / fwd / 1e12:.1f} TFLOP/s), backward "
                     f"{bwd * 1e3:.3f} ms ({2.5 * self.forward_flops / bwd / 1e12:.1f} TFLOP/s as FlashAttention-2 "
                     f"counts it), step {(fwd + bwd) * 1e3:.3f} ms")
        return "\n".join(lines)


def predict_step(q_shape: tuple[int, ...], kv_shape: tuple[int, ...], *, causal: bool = False,
                 window: tuple[int | None, int | None] | None = None, device: Device = WORMHOLE,
                 grid: tuple[int, int] | None = None, fidelity: str = "HiFi4", exp: str = "accurate",
                 data_format: str | None = None, dtype: Any = bfloat16) -> StepPrediction:
    """Timing-only runs of the forward (returning the log-sum-exp, as training needs) and of the
    backward's prep, dK/dV and dQ programs, planned as `flash_attention` / `flash_attention_backward`
    plan them (chunks that fit L1)."""
    z = np.zeros((), dtype)
    name = "f32" if np.dtype(dtype) == np.float32 else "bf16"
    q, kv = np.broadcast_to(z, q_shape), np.broadcast_to(z, kv_shape)
    problem = make_problem(q, kv, kv, causal, None, window, None)
    grid = grid or device.grid
    fwd = choose_plan(problem, AttentionConfig(grid=grid), device, name)
    bwd = choose_backward_plan(problem, grid, device, name)
    runs = [("forward", build_kernel(fwd, device), arguments_shapes(fwd))]
    runs += [(k, build(bwd, device), argument_shapes(bwd, k)) for k, build in KERNELS.items()]
    b, h, sq, d = q_shape
    out = StepPrediction(forward_flops=4 * b * h * sq * kv_shape[2] * d / (2 if causal else 1))
    with perf.session(fidelity, timing_only=True, exp=exp, data_format=data_format, trace=False) as s:
        for key, kernel, shapes in runs:
            kernel(*(perf.placeholder(shape, t) for shape, t in shapes))
            out.summaries[key] = s.last
    return out
