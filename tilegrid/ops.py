"""The op table: every elementwise op and every index (integer) op, defined once.

An entry says what an op means and how every part of tilegrid treats it:

- its name (the IR op is `block.<name>` / `tile.<name>`, generated from the entry), arity and
  compile-time parameters; the shape rule is NumPy broadcasting of the block operands and the
  result's format the wider of theirs (f32 over bf16);
- `sim`: its numerics on the functional simulator, float32 in and out (DST holds fp32), close to
  the float64 result: computed in float64 and rounded once, or a float32 NumPy ufunc where that is
  within a few ulp (exp and log: NumPy's float32, up to about 2.4 and 2.8 ulp over the float
  range; in float64 FlashAttention's hottest op would be 16x slower);
- `cost`: its cost class for the performance model (tilegrid/perf/costs.py prices each class);
- its spelling on each code-emitting target: `triton` (the GPU backend), a format string over the
  operand names ({x}, {a}, {b}, {c}) and parameters, or a function of them; and `ttmetal` (a
  `TtMetal`: the tt-metal compute kernel API's header, init and call on DST tiles, checked against
  the headers of ttnn 0.81.1, and the matrix unit's eltwise op where there is one);
- `api`: the user-facing names (`x.exp()` and `exp(x)`), and `variants`: keyword spellings that
  select another entry (`exp(x, approx=True)` is `exp_approx`).

Adding an elementwise op is one entry here plus its tests (tests/test_op_table.py holds each op's
own float64 reference). Index ops (`arith.*` on run-time integers) have one entry each too: their
Python meaning, which is Python's (floor division and modulo round toward minus infinity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.special

from tilegrid.numerics import exp_approx

F32 = np.float32
SQRT1_2 = 0.7071067811865476
SQRT_2_OVER_PI = 0.7978845608028654


@dataclass(frozen=True)
class Param:
    """A compile-time parameter of an op (an IR property): `x ** n` has `n`, `clamp` has `lo`, `hi`."""

    name: str
    kind: type  # int or float


@dataclass(frozen=True)
class Cost:
    """How the performance model prices an op on one tile.

    kind: "fpu" (the matrix unit's eltwise path when both operands are unpacked straight from L1,
    else the SFPU at `instr` instructions per vector), "sfpu" (`instr` SFPU instructions per
    32-datum vector, counted from the op's SFPU sequence), "exp" / "exp_approx" / "recip" (published
    per-tile figures, tilegrid/perf/params.py), "poly" (no published figure: a polynomial /
    iterative SFPU routine priced like the exponential of the run's exp mode)."""

    kind: str
    instr: int = 0


@dataclass(frozen=True)
class TtMetal:
    """An op in a tt-metal compute kernel (ttnn 0.81.1's kernel API). `call` and `init` are format
    strings over the DST tile indices of the operands ({x}; {a}, {b}; {c}, {a}, {b}), of the result
    ({out}; a unary op works in place: {x} is also the result) and the parameters as C++ literals; a
    scalable op's `scaled` call also has {scale} (an f32 C++ expression). `fpu`: the matrix unit's
    EltwiseBinaryType (add_tiles, ...) when both operands are unpacked from L1; the SFPU `call` serves
    operands already in DST."""

    header: str
    init: str
    call: str
    scaled: str | None = None
    fpu: str | None = None


def _sfpu(header: str, name: str, call: str | None = None, init: str | None = None, **kw: Any) -> TtMetal:
    """The usual shape: `<name>_init()` and `<name>(...)` declared in `api/compute/<header>`."""
    return TtMetal(f"api/compute/{header}", init or f"{name}_init()", call or f"{name}({{x}})", **kw)


BITS = "__builtin_bit_cast(uint32_t, {})"  # a float parameter as the uint32 the SFPU kernel API takes


@dataclass(frozen=True)
class OpDef:
    """One elementwise op (see the module docstring)."""

    name: str
    arity: int
    sim: Callable[..., np.ndarray]
    cost: Cost
    triton: str | Callable[..., str]
    doc: str
    ttmetal: TtMetal | None = None
    params: tuple[Param, ...] = ()
    api: tuple[str, ...] = ()
    method: bool = True  # also a block method (`x.exp()`), not only a function (`exp(x)`)
    variants: dict[str, str] = field(default_factory=dict)  # keyword=True -> another entry
    scalable: bool = False  # takes an optional f32 `scale` operand: op(x * scale) in one SFPU op
    compare: bool = False  # gives 1.0 / 0.0 (a boolean on the GPU)

    def spell(self, target: str, **operands: Any) -> str:
        """This op on `target` ("triton"), given its operands' and parameters' text."""
        s = getattr(self, target)
        if s is None:
            raise KeyError(f"op {self.name} has no {target} spelling")
        return s(**operands) if callable(s) else s.format(**operands)


def _f64(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """fn evaluated in float64 and rounded once to float32 (for ops with no faithful float32 ufunc)."""

    def sim(x: np.ndarray) -> np.ndarray:
        return fn(np.asarray(x, np.float64)).astype(F32)

    return sim


def _pow_sim(x: np.ndarray, n: int) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.power(np.asarray(x, np.float64), n).astype(F32)


def _pow_triton(x: str, n: int) -> str:
    if n == 0:
        return f"({x} * 0.0 + 1.0)"
    p = " * ".join([f"{x}"] * abs(n))
    return f"({p})" if n > 0 else f"(1.0 / ({p}))"


def _log1p_triton(x: str) -> str:
    """log(1 + x) to a few ulp for small x too (Goldberg: the rounding of 1 + x divided back out)."""
    return f"tl.where(1.0 + {x} == 1.0, {x}, tl.log(1.0 + {x}) * {x} / ((1.0 + {x}) - 1.0))"


def _tanh_triton(x: str) -> str:
    """tanh accurate to a few ulp everywhere: its odd Taylor series near 0 (where (1 - e) / (1 + e)
    would cancel), else sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) (no overflow)."""
    x2 = f"({x} * {x})"
    series = f"{x} * (1.0 + {x2} * (-0.3333333333333333 + {x2} * (0.13333333333333333 + {x2} * -0.05396825396825397)))"
    e = f"tl.exp(-2.0 * tl.abs({x}))"
    return (f"tl.where(tl.abs({x}) < 0.125, {series}, "
            f"tl.where({x} < 0.0, -1.0, 1.0) * (1.0 - {e}) / (1.0 + {e}))")


def _gelu_tanh64(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _cmp(fn: Callable) -> Callable:
    def sim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return fn(a, b).astype(F32)

    return sim


def _unary(name: str, sim: Callable, cost: Cost, triton: str | Callable, doc: str, **kw: Any) -> OpDef:
    return OpDef(name, 1, sim, cost, triton, doc, api=kw.pop("api", (name,)), **kw)


SFPU_SIMPLE = Cost("sfpu", 3)  # load, op, store per vector

UNARY = [
    _unary("exp", np.exp, Cost("exp"), "tl.exp({x})", "e**x, elementwise (`exp(x, approx=True)`: the SFPU's fast "
           "approximation, within 3.1%)", variants={"approx": "exp_approx"}, scalable=True,
           ttmetal=_sfpu("eltwise_unary/exp.h", "exp_tile", "exp_tile<false>({x})", "exp_tile_init<false>()",
                        scaled="exp_tile<false, true>({x}, VectorMode::RC, uint16_t(" + BITS.format("{scale}") + " >> 16))")),
    _unary("exp_approx", exp_approx, Cost("exp_approx"), "tl.exp({x})",
           "the SFPU's fast approximate e**x (Schraudolph's bit trick; the GPU's exp2 unit serves both exps)",
           api=(), scalable=True, ttmetal=_sfpu("eltwise_unary/exp.h", "exp_tile", "exp_tile<true>({x})", "exp_tile_init<true>()",
                        scaled="exp_tile<true, true>({x}, VectorMode::RC, uint16_t(" + BITS.format("{scale}") + " >> 16))")),
    _unary("recip", lambda x: F32(1.0) / x, Cost("recip"), "1.0 / {x}", "1/x, elementwise",
           ttmetal=_sfpu("eltwise_unary/recip.h", "recip_tile")),
    _unary("neg", np.negative, SFPU_SIMPLE, "-{x}", "-x, elementwise (also `-x`)", ttmetal=_sfpu("eltwise_unary/negative.h", "negative_tile")),
    _unary("sqrt", np.sqrt, Cost("recip"), "tl.sqrt({x})", "square root, elementwise", ttmetal=_sfpu("eltwise_unary/sqrt.h", "sqrt_tile")),
    _unary("rsqrt", _f64(lambda x: 1.0 / np.sqrt(x)), Cost("recip"), "tl.rsqrt({x})", "1/sqrt(x), elementwise",
           ttmetal=_sfpu("eltwise_unary/rsqrt.h", "rsqrt_tile")),
    _unary("abs", np.abs, SFPU_SIMPLE, "tl.abs({x})", "|x|, elementwise (also `abs(x)`)", ttmetal=_sfpu("compute_kernel_api.h", "abs_tile")),
    _unary("log", np.log, Cost("poly"), "tl.log({x})", "natural logarithm, elementwise", ttmetal=_sfpu("compute_kernel_api.h", "log_tile")),
    _unary("log1p", np.log1p, Cost("poly"),
           _log1p_triton, "log(1 + x), accurate for small x", ttmetal=_sfpu("eltwise_unary/log1p.h", "log1p_tile")),
    _unary("relu", lambda x: np.maximum(x, F32(0.0)), SFPU_SIMPLE, "tl.maximum({x}, 0.0)", "max(x, 0), elementwise",
           ttmetal=_sfpu("eltwise_unary/relu.h", "relu_tile")),
    _unary("sigmoid", _f64(lambda x: 1.0 / (1.0 + np.exp(-x))), Cost("poly"), "tl.sigmoid({x})",
           "1/(1 + e**-x), elementwise", ttmetal=_sfpu("compute_kernel_api.h", "sigmoid_tile")),
    _unary("tanh", np.tanh, Cost("poly"), _tanh_triton, "hyperbolic tangent, elementwise", ttmetal=_sfpu("compute_kernel_api.h", "tanh_tile")),
    _unary("erf", _f64(scipy.special.erf), Cost("poly"), "tl.erf({x})", "the error function, elementwise",
           ttmetal=_sfpu("eltwise_unary/erf_erfc.h", "erf_tile", "erf_tile<false>({x})", "erf_tile_init<false>()")),
    _unary("gelu", _f64(lambda x: 0.5 * x * (1.0 + scipy.special.erf(x * SQRT1_2))), Cost("poly"),
           lambda x: f"(0.5 * {x} * (1.0 + tl.erf({x} * {SQRT1_2!r})))",
           "GELU, x * Phi(x) with the exact normal CDF (`gelu(x, approx=True)`: the tanh approximation)",
           variants={"approx": "gelu_tanh"}, ttmetal=_sfpu("eltwise_unary/gelu.h", "gelu_tile", "gelu_tile<false>({x})", "gelu_tile_init<false>()")),
    _unary("gelu_tanh", _f64(_gelu_tanh64), Cost("poly"),
           lambda x: f"(0.5 * {x} * (1.0 + {_tanh_triton(f'({SQRT_2_OVER_PI!r} * ({x} + 0.044715 * {x} * {x} * {x}))')}))",
           "GELU with the tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))", api=(),
           ttmetal=_sfpu("eltwise_unary/gelu.h", "gelu_tanh_tile")),
    _unary("silu", _f64(lambda x: x / (1.0 + np.exp(-x))), Cost("poly"), "({x} * tl.sigmoid({x}))",
           "SiLU (swish), x * sigmoid(x)", ttmetal=_sfpu("compute_kernel_api.h", "silu_tile")),
    _unary("softplus", _f64(lambda x: np.logaddexp(0.0, x)), Cost("poly"),
           lambda x: f"(tl.maximum({x}, 0.0) + {_log1p_triton(f'tl.exp(-tl.abs({x}))')})", "log(1 + e**x), computed stably",
           ttmetal=_sfpu("eltwise_unary/softplus.h", "softplus_tile",  # beta 1, threshold 20
                            "softplus_tile({x}, 0x3F800000u, 0x3F800000u, 0x41A00000u)")),
    OpDef("pow", 1, _pow_sim, Cost("sfpu", 4), _pow_triton, "x ** n for an integer n known when the kernel compiles "
          "(also `x ** n`)", ttmetal=_sfpu("compute_kernel_api.h", "power_tile", "power_tile({x}, {n})"), params=(Param("n", int),), api=("pow",)),
    OpDef("clamp", 1, lambda x, lo, hi: np.clip(x, F32(lo), F32(hi)), Cost("sfpu", 4),
          "tl.minimum(tl.maximum({x}, {lo}), {hi})", "min(max(x, lo), hi) for lo, hi known when the kernel compiles",
          ttmetal=_sfpu("eltwise_unary/clamp.h", "clamp_tile",
                                                       "clamp_tile({x}, " + BITS.format("{lo}") + ", " + BITS.format("{hi}") + ")"), params=(Param("lo", float), Param("hi", float)), api=("clamp",)),
]


def _cmp_tt(name: str) -> TtMetal:
    return _sfpu("eltwise_binary_sfpu.h", f"{name}_binary_tile", f"{name}_binary_tile({{a}}, {{b}}, {{out}})")


def _binary(name: str, sim: Callable, cost: Cost, triton: str, doc: str, **kw: Any) -> OpDef:
    return OpDef(name, 2, sim, cost, triton, doc, method=False, **kw)


BINARY = [
    _binary("add", np.add, Cost("fpu", 4), "{a} + {b}", "a + b", ttmetal=_sfpu("eltwise_binary_sfpu.h", "add_binary_tile", "add_binary_tile({a}, {b}, {out})", fpu="ELWADD")),
    _binary("sub", np.subtract, Cost("fpu", 4), "{a} - {b}", "a - b", ttmetal=_sfpu("eltwise_binary_sfpu.h", "sub_binary_tile", "sub_binary_tile({a}, {b}, {out})", fpu="ELWSUB")),
    _binary("mul", np.multiply, Cost("fpu", 4), "{a} * {b}", "a * b", ttmetal=_sfpu("eltwise_binary_sfpu.h", "mul_binary_tile", "mul_binary_tile({a}, {b}, {out})", fpu="ELWMUL")),
    _binary("div", np.divide, Cost("sfpu", 4), "{a} / {b}", "a / b", ttmetal=_sfpu("eltwise_binary_sfpu.h", "div_binary_tile", "div_binary_tile({a}, {b}, {out})")),
    _binary("max", np.maximum, Cost("sfpu", 4), "tl.maximum({a}, {b})", "elementwise max (also `max(a, b)`)",
            api=("maximum",), ttmetal=_sfpu("binary_max_min.h", "binary_max_tile", "binary_max_tile({a}, {b}, {out})")),
    _binary("min", np.minimum, Cost("sfpu", 4), "tl.minimum({a}, {b})", "elementwise min (also `min(a, b)`)",
            api=("minimum",), ttmetal=_sfpu("binary_max_min.h", "binary_min_tile", "binary_min_tile({a}, {b}, {out})")),
    _binary("mod", np.mod, Cost("sfpu", 6), "({a} - tl.floor({a} / {b}) * {b})",
            "a % b, the remainder with the sign of b (NumPy's and Python's floored modulo)",
            ttmetal=_sfpu("binary_remainder.h", "remainder_binary_tile", "remainder_binary_tile({a}, {b}, {out})")),
    _binary("ge", _cmp(np.greater_equal), Cost("sfpu", 5), "({a} >= {b})", "1.0 where a >= b, else 0.0", compare=True,
            ttmetal=_cmp_tt("ge")),
    _binary("gt", _cmp(np.greater), Cost("sfpu", 5), "({a} > {b})", "1.0 where a > b, else 0.0", compare=True,
            ttmetal=_cmp_tt("gt")),
    _binary("le", _cmp(np.less_equal), Cost("sfpu", 5), "({a} <= {b})", "1.0 where a <= b, else 0.0", compare=True,
            ttmetal=_cmp_tt("le")),
    _binary("lt", _cmp(np.less), Cost("sfpu", 5), "({a} < {b})", "1.0 where a < b, else 0.0", compare=True,
            ttmetal=_cmp_tt("lt")),
    _binary("eq", _cmp(np.equal), Cost("sfpu", 5), "({a} == {b})", "1.0 where a == b, else 0.0", compare=True,
            ttmetal=_cmp_tt("eq")),
    _binary("ne", _cmp(np.not_equal), Cost("sfpu", 5), "({a} != {b})", "1.0 where a != b, else 0.0", compare=True,
            ttmetal=_cmp_tt("ne")),
]

WHERE = OpDef("where", 3, lambda c, a, b: np.where(c != 0, a, b), Cost("sfpu", 6), "tl.where({c}, {a}, {b})",
              "a where cond != 0, else b (a or b may be numbers)", method=False, api=("where",), ttmetal=_sfpu("eltwise_unary/where.h", "where_tile",
                                                                     "where_tile<DataFormat::Float32>({c}, {a}, {b}, {out})"))

OPS: dict[str, OpDef] = {d.name: d for d in [*UNARY, *BINARY, WHERE]}
API: dict[str, OpDef] = {name: d for d in OPS.values() for name in d.api}  # user-facing name -> entry
BINOP_NAMES = {"add", "sub", "mul", "div", "mod"}  # Python operators + - * / % on blocks
COMPARE_NAMES = {"ge", "gt", "le", "lt", "eq", "ne"}


def broadcast_shape(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """NumPy broadcasting restricted to blocks: a dimension of 1 stretches."""
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return out[0], out[1]


def promote(*dtypes: str) -> str:
    """The format of an op's result: f32 if any block operand is f32, else bf16."""
    return "f32" if "f32" in dtypes else "bf16"


# ---- index ops: run-time integer arithmetic (threads' loop and core indices) ----------------------


@dataclass(frozen=True)
class IndexOp:
    """An integer op: its meaning as a Python function (what folding computes), its Python
    spelling (what the simulator runs) and its spelling in Triton and in C++ (tt-metal kernels).
    The ops are MLIR's: `arith.floordivsi` floors, `arith.divsi` / `arith.remsi` truncate as in C
    (the frontend spells Python's `a % b` as `a - (a // b) * b`, so a thread's `%` floors as Python's)."""

    fold: Callable[[Any, Any], Any]
    python: str
    triton: str
    cpp: str
    divides: bool = False  # a zero divisor is an error (the simulator checks it at run time)


def _trunc_div(a: int, b: int) -> int:
    """C's (and MLIR's arith.divsi) integer division: rounds toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


INDEX_OPS: dict[str, IndexOp] = {
    "arith.addi": IndexOp(lambda a, b: a + b, "({a} + {b})", "({a} + {b})", "({a} + {b})"),
    "arith.subi": IndexOp(lambda a, b: a - b, "({a} - {b})", "({a} - {b})", "({a} - {b})"),
    "arith.muli": IndexOp(lambda a, b: a * b, "({a} * {b})", "({a} * {b})", "({a} * {b})"),
    "arith.floordivsi": IndexOp(lambda a, b: a // b, "({a} // {b})", "_floordiv({a}, {b})", "floordiv({a}, {b})",
                                divides=True),
    "arith.divsi": IndexOp(lambda a, b: _trunc_div(a, b), "_trunc_div({a}, {b})", "({a} // {b})", "({a} / {b})",
                           divides=True),
    "arith.remsi": IndexOp(lambda a, b: a - b * _trunc_div(a, b), "({a} - {b} * _trunc_div({a}, {b}))", "({a} % {b})",
                           "({a} % {b})", divides=True),
    "arith.minsi": IndexOp(min, "min({a}, {b})", "tl.minimum({a}, {b})", "std::min<int32_t>({a}, {b})"),
    "arith.maxsi": IndexOp(max, "max({a}, {b})", "tl.maximum({a}, {b})", "std::max<int32_t>({a}, {b})"),
    "arith.andi": IndexOp(lambda a, b: a and b if isinstance(a, bool) else a & b, "({a} and {b})", "({a} & {b})",
                          "({a} && {b})"),
    "arith.ori": IndexOp(lambda a, b: a or b if isinstance(a, bool) else a | b, "({a} or {b})", "({a} | {b})",
                         "({a} || {b})"),
    "arith.xori": IndexOp(lambda a, b: a != b if isinstance(a, bool) else a ^ b, "({a} != {b})", "({a} ^ {b})",
                          "({a} != {b})"),
}
# comparison predicates of arith.cmpi (signed forms; tilegrid's integers are signed)
CMPI_OPS: dict[int, tuple[Callable[[Any, Any], bool], str]] = {
    0: (lambda a, b: a == b, "=="), 1: (lambda a, b: a != b, "!="), 2: (lambda a, b: a < b, "<"),
    3: (lambda a, b: a <= b, "<="), 4: (lambda a, b: a > b, ">"), 5: (lambda a, b: a >= b, ">="),
}
# arith.cmpi predicate -> its C / Python operator (the unsigned ones as signed: indices are never negative)
CMPI_SYMBOLS = {k: sym for k, (_, sym) in CMPI_OPS.items()} | {6: "<", 7: "<=", 8: ">", 9: ">="}
FLOAT_OPS: dict[str, tuple[Callable[[float, float], float], str]] = {
    "arith.addf": (lambda a, b: a + b, "+"), "arith.subf": (lambda a, b: a - b, "-"),
    "arith.mulf": (lambda a, b: a * b, "*"), "arith.divf": (lambda a, b: a / b, "/"),
}

