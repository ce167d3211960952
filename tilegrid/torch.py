"""FlashAttention as a PyTorch op: `tilegrid.torch.flash_attention(q, k, v, ...)`, differentiable.

Two `torch.library` custom ops, `tilegrid::flash_attention_fwd` and `tilegrid::flash_attention_bwd`,
each with a fake (meta) implementation, so `torch.compile(fullgraph=True)` traces through them; the
forward's autograd formula calls the backward op. Both run tilegrid's own kernels (the forward of
tilegrid/kernels/attention/kernel.py, the backward of backward_kernel.py):

- CUDA tensors: the kernels compiled to Triton once per shape signature (plans, compiled programs
  and launch settings cached), launched on the tensors in place on the current stream of their
  device: no host copies. Lengths that are not whole chunks and head dims that are not multiples
  of 32 are padded on the device (copies); so are non-contiguous inputs (`.contiguous()`).
- CPU tensors: the same kernels on the functional simulator (bf16 / float32).

Importing this module imports torch; nothing else in tilegrid does.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ml_dtypes import bfloat16

from tilegrid.device import WORMHOLE
from tilegrid.errors import TilegridError
from tilegrid.kernels.attention import AttentionConfig, build_kernel, choose_plan, make_problem
from tilegrid.kernels.attention import flash_attention as _sim_forward
from tilegrid.kernels.attention.backward import (
    KERNELS,
    BackwardPlan,
    choose_backward_plan,
    flash_attention_backward,
    gpu_backward_chunks,
)
from tilegrid.kernels.attention.backward import argument_shapes as backward_shapes
from tilegrid.kernels.attention.plan import Plan, arguments_shapes
from tilegrid.targets.gpu import capture

__all__ = ["flash_attention"]

Tensor = torch.Tensor
GPU_DTYPES = (torch.bfloat16, torch.float32)

# Launch settings on the GPU, the fastest of benchmarks/gpu on an H100, by (head_dim <= 64, causal):
# forward (q_chunk, kv_chunk, warps, stages), and backward chunks ((dK/dV K/V, Q), (dQ Q, K/V) tiles)
# with (warps, stages) of prep, dK/dV and dQ (bench_backward.py --sweep; d128 non-causal dK/dV re-checked
# on an H200 after issue 14 item 3, dkdv_variants.py).
FORWARD_LAUNCH = {(True, False): (4, 2, 8, 3), (True, True): (4, 2, 4, 3),
                  (False, False): (4, 2, 4, 2), (False, True): (4, 4, 8, 3)}
BACKWARD_LAUNCH = {(True, False): (((4, 1), (4, 2)), (4, 3), (4, 3), (4, 3)),
                   (True, True): (((4, 1), (4, 2)), (4, 3), (4, 3), (4, 3)),
                   (False, False): (((4, 2), (4, 2)), (4, 3), (8, 3), (8, 3)),
                   (False, True): (((4, 2), (4, 2)), (4, 3), (8, 3), (8, 3))}


def flash_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, scale: float | None = None,
                    window: tuple[int | None, int | None] | None = None, mask: Tensor | None = None,
                    return_lse: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(Q K^T * scale + mask) V with tilegrid's FlashAttention, differentiable in q, k, v.

    q: [batch, heads, seq_q, head_dim]; k, v: [batch, kv_heads, seq_kv, head_dim] (heads a multiple
    of kv_heads), one device and dtype: bfloat16 or float32 (CUDA: Triton; CPU: the simulator).
    causal: bottom-right aligned when seq_q != seq_kv. scale: default 1/sqrt(head_dim).
    window: (left, right) keys allowed around each query's position (None = unbounded).
    mask: [seq_q, seq_kv], boolean (True = keep) or additive float, on q's device.
    return_lse: also return the log-sum-exp [batch, heads, seq_q] (float32, -inf for fully masked
    rows; it carries no gradient).
    """
    check_inputs(q, k, v, mask)
    left, right = check_window(window)
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if q.is_cuda and not torch.compiler.is_compiling():  # eager: the op's own implementation, less dispatch
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            out, lse = EagerAttention.apply(q, k, v, mask, causal, s, left, right)
        else:
            out, lse = gpu_entry(q, k, mask, causal, s, left, right).forward(q, k, v, mask)
    else:
        out, lse = torch.ops.tilegrid.flash_attention_fwd(q, k, v, mask, causal, s, left, right)
    return (out, lse[..., 0]) if return_lse else out


