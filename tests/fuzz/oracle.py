"""The oracle: a float64 interpreter of the programs tests/fuzz/grammar.py generates, and the rule
that compares a kernel's output with it.

The interpreter evaluates the program's description (never its source, never tilegrid's code)
with docs/language.md's semantics: each core takes the blocks of its own shard (or what its
explicit reader's stream indices name) in transfer order; blocks broadcast `[M,1]` / `[1,N]`
(and `[1,1]`); sums come back in f32, maxima keep the format; an op's result is f32 if any
operand is; run-time `//` and `%` are Python's (floor); comparisons give 1.0 / 0.0; a carried
block is converted back to its format at the end of each iteration; `if` branches join to f32 if
either branch is f32.

Two modes:
- "ref": float64 throughout, rounding only where the language says a value is rounded whatever
  the compiler does: inputs are exact in their format, `astype("bf16")` of an f32 value, a
  carried block converted back to bf16, and the store into the output CB (then DRAM).
- "pess": the same, but every op's result is also rounded to its format (bf16 or fp32) — the
  worst case, where every intermediate is packed to L1 instead of staying in fp32 in DST.

Tolerance rule (`check`): with base = 1e-2 if any value of the program is bf16 (an input, the
output, a fill / astype format) else 1e-5 (DESIGN.md's criteria for bf16 / fp32 data), and
sens = ||pess - ref|| / ||ref|| (how much rounding every intermediate can move this program's
result; infinite when ref is exactly zero but pess is not), the output passes iff it has no NaN and ||out - ref|| <= max(base, 4 * sens) * ||ref||.
A program with sens > 5% (a result dominated by rounding: cancellation, a near-singular divisor)
says nothing at 1% and is rejected as an example, as are programs that leave the safe domain
(`Unsafe`: exp of more than 12, a divisor / recip / log argument within 0.05 of zero, a sqrt
argument below 0.01, magnitudes above 1e6).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import scipy.special
from ml_dtypes import bfloat16

from fuzz.grammar import (
    BF16,
    BT,
    F32,
    Assign,
    AsType,
    Bin,
    Call,
    Cmp,
    Cond,
    CoreIdx,
    Expr,
    Fill,
    For,
    If,
    IfNum,
    IntOp,
    Iota,
    MatMul,
    MaxMin,
    Num,
    OutPop,
    Pop,
    Program,
    Reduce,
    Reserve,
    Stmt,
    StoreInto,
    Transpose,
    TupleAssign,
    Unary,
    Var,
    Where,
    With,
    WithReserve,
)

LIMIT = 1e6
REJECT_SENS = 0.05


class Unsafe(Exception):
    """The program leaves the domain where comparing at 1% means something: not a test case."""


def rnd(x: Any, dtype: str) -> np.ndarray:
    """Round to a data format as the hardware packs it (fp32 first, then bf16 round-to-nearest-even)."""
    a = np.asarray(x, np.float64).astype(np.float32)
    if dtype == BF16:
        a = a.astype(bfloat16)
    return a.astype(np.float64)


def _cmp(op: str, a: Any, b: Any) -> Any:
    return {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal,
            "!=": np.not_equal}[op](a, b)


class Interpreter:
    def __init__(self, prog: Program, inputs: list[np.ndarray], mode: str) -> None:
        assert mode in ("ref", "pess")
        self.prog, self.mode = prog, mode
        self.inputs = [np.asarray(a, np.float64) for a in inputs]

    def run(self) -> np.ndarray:
        prog = self.prog
        out = prog.out
        result = np.full(out.shape(prog.grid), np.nan)
        bh, bw = out.bshape
        for r in range(prog.grid[0]):
            for c in range(prog.grid[1]):
                self.core = (r, c)
                self.queues = []
                for a, x in zip(prog.inputs, self.inputs):
                    h, w = a.bshape
                    self.queues.append(deque(x[i * h:(i + 1) * h, j * w:(j + 1) * w] for i, j in a.order((r, c))))
                self.env: dict[str, Any] = {}
                self.types: dict[str, Any] = {}
                self.stored: list[np.ndarray] = []
                self.exec(prog.body)
                where = out.order((r, c))
                assert len(self.stored) == len(where), (len(self.stored), len(where))
                for (i, j), blk in zip(where, self.stored):
                    result[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw] = blk
        return result

    # ---- statements -------------------------------------------------------------------------

    def exec(self, stmts: list[Stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Assign):
            self.env[s.name] = self.ev(s.expr)
            self.types[s.name] = s.expr.t
        elif isinstance(s, TupleAssign):
            values = [self.ev(e) for e in s.exprs]
            for name, e, v in zip(s.names, s.exprs, values):
                self.env[name], self.types[name] = v, e.t
        elif isinstance(s, Pop | With):
            a = self.prog.args[s.cb]
            self.env[s.name] = np.array(self.queues[s.cb].popleft())
            self.types[s.name] = BT(a.bshape, a.dtype)
            if isinstance(s, With):
                self.exec(s.body)
        elif isinstance(s, For):
            for v in s.values:
                self.env[s.var] = v
                self.exec(s.body)
                for name, t in s.carried:  # a changed data format is converted back
                    if isinstance(t, BT):
                        assert np.shape(self.env[name]) == t.shape, (name, np.shape(self.env[name]), t)
                        if self.types[name].dtype != t.dtype and t.dtype == BF16:
                            self.env[name] = rnd(self.env[name], BF16)
                    self.types[name] = t
        elif isinstance(s, If):
            self.exec(s.body if self.ev(s.cond) else s.orelse)
            for name, t in s.joins:  # joins only ever widen (bf16 -> f32): no rounding
                self.types[name] = t
        elif isinstance(s, Reserve):
            self.env[s.name] = None
        elif isinstance(s, StoreInto):
            v = np.broadcast_to(self.ev(s.expr), self.prog.out.bshape)
            self.stored.append(rnd(v, self.prog.out.dtype))
        elif isinstance(s, WithReserve):
            self.exec(s.body)
        elif isinstance(s, OutPop):
            pass
        else:
            raise AssertionError(f"cannot interpret {s!r}")

    # ---- expressions ------------------------------------------------------------------------

    def result(self, e: Expr, v: Any) -> np.ndarray:
        v = np.broadcast_to(np.asarray(v, np.float64), e.t.shape)
        if not np.isfinite(v).all() or np.abs(v).max() > LIMIT:
            raise Unsafe(f"{e.src()[:80]}: magnitude")
        return rnd(v, e.t.dtype) if self.mode == "pess" else np.array(v)

    def number(self, v: Any) -> Any:
        if isinstance(v, float) and self.mode == "pess":
            return float(np.float32(v))
        return v

    def ev(self, e: Expr) -> Any:
        if isinstance(e, Var):
            return self.env[e.name]
        if isinstance(e, Num):
            return e.v
        if isinstance(e, CoreIdx):
            return self.core[e.d]
        if isinstance(e, IntOp):
            a, b = self.ev(e.a), self.ev(e.b)
            if e.op in ("//", "%") and b == 0:
                raise Unsafe("integer division by zero")
            v = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: a // b,
                 "%": lambda: a % b, "/": lambda: a / b}[e.op]()
            return self.number(float(v)) if e.t == "float" else int(v)
        if isinstance(e, Cond):
            if e.op == "not":
                return not self.ev(e.a)
            if e.op == "and":
                return bool(self.ev(e.a)) and bool(self.ev(e.b))
            if e.op == "or":
                return bool(self.ev(e.a)) or bool(self.ev(e.b))
            return bool(_cmp(e.op, self.ev(e.a), self.ev(e.b)))
        if isinstance(e, IfNum):
            v = self.ev(e.a) if self.ev(e.cond) else self.ev(e.b)
            return self.number(float(v)) if e.t == "float" else v
        if isinstance(e, Bin):
            a, b = self.ev(e.a), self.ev(e.b)
            if e.op == "/":
                if np.min(np.abs(b)) < 0.05:
                    raise Unsafe(f"{e.src()[:80]}: divisor near zero")
                return self.result(e, np.asarray(a, np.float64) / b)
            return self.result(e, {"+": np.add, "-": np.subtract, "*": np.multiply}[e.op](a, b))
        if isinstance(e, Cmp):
            return self.result(e, _cmp(e.op, self.ev(e.a), self.ev(e.b)).astype(np.float64))
        if isinstance(e, Unary):
            return self.result(e, self.unary(e.name, np.asarray(self.ev(e.a), np.float64), e))
        if isinstance(e, MatMul):
            return self.result(e, self.ev(e.a) @ self.ev(e.b))
        if isinstance(e, Transpose):
            return self.result(e, np.asarray(self.ev(e.a)).T)
        if isinstance(e, Reduce):
            x = self.ev(e.a)
            axis = 1 if e.name.startswith("row") else 0
            r = x.max(axis=axis, keepdims=True) if e.name.endswith("max") else x.sum(axis=axis, keepdims=True)
            if e.acc is None:
                return self.result(e, r)
            part = BT(r.shape, F32 if e.name.endswith("sum") else e.a.t.dtype)
            if self.mode == "pess":
                r = rnd(r, part.dtype)
            acc = self.ev(e.acc)
            return self.result(e, np.maximum(r, acc) if e.name.endswith("max") else r + acc)
        if isinstance(e, MaxMin):
            fn = np.maximum if e.name == "maximum" else np.minimum
            return self.result(e, fn(self.ev(e.a), self.ev(e.b)))
        if isinstance(e, Where):
            return self.result(e, np.where(np.asarray(self.ev(e.c)) != 0, self.ev(e.a), self.ev(e.b)))
        if isinstance(e, Fill):
            return self.result(e, np.full(e.shape, e.v))
        if isinstance(e, Iota):
            r, c = e.shape
            idx = np.arange(r)[:, None] + np.zeros((1, c)) if e.which == "row_index" else np.arange(c)[None, :] + np.zeros((r, 1))
            return self.result(e, idx)
        if isinstance(e, Call):  # the helper's body, its parameters bound to the arguments
            args = [self.ev(a) for a in e.args]
            saved = self.env
            self.env = dict(zip(e.helper.params, args))
            try:
                for name, x in e.helper.body:
                    v = self.ev(x)
                    self.env[name] = v
            finally:
                self.env = saved
            return v
        if isinstance(e, AsType):
            v = self.ev(e.a)
            if e.dtype == BF16 and e.a.t.dtype == F32:  # a narrowing conversion is packed (rounded)
                v = rnd(v, BF16)
            return self.result(e, v)
        raise AssertionError(f"cannot evaluate {type(e).__name__}")

    def unary(self, name: str, x: np.ndarray, e: Expr) -> np.ndarray:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise Unsafe(f"{e.src()[:80]}: {what}")

        if name == "exp":
            need(x.max() <= 12, "exp argument above 12")
            return np.exp(x)
        if name == "recip":
            need(np.abs(x).min() >= 0.05, "recip of near zero")
            return 1 / x
        if name in ("sqrt", "rsqrt"):
            need(x.min() >= 0.01, "sqrt of near zero or negative")
            return np.sqrt(x) if name == "sqrt" else 1 / np.sqrt(x)
        if name == "log":
            need(x.min() >= 0.05, "log of near zero or negative")
            return np.log(x)
        if name == "log1p":
            need(x.min() >= -0.9, "log1p of -1 or less")
            return np.log1p(x)
        if name == "square":
            need(np.abs(x).max() <= 1e3, "square of a large value")
            return x * x
        return {"abs": np.abs, "neg": np.negative, "relu": lambda v: np.maximum(v, 0),
                "sigmoid": scipy.special.expit, "tanh": np.tanh, "erf": scipy.special.erf,
                "gelu": lambda v: 0.5 * v * (1 + scipy.special.erf(v / np.sqrt(2))),
                "silu": lambda v: v * scipy.special.expit(v), "softplus": lambda v: np.logaddexp(0, v)}[name](x)


def interpret(prog: Program, inputs: list[np.ndarray], mode: str = "ref") -> np.ndarray:
    return Interpreter(prog, inputs, mode).run()


def uses_bf16(prog: Program) -> bool:
    if any(a.dtype == BF16 for a in prog.args):
        return True
    return "bf16" in prog.source


def tolerance(prog: Program, ref: np.ndarray, pess: np.ndarray) -> tuple[float, float]:
    """(allowed relative error, sensitivity) for this program; see the module docstring."""
    base = 1e-2 if uses_bf16(prog) else 1e-5
    norm, dev = np.linalg.norm(ref), np.linalg.norm(pess - ref)
    if norm == 0:  # exact cancellation: any rounding is infinitely large relative to it
        sens = 0.0 if dev == 0 else float("inf")
    else:
        sens = float(dev / norm)
    return max(base, 4 * sens), sens


def check(prog: Program, out: np.ndarray, ref: np.ndarray, pess: np.ndarray) -> str | None:
    """None if `out` passes, else why not."""
    out64 = np.asarray(out, np.float64)
    if np.isnan(out64).any():
        bad = np.argwhere(np.isnan(out64))
        return f"{len(bad)} NaN elements in the output (first at {tuple(bad[0])})"
    tol, sens = tolerance(prog, ref, pess)
    norm = np.linalg.norm(ref)
    err = float(np.linalg.norm(out64 - ref))
    if norm == 0:
        return None if err <= 1e-6 else f"absolute error {err:.3e} against an all-zero reference"
    if err > tol * norm:
        worst = np.unravel_index(np.argmax(np.abs(out64 - ref)), ref.shape)
        return (f"relative error {err / norm:.3e} exceeds {tol:.1e} (sensitivity {sens:.1e}); worst element "
                f"{tuple(int(i) for i in worst)}: got {out64[worst]!r}, expected {ref[worst]!r}")
    return None
