"""What each raw SFPU routine (sfpu.py) must compute: its float64 reference, its error bound, its special values,
and the inputs that probe it — shared by the tests (model and wolfpine) and the accuracy benchmark.

Error is measured in units in the last place of the DST format (f32: 24 significant bits, bf16: 8) at the
reference's magnitude, against float64; `exact` is agreement with the reference rounded to nearest even.  The SFPU
flushes denormals (inputs read as zero, arithmetic results become +0, a bf16 DST flushes stores), so results below
2^-126 are judged by absolute error instead (`FTZ`), and denormal inputs by the value the SFPU reads (0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_dtypes
import numpy as np

from tilegrid.numerics import EXP_APPROX_BIAS, EXP_APPROX_FLOOR, EXP_APPROX_SLOPE
from tilegrid.ops import OPS
from tilegrid.targets.ttmetal.sfpu_model import fma

TINY = float(np.finfo(np.float32).tiny)  # 2^-126, the smallest normal f32
F32 = np.float32


def to_format(x: np.ndarray, fp32: bool) -> np.ndarray:
    """float64/float32 values rounded to nearest even to the DST format (as float32); a bf16 NaN is +NaN (ttnn's
    host conversion drops a NaN's sign)."""
    with np.errstate(all="ignore"):
        x = np.asarray(x, np.float64).astype(np.float32)
    if fp32:
        return x
    return np.where(np.isnan(x), np.float32(np.nan), x.astype(ml_dtypes.bfloat16).astype(np.float32))


def ftz(x: np.ndarray) -> np.ndarray:
    """Denormal values as the SFPU reads them: signed zero."""
    x = np.asarray(x, np.float32)
    return np.where(np.abs(x) < TINY, np.copysign(np.float32(0), x), x).astype(np.float32)


def ulps(y: np.ndarray, ref: np.ndarray, fp32: bool, base: np.ndarray | None = None) -> np.ndarray:
    """|y - ref| in units of the format's last place at ref's magnitude, or at `base`'s (NaN where ref is not finite
    or is below 2^-126, or y is NaN)."""
    with np.errstate(all="ignore"):
        ref, y = np.asarray(ref, np.float64), np.asarray(y, np.float64)
        mag = np.abs(ref) if base is None else np.maximum(np.abs(ref), base)
        ok = np.isfinite(ref) & (mag >= TINY) & np.isfinite(y)
        u = np.exp2(np.floor(np.log2(np.where(ok, mag, 1.0))) - (23 if fp32 else 7))
        return np.where(ok, np.abs(y - ref) / u, np.nan)


def _order(x: np.ndarray) -> np.ndarray:
    """SFPSWAP's total order of f32 values as integers: -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.int64)
    return np.where(b & 0x80000000, -(b & 0x7FFFFFFF) - 1, b)


def _compare(fn: Callable) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A comparison as the SFPU decides it: from d = a - b, which flushes to 0 below 2^-126 (equal infinities, whose
    difference is NaN, are equal)."""

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            d = np.where(a == b, 0.0, a - b)
            d = np.where(np.abs(d) < TINY, 0.0, d)
            return fn(d, 0.0).astype(np.float64)

    return ref


COMPARES = ("lt", "le", "gt", "ge", "eq", "ne")


@dataclasses.dataclass(frozen=True)
class Spec:
    """reference: float64 arrays in -> float64 out (on the values the SFPU reads); bound: the largest error in ulps of
    the format over results >= 2^-126; specials: (inputs, expected output) exactly (NaN matches NaN, -0 matches
    +0); domain: how test inputs are drawn for each operand."""

    reference: Callable[..., np.ndarray]
    bound: float
    specials: list[tuple[tuple[float, ...], float | tuple[float, float]]]  # expected, or (with f32, with bf16 DST)
    domain: str = "wide"
    note: str = ""
    arithmetic: bool = True  # reads its inputs as numbers (denormals are zero); else moves or compares bit patterns
    ulp_of: Callable[..., np.ndarray] | None = None  # the magnitude whose ulp measures the error (default: |ref|)


INF, NAN = float("inf"), float("nan")
FAITHFUL = 0.999  # under 1 ulp: the result is one of the two floats around the exact value (measured max over 8M
#                   random inputs: exp 0.90, recip 0.89, log 0.94 ulp)
MAD_A, MAD_B = 0.3, -1.5  # the scalars the mad routine is tested with
EXP_SCALE = 0.125  # and the scale of the scaled exp
FILL_VALUE = -1e30  # and the value of fill (FlashAttention's running-max start; not a bf16)
FILL_F32 = float(np.float32(FILL_VALUE))
FILL_BF16 = float(np.float32(FILL_VALUE).astype(ml_dtypes.bfloat16))

SPECS: dict[str, Spec] = {
    "exp": Spec(np.exp, FAITHFUL, [((0.0,), 1.0), ((-0.0,), 1.0), ((INF,), INF), ((-INF,), 0.0), ((NAN,), NAN),
                              ((89.0,), INF), ((-104.0,), 0.0), ((1e-40,), 1.0), ((3e38,), INF), ((-3e38,), 0.0)],
                "exp", "results below 2^-126 flush to +0"),
    "exp_scaled": Spec(lambda x: np.exp(x * np.float64(EXP_SCALE)), FAITHFUL,
                       [((0.0,), 1.0), ((INF,), INF), ((-INF,), 0.0), ((NAN,), NAN)], "exp8",
                       "exp(x * 0.125); the product is rounded to f32 first, as the simulator does"),
    "exp_approx": Spec(lambda x: _exp_approx_fused(x), 0.0,
                       [((-INF,), (8.494783394614187e-39, 0.0)), ((0.0,), (0.978515625, 0.9765625)),
                        ((1.0,), (2.796875, 2.796875))], "exp",
                       "tilegrid.numerics.exp_approx with t = slope x + bias from the SFPU's multiply-add (one "
                       "rounding; numerics rounds the product and the sum): within 3.1% of e^x"),
    "recip": Spec(lambda x: 1.0 / x, FAITHFUL, [((0.0,), INF), ((-0.0,), -INF), ((INF,), 0.0), ((-INF,), -0.0),
                                            ((NAN,), NAN), ((1e-40,), INF), ((3e38,), 0.0), ((1.0,), 1.0),
                                            ((-4.0,), -0.25)], "wide", "denormal inputs read as +-0 (-> +-inf)"),
    "log": Spec(np.log, FAITHFUL, [((0.0,), -INF), ((-0.0,), -INF), ((INF,), INF), ((-INF,), NAN), ((NAN,), NAN),
                              ((-1.0,), NAN), ((1.0,), 0.0), ((1e-40,), -INF)], "positive",
                "denormal inputs read as 0 (-> -inf)"),
    "rsqrt": Spec(lambda x: 1.0 / np.sqrt(x), 1.15, [((0.0,), INF), ((-0.0,), -INF), ((INF,), 0.0),
                                                      ((-1.0,), NAN), ((NAN,), NAN), ((4.0,), 0.5), ((1e-40,), INF)],
                  "positive", "denormal inputs read as +-0 (-> +-inf); not quite faithful: the last Newton step "
                  "rounds x y (measured max 1.10 ulp)"),
    "sqrt": Spec(np.sqrt, FAITHFUL, [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), INF), ((-1.0,), NAN), ((NAN,), NAN),
                                     ((4.0,), 2.0), ((2.0,), (1.4142135381698608, 1.4140625)), ((1e-40,), 0.0)],
                 "positive",
                 "denormal inputs read as +-0"),
    "max": Spec(lambda a, b: np.where(_order(a) >= _order(b), a, b), 0.0, [((1.0, NAN), NAN), ((NAN, -2.0), NAN), ((-0.0, 0.0), 0.0), ((-INF, 3.0), 3.0)],
                "wide", "a positive NaN propagates (the SFPSWAP order puts it above +inf)", False),
    "min": Spec(lambda a, b: np.where(_order(a) <= _order(b), a, b), 0.0,
                [((1.0, -NAN), (NAN, 1.0)), ((-0.0, 0.0), -0.0), ((INF, 3.0), 3.0)], "wide",
                "a negative NaN propagates (bf16 tensors have none: ttnn makes every NaN positive)", False),
    "where": Spec(lambda c, a, b: np.where(c != 0, a, b), 0.0, [((0.0, 1.0, 2.0), 2.0), ((-0.0, 1.0, 2.0), 2.0),
                                                                ((NAN, 1.0, 2.0), 1.0), ((5.0, NAN, 2.0), NAN)],
                  "where", "c != 0 is decided on c's bits, so a denormal c selects a", False),
    "mad": Spec(lambda x: x * float(np.float32(MAD_A)) + MAD_B, 1.0, [((INF,), INF), ((NAN,), NAN), ((0.0,), MAD_B)], "wide",
                "x * 0.3 - 1.5, one rounding; the product keeps 27 bits, so the error is counted in ulps of "
                "max(|x a|, |b|, |result|)", ulp_of=lambda x: np.maximum(np.abs(x * MAD_A), abs(MAD_B))),
    "neg": Spec(np.negative, 0.0, [((0.0,), -0.0), ((INF,), -INF), ((NAN,), NAN)], "wide", arithmetic=False),
    "abs": Spec(np.abs, 0.0, [((-0.0,), 0.0), ((-INF,), INF), ((NAN,), NAN)], "wide", arithmetic=False),
    "relu": Spec(lambda x: np.maximum(x, 0.0), 0.0, [((-0.0,), 0.0), ((-INF,), 0.0), ((INF,), INF), ((NAN,), NAN)],
                 "wide", arithmetic=False),
    **{op: Spec(fn, 1.0, sp, "wide", f"a {sym} b by one SFPMAD (one rounding; the product keeps 27 bits): error "
                "counted in ulps of max(|a|, |b|, |result|)", ulp_of=ulp)
       for op, fn, sym, sp, ulp in [
           ("add", np.add, "+", [((1.0, 2.0), 3.0), ((INF, -INF), NAN), ((NAN, 1.0), NAN), ((-0.0, 0.0), 0.0)],
            lambda a, b: np.maximum(np.abs(a), np.abs(b))),
           ("sub", np.subtract, "-", [((1.0, 2.0), -1.0), ((INF, INF), NAN), ((1.0, NAN), NAN), ((5.0, 5.0), 0.0)],
            lambda a, b: np.maximum(np.abs(a), np.abs(b))),
           ("mul", np.multiply, "*", [((1.5, 2.0), 3.0), ((INF, 0.0), NAN), ((NAN, 1.0), NAN), ((-2.0, 0.5), -1.0)],
            lambda a, b: np.abs(a * b))]},
    **{op: Spec(_compare(fn), 0.0, sp, "pairs",
                "1.0 / 0.0 from the sign and zeroness of a - b; NaN compares unordered; operands within 2^-126 of "
                "each other (the SFPU flushes their difference) compare equal")
       for op, fn, sp in [
           ("lt", np.less, [((1.0, 2.0), 1.0), ((2.0, 1.0), 0.0), ((-0.0, 0.0), 0.0), ((NAN, 1.0), 0.0),
                            ((INF, INF), 0.0), ((-INF, INF), 1.0)]),
           ("le", np.less_equal, [((1.0, 2.0), 1.0), ((2.0, 1.0), 0.0), ((-0.0, 0.0), 1.0), ((NAN, NAN), 0.0),
                                  ((INF, INF), 1.0), ((3.0, 3.0), 1.0)]),
           ("gt", np.greater, [((1.0, 2.0), 0.0), ((2.0, 1.0), 1.0), ((0.0, -0.0), 0.0), ((1.0, NAN), 0.0),
                               ((INF, -INF), 1.0)]),
           ("ge", np.greater_equal, [((1.0, 2.0), 0.0), ((2.0, 1.0), 1.0), ((0.0, -0.0), 1.0), ((NAN, 1.0), 0.0),
                                     ((-INF, -INF), 1.0)]),
           ("eq", np.equal, [((1.0, 1.0), 1.0), ((1.0, 2.0), 0.0), ((0.0, -0.0), 1.0), ((NAN, NAN), 0.0),
                             ((INF, INF), 1.0), ((INF, -INF), 0.0)]),
           ("ne", np.not_equal, [((1.0, 1.0), 0.0), ((1.0, 2.0), 1.0), ((0.0, -0.0), 0.0), ((NAN, NAN), 1.0),
                                 ((INF, INF), 0.0), ((1.0, NAN), 1.0)])]},
    "fill": Spec(lambda x: np.full(np.shape(x), float(np.float32(FILL_VALUE))), 0.0, [((0.0,), (FILL_F32, FILL_BF16))],
                 "wide", "the value in the DST format (a bf16 DST: rounded to nearest even)", False),
    "copy": Spec(lambda x: x, 0.0, [((NAN,), NAN), ((-0.0,), -0.0), ((INF,), INF)], "wide", arithmetic=False),
}