# ---- checks ----------------------------------------------------------------------------------------


def _fail(message: str, note: str | None = None) -> TilegridError:
    return TilegridError(f"tilegrid.torch.flash_attention: {message}", note=note)


def check_inputs(q: Any, k: Any, v: Any, mask: Any) -> None:
    """Every mistake a caller can make, named by argument, before anything runs."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise _fail(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise _fail(f"{name} must be 4-D [batch, heads, seq, head_dim], got shape {tuple(x.shape)}")
        if x.device != q.device:
            raise _fail(f"{name} is on {x.device} but q is on {q.device}", note="move q, k, v and mask to one device")
        if x.dtype != q.dtype:
            raise _fail(f"{name} is {x.dtype} but q is {q.dtype}", note="q, k and v must share one dtype")
    if q.dtype not in GPU_DTYPES:
        where = "the GPU" if q.device.type == "cuda" else "the simulator"
        raise _fail(f"q, k, v are {q.dtype}; {where} runs torch.bfloat16 or torch.float32",
                    note="convert with .to(torch.bfloat16) (float16 and float64 are not supported)")
    if q.device.type not in ("cuda", "cpu"):
        raise _fail(f"q is on {q.device}; tilegrid runs CUDA tensors (Triton) or CPU tensors (the simulator)")
    b, h, sq, d = q.shape
    if tuple(k.shape) != tuple(v.shape) or k.shape[0] != b or k.shape[3] != d:
        raise _fail(f"k {tuple(k.shape)} and v {tuple(v.shape)} must both be [{b}, kv_heads, seq_kv, {d}] "
                    f"to match q {tuple(q.shape)}")
    if k.shape[1] < 1 or h % k.shape[1]:
        raise _fail(f"q's heads ({h}) must be a multiple of k's heads ({k.shape[1]})")
    if d > 256 or min(q.shape) < 1 or k.shape[2] < 1:
        raise _fail(f"head_dim must be 1..256 and no dimension empty, got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise _fail(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        if tuple(mask.shape) != (sq, k.shape[2]):
            raise _fail(f"mask must be [seq_q, seq_kv] = [{sq}, {k.shape[2]}], got {tuple(mask.shape)}")
        if mask.device != q.device:
            raise _fail(f"mask is on {mask.device} but q is on {q.device}")
        if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
            raise _fail(f"mask must be boolean (True = keep) or an additive float mask, got {mask.dtype}")


def check_window(window: Any) -> tuple[int, int]:
    """(left, right) as the ops take them: -1 for an unbounded side."""
    if window is None:
        return -1, -1
    if not isinstance(window, tuple | list) or len(window) != 2 or any(
            w is not None and (not isinstance(w, int) or w < 0) for w in window):
        raise _fail(f"window must be (left, right) with non-negative ints or None, got {window!r}")
    return tuple(-1 if w is None else int(w) for w in window)


def _window(left: int, right: int) -> tuple[int | None, int | None] | None:
    if left < 0 and right < 0:
        return None
    return (None if left < 0 else left, None if right < 0 else right)


# ---- the ops ---------------------------------------------------------------------------------------


@torch.library.custom_op("tilegrid::flash_attention_fwd", mutates_args=())
def _forward(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, scale: float, left: int,
             right: int) -> tuple[Tensor, Tensor]:
    """(out, lse32): the output, and the log-sum-exp repeated over 32 columns [b, h, seq_q, 32] (the
    layout the kernels read it in; the user sees column 0)."""
    if q.device.type == "cuda":
        return gpu_entry(q, k, mask, causal, scale, left, right).forward(q, k, v, mask)
    out, lse = _sim_forward(*(_host(x) for x in (q, k, v)), causal=causal, scale=scale, window=_window(left, right),
                            mask=None if mask is None else mask.numpy(), return_lse=True)
    lse = torch.from_numpy(lse)  # float32, whatever q's format
    return torch.from_numpy(np.asarray(out, np.float32)).to(q.dtype), lse.unsqueeze(-1).expand(*lse.shape, 32).clone()


def _host(x: Tensor) -> np.ndarray:
    """A CPU tensor as the simulator takes it (bf16 as ml_dtypes' bfloat16)."""
    a = x.detach().float().numpy()
    return a.astype(bfloat16) if x.dtype == torch.bfloat16 else a


@_forward.register_fake
def _(q, k, v, mask, causal, scale, left, right):
    return q.new_empty(q.shape), q.new_empty((*q.shape[:3], 32), dtype=torch.float32)


@torch.library.custom_op("tilegrid::flash_attention_bwd", mutates_args=())
def _backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mask: Tensor | None,
              causal: bool, scale: float, left: int, right: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) for the output gradient `dout`; lse in the forward op's [b, h, seq_q, 32] layout."""
    if q.device.type == "cuda":
        return gpu_entry(q, k, mask, causal, scale, left, right).backward(dout, q, k, v, out, lse, mask)
    return flash_attention_backward(q, k, v, out, lse[..., 0], dout.contiguous(), causal=causal, scale=scale,
                                    window=_window(left, right), mask=None if mask is None else mask.numpy())