# exact agreement with the simulator's own function (ops.py `sim`), apart from flushed denormals and NaN signs
SIM_OPS = {"exp": "exp", "exp_scaled": "exp", "exp_approx": "exp_approx", "recip": "recip", "log": "log",
           "rsqrt": "rsqrt", "sqrt": "sqrt",
           "max": "max", "min": "min", "where": "where", "neg": "neg", "abs": "abs", "relu": "relu",
           **{op: op for op in ("add", "sub", "mul", "lt", "le", "gt", "ge", "eq", "ne")}}


def routine_params(name: str) -> tuple[str, dict]:
    """The op-table name and parameters a spec name stands for."""
    if name == "exp_scaled":
        return "exp", {"scale": EXP_SCALE}
    if name == "mad":
        return "mad", {"a": MAD_A, "b": MAD_B}
    if name == "fill":
        return "fill", {"value": FILL_VALUE}
    return name, {}


def inputs(name: str, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """n test values per operand: the spec's special values first, then its domain drawn at random — normals at
    several scales, magnitudes log-uniform over the whole f32 range with random signs, denormals, and the edges
    of the op (exp's overflow and underflow thresholds, integers and halves)."""
    spec = SPECS[name]
    arity = len(spec.specials[0][0])
    cols = [np.array([s[0][k] for s in spec.specials], np.float64) for k in range(arity)]
    m = n - len(cols[0])
    out = []
    for k in range(arity):
        kind = spec.domain if not (spec.domain in ("where", "pairs") and k > 0) else "wide"
        out.append(np.concatenate([cols[k], _draw(kind, rng, m)]).astype(np.float32))
    if spec.domain == "pairs":  # comparisons: a third of the pairs equal, some of them +-0
        same = np.flatnonzero(rng.random(m) < 1 / 3) + len(cols[0])
        out[1][same] = out[0][same]
        zero = same[: same.size // 8]
        out[0][zero], out[1][zero] = 0.0, -0.0
    return out


def _draw(kind: str, rng: np.random.Generator, m: int) -> np.ndarray:
    q = m // 8
    if kind in ("exp", "exp8"):
        s = 8.0 if kind == "exp8" else 1.0
        parts = [rng.standard_normal(q), rng.standard_normal(q) * 10, rng.uniform(-110, 95, 3 * q),
                 rng.uniform(85, 90, q // 2) * rng.choice([-1.0, 1.0], q // 2),
                 rng.uniform(-104, -86, q), rng.integers(-100, 90, q) * 0.5]
        return _fill(np.concatenate(parts) * s, rng, m)
    if kind == "pairs":
        kind = "wide"
    if kind == "where":
        c = rng.standard_normal(m)
        c[rng.random(m) < 0.5] = 0.0
        return c
    mag = np.exp2(rng.uniform(-126, 128, 4 * q))
    parts = [rng.standard_normal(2 * q), rng.standard_normal(q) * 100, mag,
             rng.uniform(0, 1, q) * TINY]  # denormals
    x = _fill(np.concatenate(parts), rng, m)
    signs = rng.choice([-1.0, 1.0], m)
    return np.abs(x) if kind == "positive" else x * signs


def _fill(x: np.ndarray, rng: np.random.Generator, m: int) -> np.ndarray:
    x = np.asarray(x, np.float64)[:m]
    if x.size < m:
        x = np.concatenate([x, rng.standard_normal(m - x.size)])
    return rng.permutation(x)


def _exp_approx_fused(x: np.ndarray) -> np.ndarray:
    """numerics.exp_approx's formula with slope * x + bias as the SFPU's one multiply-add computes it (one rounding
    of a product kept to 27 bits: sfpu_model's SFPMAD, itself checked against float64 and wolfpine)."""
    x = np.maximum(np.asarray(x, np.float32), np.float32(EXP_APPROX_FLOOR))
    with np.errstate(all="ignore"):
        t = fma(x.view(np.uint32), np.full(x.shape, np.float32(EXP_APPROX_SLOPE)).view(np.uint32),
                 np.full(x.shape, np.float32(EXP_APPROX_BIAS)).view(np.uint32)).view(np.float32).astype(np.float64)
        n = np.where(np.isnan(t), 65535, np.minimum(np.floor(np.abs(t) + 0.5), 65535)).astype(np.uint32)
    return (n << np.uint32(15)).view(np.float32).astype(np.float64)


def reference(name: str, xs: list[np.ndarray], fp32: bool) -> np.ndarray:
    """The float64 reference on the values the SFPU reads: inputs in the DST format, denormals as zero for
    arithmetic.  exp_approx: in the DST format already (its rounding is its definition)."""
    spec = SPECS[name]
    read = [to_format(x, fp32).astype(np.float64) for x in xs]
    if spec.arithmetic:
        read = [ftz(r).astype(np.float64) for r in read]
    with np.errstate(all="ignore"):
        if name == "exp_scaled":  # the product is an f32 operation of its own (SFPMAD, one rounding)
            return np.exp(ftz((read[0] * np.float64(np.float32(EXP_SCALE))).astype(np.float32)).astype(np.float64))
        if name == "fill":
            return to_format(spec.reference(*read), fp32).astype(np.float64)
        if name == "exp_approx" and not fp32:  # the bf16 routine caps x at 89 (else n = 65535 rounds into the sign)
            y = _exp_approx_fused(np.minimum(read[0], 89.0))
            return ftz(to_format(y, False)).astype(np.float64)
        return np.asarray(spec.reference(*read), np.float64)


def check(name: str, xs: list[np.ndarray], y: np.ndarray, fp32: bool) -> dict:
    """How `y` (a routine's output on inputs xs) meets its spec: max_ulp / mean_ulp over normal results, the
    fraction equal to the rounded reference, the largest absolute error where the reference is below 2^-126,
    the count of NaN / infinity disagreements, and the specials (the first inputs) that came out wrong."""
    spec = SPECS[name]
    ref = reference(name, xs, fp32)
    want = to_format(ref, fp32)  # rounded: overflow is an infinity here
    if not fp32:
        want = ftz(want)  # a bf16 DST flushes what it stores
    y = np.asarray(y, np.float32)
    with np.errstate(all="ignore"):
        base = None if spec.ulp_of is None else spec.ulp_of(*[to_format(x, fp32).astype(np.float64) for x in xs])
    u = ulps(y, ref, fp32, base)
    with np.errstate(invalid="ignore"):
        u = np.where(np.abs(ref) < TINY, np.nan, u)  # results below 2^-126 (flushed): judged by `small_abs`
    with np.errstate(all="ignore"):
        finite = np.isfinite(want) & np.isfinite(ref)
        small = finite & (np.abs(ref) < TINY)
        nan_bad = np.isnan(y) != np.isnan(want)
        inf_bad = (np.isinf(y) | np.isinf(want)) & (y != want) & ~np.isnan(want)
        exact = (y == want) | (np.isnan(y) & np.isnan(want))
    sp = []
    for k, (args, expected) in enumerate(spec.specials):
        e = expected if isinstance(expected, float) else expected[0 if fp32 else 1]
        if not (y[k] == e or (np.isnan(y[k]) and np.isnan(e))):
            sp.append((args, e, float(y[k])))
    normal = u[~np.isnan(u)]
    return {"max_ulp": float(normal.max(initial=0.0)), "mean_ulp": float(normal.mean()) if normal.size else 0.0,
            "exact": float(exact.mean()), "small_abs": float(np.abs(y[small] - ref[small]).max(initial=0.0)),
            "nan_mismatch": int(nan_bad.sum()), "inf_mismatch": int(inf_bad.sum()), "specials_wrong": sp,
            "n": int(y.size)}


def simulated(name: str, xs: list[np.ndarray], fp32: bool) -> np.ndarray:
    """What tilegrid's functional simulator computes for the same inputs (the op table's `sim`, float32, rounded to
    the DST format to nearest even); mad is the simulator's multiply then add, each rounded."""
    read = [to_format(x, fp32) for x in xs]
    with np.errstate(all="ignore"):
        if name == "mad":
            y = OPS["add"].sim(OPS["mul"].sim(read[0], np.float32(MAD_A)), np.float32(MAD_B))
        elif name == "exp_scaled":
            y = OPS["exp"].sim(read[0] * np.float32(EXP_SCALE))
        elif name == "fill":
            y = np.full(read[0].shape, np.float32(FILL_VALUE))
        elif name == "copy":
            y = read[0]
        else:
            y = OPS[SIM_OPS[name]].sim(*read)
    return to_format(np.asarray(y, np.float32), fp32)


def versus_sim(name: str, xs: list[np.ndarray], y: np.ndarray, fp32: bool) -> dict:
    """Where `y` differs from the simulator: the count; how many of those involve a denormal (the simulator's result
    or an input), which the SFPU flushes or reads as zero; how many a NaN input (max / min: the SFPU orders a NaN by
    its sign, NumPy propagates it); and the largest remaining difference in ulps of the format."""
    s = simulated(name, xs, fp32)
    y = np.asarray(y, np.float32)
    read = [to_format(x, fp32) for x in xs]
    with np.errstate(all="ignore"):
        same = (y == s) | (np.isnan(y) & np.isnan(s))
        denormal = (np.abs(s) < TINY) & (s != 0)
        denormal |= (y == 0) & (np.abs(s) <= 2 * TINY)  # flushed below 2^-126 before a bf16 rounding up to it
        for x in read:
            denormal |= (np.abs(x) < TINY) & (x != 0)
        nan_in = np.zeros(y.shape, bool)
        for x in read:
            nan_in |= np.isnan(x)
        rest = ~same & ~denormal & ~nan_in
        u = ulps(y[rest], s[rest].astype(np.float64), fp32)
    return {"differ": int((~same).sum()), "denormal": int((~same & denormal).sum()),
            "nan_input": int((~same & nan_in & ~denormal).sum()), "other": int(rest.sum()),
            "other_nan": int((rest & (np.isnan(y) != np.isnan(s))).sum()),
            "other_max_ulp": float(np.nanmax(u, initial=0.0)), "n": int(y.size)}