@_backward.register_fake
def _(dout, q, k, v, out, lse, mask, causal, scale, left, right):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)  # contiguous, as the kernels write them


def _setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    q, k, v, mask, causal, scale, left, right = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, mask)
    ctx.options = (causal, scale, left, right)
    ctx.mark_non_differentiable(lse)


def _grad(ctx: Any, dout: Tensor, dlse: Tensor | None) -> tuple:
    q, k, v, out, lse, mask = ctx.saved_tensors
    dq, dk, dv = torch.ops.tilegrid.flash_attention_bwd(dout, q, k, v, out, lse, mask, *ctx.options)
    return dq, dk, dv, None, None, None, None, None


_forward.register_autograd(_grad, setup_context=_setup)


class EagerAttention(torch.autograd.Function):
    """What the two ops compute, on CUDA tensors, without the dispatcher's two Python hops per op
    (custom-op dispatch costs more host time than the kernels' launches): eager mode's path.
    `torch.compile` traces the ops instead (`flash_attention`)."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, scale: float,
                left: int, right: int) -> tuple[Tensor, Tensor]:
        entry = gpu_entry(q, k, mask, causal, scale, left, right)
        out, lse = entry.forward(q, k, v, mask)
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.entry = entry
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx: Any, dout: Tensor, dlse: Tensor | None) -> tuple:
        q, k, v, out, lse, mask = ctx.saved_tensors
        return (*ctx.entry.backward(dout, q, k, v, out, lse, mask), None, None, None, None, None)


# ---- the GPU path ----------------------------------------------------------------------------------


@dataclass
class Launch:
    """One compiled Triton kernel with its grid and launch settings. The first call goes through
    Triton's JIT (compiling and specialising on the arguments); later calls launch the compiled
    kernel directly, which skips re-binding the arguments (most of a launch's host time), unless a
    launch hook is registered (a profiler) or a pointer is not 16-byte aligned (a specialisation
    the compiled kernel may not have)."""

    fn: Any
    grid: tuple[int, int]
    num_warps: int
    num_stages: int
    runtime: Any  # triton.knobs.runtime: the launch hooks
    compiled: Any = None
    stream: Any = None  # device index -> the current raw CUDA stream (what Triton's own launches use)

    def __call__(self, *tensors: Tensor) -> None:
        c, rt = self.compiled, self.runtime
        if c is not None and not (rt.launch_enter_hook.calls or rt.launch_exit_hook.calls) and all(
                t.data_ptr() % 16 == 0 for t in tensors):
            c.run(self.grid[0], self.grid[1], 1, self.stream(tensors[0].device.index), c.function,
                  c.packed_metadata, None, None, None, *tensors)
            return
        kernel = self.fn[self.grid](*tensors, num_warps=self.num_warps, num_stages=self.num_stages)
        if hasattr(kernel, "packed_metadata"):  # compiled (not the interpreter)
            from triton.runtime import driver

            self.compiled, self.stream = kernel, driver.active.get_current_stream


def compile_launch(kernel: Any, shapes: list, warps: int, stages: int) -> Launch:
    """`kernel` compiled to Triton for arguments of these (shape, NumPy dtype)s, ready to launch."""
    from triton import knobs

    prog = capture(kernel, *(np.broadcast_to(np.zeros((), dt), shape) for shape, dt in shapes))
    return Launch(prog.function(), prog.src.grid, warps, stages, knobs.runtime)


@dataclass
class GpuEntry:
    """The plans and compiled kernels of one shape signature (built once, reused by every call)."""

    fwd_plan: Plan
    bwd_plan: BackwardPlan
    device: torch.device
    fwd: Launch
    bwd_launch: tuple
    bwd: dict[str, Launch] = field(default_factory=dict)
    dummy: Tensor | None = None

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        p = self.fwd_plan.problem
        b, h, sq, d = q.shape
        rows, cols, dp = p.seq_q_pad, p.seq_kv_pad, p.head_dim_pad
        qp, kp, vp = _fit(q, rows, dp), _fit(k, cols, dp), _fit(v, cols, dp)
        mp = self.dummy if mask is None else mask_operand(mask, rows, cols, p.scale)
        lse = torch.empty((b, h, rows, 32), device=q.device, dtype=torch.float32)
        out = torch.empty((b, h, rows, dp), device=q.device, dtype=q.dtype)
        with on_device(q.device):
            self.fwd(qp, kp, vp, mp, self.dummy, lse, out)
        if rows != sq or dp != d:
            out = out[:, :, :sq, :d].contiguous()
            lse = lse[:, :, :sq].contiguous()
        return out, lse

    def backward(self, dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                 mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        plan = self.bwd_plan
        if not self.bwd:
            for (name, build), (w, s) in zip(KERNELS.items(), self.bwd_launch[1:]):
                self.bwd[name] = compile_launch(build(plan, WORMHOLE), backward_shapes(plan, name), w, s)
        p = plan.problem
        b, h, sq, d = q.shape
        hk, skv = k.shape[1], k.shape[2]
        rows, cols, dp = p.seq_q_pad, p.seq_kv_pad, p.head_dim_pad
        qp, op, dop = _fit(q, rows, dp), _fit(out, rows, dp), _fit(dout, rows, dp)
        kp, vp = _fit(k, cols, dp), _fit(v, cols, dp)
        lp = lse if rows == sq else torch.nn.functional.pad(lse, (0, 0, 0, rows - sq), value=-math.inf)
        col = torch.empty((b, h, rows, 32), device=q.device, dtype=torch.float32)
        row = torch.empty((b, h, 32, rows), device=q.device, dtype=torch.float32)
        dq = torch.empty((b, h, rows, dp), device=q.device, dtype=q.dtype)
        dk = torch.empty((b, hk, cols, dp), device=q.device, dtype=q.dtype)
        dv = torch.empty_like(dk)
        mp = mt = self.dummy
        if mask is not None:
            mp = mask_operand(mask, rows, cols, p.scale)
            mt = mp.t().contiguous()
        with on_device(q.device):
            self.bwd["prep"](op, dop, lp.contiguous(), col, row)
            self.bwd["dkdv"](qp, kp, vp, dop, row, mt, dk, dv)
            self.bwd["dq"](qp, kp, vp, dop, col, mp, dq)
        if rows != sq or cols != skv or dp != d:
            dq = dq[:, :, :sq, :d].contiguous()
            dk = dk[:, :, :skv, :d].contiguous()
            dv = dv[:, :, :skv, :d].contiguous()
        return dq, dk, dv


_entries: dict[tuple, GpuEntry] = {}


def gpu_entry(q: Tensor, k: Tensor, mask: Tensor | None, causal: bool, scale: float, left: int, right: int
              ) -> GpuEntry:
    """The cached plans and programs for this call's shape signature (planned and compiled on first use)."""
    key = (tuple(q.shape), tuple(k.shape), q.dtype, q.device, mask is None, causal, scale, left, right)
    hit = _entries.get(key)
    if hit is not None:
        return hit
    dt = bfloat16 if q.dtype == torch.bfloat16 else np.float32
    dtype = "bf16" if q.dtype == torch.bfloat16 else "f32"
    z = np.zeros((), dt)
    qz, kz = np.broadcast_to(z, tuple(q.shape)), np.broadcast_to(z, tuple(k.shape))
    mz = None if mask is None else np.broadcast_to(np.zeros((), np.float32), (q.shape[2], k.shape[2]))
    problem = make_problem(qz, kz, kz, causal, scale, _window(left, right), mz)
    small_d = problem.head_dim_pad <= 64
    cq, ck, w, s = FORWARD_LAUNCH[(small_d, causal)]
    if dtype == "f32":  # f32 blocks take twice the bytes: half the rows
        cq, ck, w, s = max(1, cq // 2), max(1, ck // 2), 4, 2
    launch = BACKWARD_LAUNCH[(small_d, causal)]
    if dtype == "f32":
        launch = (gpu_backward_chunks(problem, dtype), (4, 2), (4, 2), (4, 2))
    entry = make_entry(problem, dtype, q.device, (cq, ck, w, s), launch)
    _entries[key] = entry
    return entry


def make_entry(problem: Any, dtype: str, device: torch.device, fwd_launch: tuple, bwd_launch: tuple) -> GpuEntry:
    """Plans and compiled programs for `problem`: forward (q_chunk, kv_chunk, warps, stages) and backward
    (chunks, (warps, stages) of prep, dK/dV and dQ); the backward compiles on its first use."""
    cq, ck, w, s = fwd_launch
    cfg = AttentionConfig(q_chunk=cq, kv_chunk=ck, grid=WORMHOLE.grid, gqa_pack=False)
    fwd_plan = choose_plan(problem, cfg, WORMHOLE, dtype, backend="gpu")
    bwd_plan = choose_backward_plan(problem, WORMHOLE.grid, WORMHOLE, dtype, "gpu", bwd_launch[0])
    fwd = compile_launch(build_kernel(fwd_plan, WORMHOLE), arguments_shapes(fwd_plan), w, s)
    return GpuEntry(fwd_plan, bwd_plan, device, fwd, bwd_launch,
                    dummy=torch.zeros((32, 32), device=device, dtype=torch.float32))


def on_device(device: torch.device) -> Any:
    """Launch on `device` (Triton launches on the current CUDA device and its current stream)."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _fit(x: Tensor, rows: int, cols: int) -> Tensor:
    """x contiguous with its last two dimensions zero-padded to (rows, cols) (no copy when it fits)."""
    r, c = x.shape[-2:]
    if r == rows and c == cols:
        return x.contiguous()
    return torch.nn.functional.pad(x, (0, cols - c, 0, rows - r))


def mask_operand(mask: Tensor, rows: int, cols: int, scale: float) -> Tensor:
    """The user's mask as the kernels add it to unscaled scores: float32 mask / scale (a boolean mask
    0 / -inf), padded with -inf to (rows, cols)."""
    add = mask.float() / scale if mask.dtype != torch.bool else torch.where(
        mask, 0.0, -math.inf).to(torch.float32)
    r, c = mask.shape
    if (r, c) == (rows, cols):
        return add.contiguous()
    return torch.nn.functional.pad(add, (0, cols - c, 0, rows - r), value=-math.inf)
