"""tilegrid's own vector-unit (SFPU) routines for the tt-metal target, one per op-table entry, as raw Tensix
instructions (tt-llk's TTI_SFP* macros) instead of tt-metal's sfpi-compiled kernel-API calls.

Why: tt-metal's SFPU ops (`exp_tile`, `recip_tile`, ...) are C++ on sfpi's `vFloat`, which only Tenstorrent's sfpi
compiler can build; it cannot be installed here, so those calls cannot run on the simulated Wormhole.  The SFPU
itself can be driven without sfpi: each routine below is a list of sfpu_isa.Insn written from the ISA documents
(tenstorrent/tt-isa-documentation, WormholeB0 TensixCoprocessor) and emitted as C++ the stand-in compiler builds.

    r = routine("exp", mode="raw", fp32_dest=False, scale=0.125)
    r.definitions   # C++ to put once at the top of the compute kernel (several routines' texts concatenate)
    r.init          # statement to run once before the first call ("" for raw routines)
    r.call(0)       # "MATH((tilegrid_sfpu_exp_...(0)));": exp(DST[0] * 0.125) in place
    routine("max", mode="raw").call(0, 1, 0)   # DST[0] = max(DST[0], DST[1])

mode="api" (the default) gives tt-metal's kernel-API call instead, for machines with the real sfpi.  Which one a
compute kernel gets, per op, is decided in spelling.py (the kernel option `sfpu=`; on the simulated device the raw
routine wherever one exists).

DST addressing (Wormhole B0, ISA SFPLOAD.md / Dst.md): a 32x32 tile is 64 DST rows of 16 datums (4 faces x 16
rows); one SFPLOAD reads 4 rows x 8 columns (the even or the odd ones) = 32 lanes, so a tile is 32 vectors at
row-counter steps of 2 (INCRWC), the counter starting at the tile's base (DEST_TARGET_REG_CFG_MATH_Offset, set as
tt-llk's _llk_math_eltwise_sfpu_start_ does).  Each routine: `setup` once per tile (constants into LRegs 4-7 and,
through SFPCONFIG, 11-14), `body` per vector, `teardown`.  Routines clobber LRegs 0-7 and 12-14 and restore 11
(sfpi's -1.0): an API op's `*_init` must be re-run after a raw routine.  Numerics: sfpu_model.py executes the same
instructions; docs/ttmetal_sfpu.md states each routine's bound against float64 and tilegrid's simulator.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import numpy as np

from tilegrid.ops import OPS
from tilegrid.targets.ttmetal import sfpu_isa as I
from tilegrid.targets.ttmetal.sfpu_isa import Insn

VECTORS_PER_TILE = 32  # 1024 datums / 32 lanes
NAN = 0x7FC0  # bf16 pattern of the quiet NaN a routine writes (survives a bf16 DST's truncation)
INF = 0x7F80
K_NAN = 0x80800000  # -0x7F800000: (|x| - 1) + K_NAN >= 0 exactly when x is a NaN


@dataclasses.dataclass(frozen=True)
class Program:
    """One routine as SFPU instructions.  operands: the DST tiles the C++ function takes (unary ops work in place on
    one; binary take a, b, out; where takes c, a, b, out).  args: run-time uint32 parameters (C++ names)."""

    name: str
    doc: str
    setup: tuple[Insn, ...]
    body: tuple[Insn, ...]
    teardown: tuple[Insn, ...] = ()
    operands: int = 1
    args: tuple[str, ...] = ()

    @property
    def instructions(self) -> int:
        """SFPU instructions per 32-lane vector (NOPs included: they are issue slots)."""
        return I.count(list(self.body))

    def per_tile(self) -> int:
        """SFPU instructions per 32x32 tile, setup and teardown included."""
        return VECTORS_PER_TILE * self.instructions + I.count(list(self.setup) + list(self.teardown))


@dataclasses.dataclass(frozen=True)
class SfpuRoutine:
    """What the code generator needs to apply one op to DST tiles: `definitions` once at the top of the compute
    kernel, `init` once before use, `call(*dst)` per application (unary: call(i) in place; binary: call(a, b, out);
    where: call(c, a, b, out)); `program`: a raw routine's instructions (for sfpu_model and the cost model)."""

    op: str
    mode: str
    definitions: str
    init: str
    call: Callable[..., str]
    program: Program | None = None


# ---- shared pieces -------------------------------------------------------------------------------------------------


def _persist(values: list[tuple[int, float | int | str]]) -> list[Insn]:
    """Constants that stay in LRegs for a whole tile: LReg 4-7 by SFPLOADI, 11-14 through LReg[0] and SFPCONFIG.
    A value is a float, an int (a bit pattern) or a C++ expression (the bits of a run-time f32)."""
    out: list[Insn] = []
    for reg, v in values:
        dst = 0 if reg >= 11 else reg
        if isinstance(v, float):
            out += I.const(dst, v)
        else:
            out += I.const_bits(dst, v, note="run-time f32" if isinstance(v, str) else
                                "-0x7f800000 (NaN probe)" if v == K_NAN else f"0x{v:08x}")
        if reg >= 11:
            out.append(I.config(reg))
    return out


RESTORE_L11 = Insn("SFPCONFIG", vd=11, mod=1, note="LReg[11] = -1.0 again (sfpi's constant)")


def _nan_probe(src: int, tmp: int) -> list[Insn]:
    """tmp = (|src| - 1) + K_NAN (LReg[11]): >= 0 exactly for NaN lanes (|src| > 0x7F800000 as integers)."""
    return [I.setsgn(src, tmp, sign=0, note="|y| as bits"), I.iadd_imm(tmp, tmp, -1),
            I.iadd(11, tmp, note="NaN probe: >= 0 iff NaN")]


def _nan_fix(probe: int, y: int) -> list[Insn]:
    """y = NaN where the probe says so (after any bf16 rounding, which would turn a NaN into an infinity)."""
    return [I.setcc(probe, I.SETCC_GTE0, note="lanes: NaN"), I.loadi(y, I.LOADI_BF16, NAN, note="y = NaN"),
            I.encc()]


def _round_bf16(y: int, fp32_dest: bool) -> list[Insn]:
    """A bf16 DST keeps the top 16 bits of what SFPSTORE writes (truncation): round to nearest first (ties away from
    zero; NaN becomes an infinity, so NaN fixes come after)."""
    return [] if fp32_dest else [I.stoch_rnd(y, y, I.STOCHRND_FP16B, note="round to bf16")]


def _f32(x: float) -> float:
    return float(np.float32(x))


def _bf16(x: float) -> float:
    b = I.f32_bits(x)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return I.bits_f32(b)


def _scalar(v: float | str | None) -> float | str | None:
    """A scalar parameter: a float known at compile time, or a C++ expression for its f32 bits at run time."""
    return v if v is None or isinstance(v, str) else _f32(v)


# ---- exp -----------------------------------------------------------------------------------------------------------

LOG2E = _f32(1.4426950408889634)
LN2_HI = _bf16(0.6931471805599453)  # 0.69140625: 8 significant bits, so n * LN2_HI is exact for |n| <= 255
LN2_LO = _f32(0.6931471805599453 - LN2_HI)
MAGIC = 12582912.0  # 1.5 * 2**23: t = y + MAGIC rounds y to an integer n, which is t's low mantissa bits
# e**r = 1 + r + r^2 (C2 + r (C3 + r (C4 + r (C5 + r C6)))) on |r| <= ln(2)/2: relative error 3.1e-9 (0.03 ulp),
# fitted by Lawson-iterated least squares on relative error; C6 rounded to bf16 (loaded by one SFPLOADI), the
# others refitted to it and rounded to f32.
EXP_C = (0.4999999403953552, 0.1666651964187622, 0.04166846722364426, 0.008368834853172302, _bf16(0.0013814320))


def _exp(fp32_dest: bool, scale: float | str | None) -> Program:
    """exp(x * scale): n = round(x log2 e) by the 1.5*2^23 trick, r = x - n ln2 in two steps (Cody-Waite), e^r by a
    degree-6 polynomial, then n added to the result's exponent.  Overflow (exponent >= 255) gives +inf, underflow
    (exponent <= 0: results below 2^-126, which the SFPU flushes) +0, NaN stays NaN."""
    setup = _persist([(4, LOG2E), (5, -LN2_LO), (6, EXP_C[3]), (7, EXP_C[2]), (12, EXP_C[1]), (13, EXP_C[0]),
                      (11, K_NAN)] + ([(14, scale)] if scale is not None else []))
    x, t, nf, p = 0, 1, 3, 2
    body = [I.load(x, note="x")]
    if scale is not None:
        body.append(I.mad(x, 14, I.LZERO, x, note="x *= scale"))
    body += [
        I.loadi(t, I.LOADI_BF16, I.f32_bits(MAGIC) >> 16, note="1.5*2^23"),
        I.mad(x, 4, t, t, note="t = x*log2(e) + 1.5*2^23: n = round(x log2 e) in t's low bits"),
        I.loadi(nf, I.LOADI_BF16, I.f32_bits(-MAGIC) >> 16, note="-1.5*2^23"),
        I.mad(t, I.LONE, nf, nf, note="n as a float: t - 1.5*2^23 (exact)"),
        I.loadi(p, I.LOADI_BF16, I.f32_bits(-LN2_HI) >> 16, note="-ln2_hi"),
        I.mad(nf, p, x, x, note="r = x - n*ln2_hi (exact)"),
        I.loadi(p, I.LOADI_BF16, I.f32_bits(EXP_C[4]) >> 16, note="C6"),
        I.mad(nf, 5, x, x, note="r -= n*ln2_lo"),
        # the NaN probe on t (NaN exactly when x is) fills the slots where Horner's steps wait on each other
        I.setsgn(t, nf, sign=0, note="|t| as bits"),
        I.mad(p, x, 6, p, note="Horner: C6 r + C5"),
        I.iadd_imm(nf, nf, -1, note="|t| - 1"),
        I.mad(p, x, 7, p, note="... + C4"),
        I.iadd(11, nf, note="NaN probe: >= 0 iff NaN"),
        I.mad(p, x, 12, p, note="... + C3"),
        I.setcc(nf, I.SETCC_GTE0, note="lanes: x is NaN"), Insn("SFPPUSHC", note="remember them"), I.encc(),
        I.mad(p, x, 13, p, note="... + C2"),
        I.loadi(nf, I.LOADI_BF16, (-0x4B400000 & 0xFFFFFFFF) >> 16, note="-bits(1.5*2^23)"),
        I.mad(p, x, I.LONE, p, note="... + 1"),
        I.iadd(nf, t, note="n = bits(t) - bits(1.5*2^23), an integer"),
        I.mad(p, x, I.LONE, p, note="p = e^r = ... * r + 1, in [0.7, 1.42]"),
        I.exexp(p, x, note="p's biased exponent (126 or 127)"),
        I.iadd(x, t, note="e = the result's biased exponent"),
        I.mov(t, nf, note="e"),
        I.setexp(p, nf, note="y = p * 2^n: p with exponent field e"),
        I.iadd_imm(t, t, -1, cc=I.CC_LT0, note="lanes: e <= 0 (underflow)"),
        I.mov(I.LZERO, nf, note="y = 0"),
        I.encc(),
        I.iadd_imm(t, t, -254, cc=I.CC_GTE0, note="lanes: e >= 255 (overflow, +inf input)"),
        I.loadi(nf, I.LOADI_BF16, INF, note="y = +inf"),
        I.encc(),
        *_round_bf16(nf, fp32_dest),
        Insn("SFPPOPC", note="lanes: x is NaN"),
        I.loadi(nf, I.LOADI_BF16, NAN, note="y = NaN"),
        I.encc(),
        I.store(nf),
    ]
    return Program("exp", "exp(x" + (" * scale" if scale is not None else "") + ")", tuple(setup + [I.encc(True)]),
                   tuple(I.schedule(body)), (I.encc(False), RESTORE_L11))


# ---- the fast exp of tt-metal's approximate mode -------------------------------------------------------------------

EXP_APPROX_SLOPE, EXP_APPROX_BIAS, EXP_APPROX_FLOOR = 369.329925537109375, 32500.818359375, -88.5


def _exp_approx(fp32_dest: bool, scale: float | str | None) -> Program:
    """tilegrid.numerics.exp_approx (Schraudolph: the float's bits built by one multiply-add): max(x, -88.5),
    t = slope*x + bias, n = round-half-away(|t|) capped at 65535 (SFPSTOCHRND to uint16), y = n << 15.  A bf16 DST
    rounds y to nearest even in integers (ties are common: y's bit 15 is n's lowest bit) and caps x at 89.0 (else
    n = 65535, a NaN pattern, would round into the sign bit)."""
    setup = _persist([(4, EXP_APPROX_SLOPE), (5, EXP_APPROX_BIAS)] + ([(14, scale)] if scale is not None else []))
    x, b = 0, 1
    body = [I.load(x, note="x")]
    if scale is not None:
        body.append(I.mad(x, 14, I.LZERO, x, note="x *= scale"))
    body += [I.loadi(b, I.LOADI_BF16, I.f32_bits(EXP_APPROX_FLOOR) >> 16, note="-88.5"),
             I.swap(x, b, note="x = max(x, -88.5)")]
    if not fp32_dest:
        body += [I.loadi(b, I.LOADI_BF16, I.f32_bits(89.0) >> 16), I.swap(b, x, note="x = min(x, 89)")]
    body += [I.mad(x, 4, 5, x, note="t = slope*x + bias"),
             I.stoch_rnd(x, x, I.STOCHRND_UINT16, note="n = round(|t|), at most 65535"),
             I.shft(x, 15, note="y = n << 15: n's top bits are the exponent")]
    if not fp32_dest:
        body += [I.mov(x, b), I.shft(b, 15), I.shft(b, -31, note="bit 16 of y"), I.shft(b, 15),
                 I.iadd(b, x, note="y += bit16 << 15: a tie rounds to even")]
    body.append(I.store(x))
    return Program("exp_approx", "exp_approx(x" + (" * scale" if scale is not None else "") + ")", tuple(setup),
                   tuple(I.schedule(body)))


# ---- reciprocal ----------------------------------------------------------------------------------------------------

# 1/m on m in [1, 2], as a quadratic in -m: relative error 1.0e-2; two Newton steps bring it to 1e-8.
RECIP_Q = (2.1212122440338135, 1.4545453786849976, 0.3232322335243225)


def _recip(fp32_dest: bool) -> Program:
    """1/x: m = |x| with exponent 0 (in [1, 2)), y = q(m) ~ 1/m, two Newton-Raphson steps y += y (1 - m y) (each
    doubles the correct bits: 1e-2 -> 1e-4 -> 1e-8), then the exponent 127 - E(x) and x's sign put back.  Wormhole B0
    has no SFPARECIP (a Blackhole instruction).  0 and denormals (which the SFPU reads as 0) give +-inf, +-inf and
    results below 2^-126 give +-0, NaN gives NaN."""
    setup = _persist([(4, RECIP_Q[2]), (5, RECIP_Q[1]), (6, RECIP_Q[0]), (11, K_NAN)])
    x, nm, y, e = 0, 1, 2, 3
    body = [
        I.load(x, note="x"),
        I.setexp(x, nm, imm=127, note="+-m: x's mantissa, exponent 0"),
        I.setsgn(nm, nm, sign=1, note="-m"),
        I.mad(nm, 4, 5, y, note="quadratic in -m: (Q2 (-m) + Q1) ..."),
        I.mad(y, nm, 6, y, note="y = ... (-m) + Q0 ~ 1/m"),
        I.mad(nm, y, I.LONE, e, note="Newton: d = 1 - m y"),
        I.mad(y, e, y, y, note="y += y d"),
        I.mad(nm, y, I.LONE, e, note="Newton: d = 1 - m y"),
        I.mad(y, e, y, y, note="y += y d: 1/m in (0.5, 1]"),
        I.exexp(y, e, note="E(y): 126 or 127"),
        I.exexp(x, nm, note="E(x)"),
        I.isub(e, nm, note="E(y) - E(x)"),
        I.iadd_imm(nm, nm, 127, note="e = the result's biased exponent"),
        I.mov(nm, e),
        I.setexp(y, e, note="|1/x| (exponent field = e)"),
        I.iadd_imm(nm, nm, -1, cc=I.CC_LT0, note="lanes: e <= 0 (|x| >= 2^126 or inf)"),
        I.mov(I.LZERO, e, note="0"),
        I.encc(),
        I.exexp(x, nm, note="E(x)"),
        I.setcc(nm, I.SETCC_EQ0, note="lanes: x is 0 or denormal"),
        I.loadi(e, I.LOADI_BF16, INF, note="inf"),
        I.encc(),
        *_nan_probe(x, nm),
        I.setsgn(e, x, note="y = {sign(x), |1/x|}"),
        *_round_bf16(x, fp32_dest),
        *_nan_fix(nm, x),
        I.store(x),
    ]
    return Program("recip", "1/x", tuple(setup + [I.encc(True)]), tuple(I.schedule(body)),
                   (I.encc(False), RESTORE_L11))


# ---- square root and its reciprocal --------------------------------------------------------------------------------

RSQRT_MAGIC = 0x5F3759DF  # bits(y0) = RSQRT_MAGIC - bits(x) / 2: 1/sqrt(x) within 3.5% (the exponent halved, negated)


def _rsqrt(fp32_dest: bool, root: bool) -> Program:
    """1/sqrt(x) (root=False) or sqrt(x): y0 from the integer guess RSQRT_MAGIC - bits(x)/2 (3.5%), three Newton steps
    y += (y/2)(1 - (x y) y) (each squares the error: 1.8e-3, 5e-6, 4e-11; x y and y/2 stay in range where x/2 or y^2
    would under- or overflow); sqrt then s = x y and one correction s += (s/2)(1 - s y), which leaves half of s's
    rounding.  +-0 / denormals: rsqrt +-inf, sqrt +-0; x < 0: NaN; +inf: rsqrt 0, sqrt +inf."""
    setup = _persist([(4, RSQRT_MAGIC), (5, 0.5), (11, K_NAN)])
    x, y, nx, g, hy = 0, 1, 2, 3, 6
    body = [
        I.load(x, note="x"),
        I.mov(x, y), I.shft(y, -1, note="bits(x) / 2"),
        I.mov(x, nx, negate=True, note="-x"),
        I.isub(4, y, note="y0 = magic - bits(x)/2 ~ 1/sqrt(x)"),
    ]
    for _ in range(3):
        body += [I.mad(nx, y, I.LZERO, g, note="-x y"), I.mad(y, 5, I.LZERO, hy, note="y/2"),
                 I.mad(g, y, I.LONE, g, note="e = 1 - x y^2"), I.mad(hy, g, y, y, note="y += (y/2) e")]
    if root:  # s = x y, then s += (s/2)(1 - s y): the relative residual, which cannot underflow as x - s^2 can
        body += [I.mad(x, y, I.LZERO, g, note="s = x y ~ sqrt(x)"),
                 I.mov(y, nx, negate=True, note="-y"),
                 I.mad(g, 5, I.LZERO, hy, note="s/2"),
                 I.mad(g, nx, I.LONE, nx, note="e = 1 - s y"),
                 I.mad(hy, nx, g, y, note="s += (s/2) e")]
    body += [
        *_round_bf16(y, fp32_dest),
        I.exexp(x, nx, note="E(x)"),
        I.iadd_imm(nx, g, -255, cc=I.CC_GTE0, note="lanes: x is inf or NaN"),
        I.mov(x, y, note="sqrt(+inf) = +inf") if root else I.mov(I.LZERO, y, note="rsqrt(+inf) = 0"),
        I.encc(),
        I.setcc(x, I.SETCC_LT0, note="lanes: x < 0 (sign bit)"),
        I.loadi(y, I.LOADI_BF16, NAN, note="NaN"),
        I.encc(),
        I.setcc(nx, I.SETCC_EQ0, note="lanes: x is +-0 or denormal"),
        I.setman(x, y, imm=0, note="+-0 (x's sign)"),
        *([] if root else [I.setexp(y, y, imm=255, note="+-inf")]),
        I.encc(),
        *_nan_probe(x, nx),
        *_nan_fix(nx, y),
        I.store(y),
    ]
    return Program("sqrt" if root else "rsqrt", "sqrt(x)" if root else "1/sqrt(x)", tuple(setup + [I.encc(True)]),
                   tuple(I.schedule(body)), (I.encc(False), RESTORE_L11))


# ---- natural logarithm ---------------------------------------------------------------------------------------------

SQRT2 = _f32(1.4142135623730951)
LN2_HI_LOG = _f32(0.693145751953125)  # 16 significant bits: k * LN2_HI_LOG is exact for |k| <= 255
LN2_LO_LOG = _f32(0.6931471805599453 - 0.693145751953125)
# ln(1 + f) = f + f^2 (L2 + f (L3 + ... + f L10)) on f in [sqrt(1/2) - 1, sqrt(2) - 1]: relative error 4.1e-9
# (Lawson-iterated least squares on relative error).
LOG_C = (-0.49999988079071045, 0.33333325386047363, -0.25001582503318787, 0.2000197470188141, -0.16609081625938416,
         0.14181813597679138, -0.13242985308170319, 0.12904496490955353, -0.07621857523918152)


def _log(fp32_dest: bool) -> Program:
    """ln(x): x = 2^k m with m in [sqrt(1/2), sqrt(2)) (k from the exponent field, m from the mantissa, halved and
    k += 1 when m >= sqrt 2), f = m - 1 (exact), ln(1 + f) by a degree-10 polynomial, plus k ln2 in two parts.
    0 and denormals give -inf, x < 0 NaN, +inf +inf, NaN NaN."""
    c = LOG_C
    setup = _persist([(4, c[8]), (5, c[7]), (6, c[6]), (7, c[5]), (12, c[4]), (13, c[3]), (14, -SQRT2),
                      (11, LN2_LO_LOG)])
    x, m, k, p = 0, 1, 2, 3
    body = [
        I.load(x, note="x"),
        I.setexp(x, m, imm=127, note="m: x's mantissa, exponent 0"),
        I.exexp(x, k, note="E(x)"),
        I.setsgn(m, m, sign=0),
        I.cast(k, k, note="E as a float"),
        I.mad(m, I.LONE, 14, p, note="m - sqrt(2)"),
        I.addi(k, -127.0, note="k = E - 127"),
        I.setcc(p, I.SETCC_GTE0, note="lanes: m >= sqrt 2"),
        I.setexp(m, m, imm=126, note="m /= 2"),
        I.addi(k, 1.0, note="k += 1"),
        I.encc(),
        *I.const(p, -1.0),
        I.mad(m, I.LONE, p, m, note="f = m - 1 (exact)"),
        *I.const(p, c[2]),  # L4: loaded per vector (the LRegs hold the higher terms)
        I.mad(m, 4, 5, x, note="Horner on f: L10 f + L9"),
        I.mad(x, m, 6, x, note="... + L8"),
        I.mad(x, m, 7, x, note="... + L7"),
        I.mad(x, m, 12, x, note="... + L6"),
        I.mad(x, m, 13, x, note="... + L5"),
        I.mad(x, m, p, x, note="... + L4"),
        *I.const(p, c[1]),
        I.mad(x, m, p, x, note="... + L3"),
        *I.const(p, c[0]),
        I.mad(x, m, p, x, note="q = ... + L2"),
        I.mad(x, m, I.LZERO, x, note="q f"),
        I.mad(x, m, m, x, note="s = ln(1+f) = (q f) f + f: the small part rounded, f exact"),
        I.mad(k, 11, x, x, note="+ k ln2_lo"),
        *I.const(p, LN2_HI_LOG),
        I.mad(k, p, x, x, note="y = k ln2_hi + that"),
        *_round_bf16(x, fp32_dest),
        I.load(m, note="x again"),
        I.exexp(m, k, note="E(x)"),
        I.iadd_imm(k, p, -255, cc=I.CC_GTE0, note="lanes: x is inf or NaN"),
        I.mov(m, x, note="y = x"),
        I.encc(),
        I.setcc(m, I.SETCC_LT0, note="lanes: x < 0 (sign bit set)"),
        I.loadi(x, I.LOADI_BF16, NAN, note="y = NaN"),
        I.encc(),
        I.setcc(k, I.SETCC_EQ0, note="lanes: x is +-0 or denormal"),
        I.loadi(x, I.LOADI_BF16, 0xFF80, note="y = -inf"),
        I.encc(),
        I.store(x),
    ]
    return Program("log", "ln(x)", tuple(setup + [I.encc(True)]), tuple(I.schedule(body)),
                   (I.encc(False), RESTORE_L11))


# ---- selection and min/max -----------------------------------------------------------------------------------------


def _minmax(op: str) -> Program:
    """max(a, b) / min(a, b) by one SFPSWAP (VD = min, VC = max in the order -NaN < -inf < ... < +inf < +NaN, so a
    positive NaN propagates through max; -0 < +0)."""
    body = [I.load(0, tile=0, note="a"), I.load(1, tile=1, note="b"),
            I.swap(0, 1, note="LReg1 = min, LReg0 = max"), I.store(0 if op == "max" else 1, tile=2)]
    return Program(op, f"{op}(a, b)", (), tuple(I.schedule(body)), operands=3)


def _where() -> Program:
    """where(c, a, b) = a where c != 0 else b: lane flags from c == 0 (|c|, so -0 counts as 0; a NaN c selects a)
    predicate one move."""
    body = [I.load(0, tile=0, note="c"), I.load(1, tile=1, note="a"), I.load(2, tile=2, note="b"),
            I.fabs(0, 0, note="|c|: -0 is 0"), I.setcc(0, I.SETCC_EQ0, note="lanes: c == 0"),
            I.mov(2, 1, note="y = b"), I.encc(), I.store(1, tile=3)]
    return Program("where", "where(c, a, b)", (I.encc(True),), tuple(I.schedule(body)), (I.encc(False),),
                   operands=4)


# ---- scalar multiply-add and simple ops ----------------------------------------------------------------------------


def _mad(fp32_dest: bool, a: float | str, b: float | str) -> Program:
    """x * a + b with scalar a, b (compile-time floats or run-time f32 bits): one SFPMAD, one rounding; a bf16 DST
    rounds to nearest (a NaN result is kept a NaN)."""
    setup = _persist([(4, a), (5, b)] + ([] if fp32_dest else [(11, K_NAN)]))
    body = [I.load(0, note="x"), I.mad(0, 4, 5, 0, note="x*a + b")]
    if not fp32_dest:
        body += [*_nan_probe(0, 1), *_round_bf16(0, fp32_dest), *_nan_fix(1, 0)]
    body.append(I.store(0))
    pred = not fp32_dest
    return Program("mad", "x * a + b", tuple(setup + ([I.encc(True)] if pred else [])), tuple(I.schedule(body)),
                   (I.encc(False), RESTORE_L11) if pred else ())


def _arith(op: str, fp32_dest: bool) -> Program:
    """a + b, a - b, a * b of two DST tiles (the SFPU's form of the op-table's add / sub / mul, for operands the matrix
    unit cannot take): one SFPMAD each (a * 1 + b, a * 1 + (-b), a * b + 0), one rounding; a bf16 DST rounds to
    nearest (a NaN result is kept a NaN)."""
    a, b = 0, 1
    body = [I.load(a, tile=0, note="a"), I.load(b, tile=1, note="b")]
    if op == "sub":
        body.append(I.mov(b, b, negate=True, note="-b"))
    body.append(I.mad(a, b, I.LZERO, a, note="a * b") if op == "mul" else
                I.mad(a, I.LONE, b, a, note=f"a {'+' if op == 'add' else '-'} b"))
    if not fp32_dest:
        body += [*_nan_probe(a, b), *_round_bf16(a, fp32_dest), *_nan_fix(b, a)]
    body.append(I.store(a, tile=2))
    pred = not fp32_dest
    return Program(op, f"a {dict(add='+', sub='-', mul='*')[op]} b", tuple(
        (_persist([(11, K_NAN)]) + [I.encc(True)]) if pred else []), tuple(I.schedule(body)),
        (I.encc(False), RESTORE_L11) if pred else (), operands=3)


# a op b as d = a - b (le, gt: b - a); tt-metal's own SFPU comparisons subtract too
_CMP = {"lt": ("lt", False), "ge": ("ge", False), "gt": ("lt", True), "le": ("ge", True), "eq": ("eq", False),
        "ne": ("ne", False)}


def _compare(op: str) -> Program:
    """1.0 where `a op b`, else 0.0 (the op table's compare ops): d = a - b by one SFPMAD (b - a for le / gt), its
    sign and zeroness (|d|, so -0 is 0) select the result under lane predication.  NaN operands (d NaN) compare
    unordered (only ne is 1); equal infinities (inf - inf is NaN) are caught by comparing the bits.  The SFPU reads
    denormals as zero and flushes a difference below 2^-126 to zero: such operands compare equal."""
    kind, swapped = _CMP[op]
    a, b, d, y, t = (1, 0, 2, 3, 4) if swapped else (0, 1, 2, 3, 4)
    one_on_equal = kind in ("ge", "eq")
    body = [I.load(0, tile=0, note="a"), I.load(1, tile=1, note="b"),
            I.mov(b, d, negate=True), I.mad(a, I.LONE, d, d, note="d = " + ("b - a" if swapped else "a - b")),
            I.mov(I.LONE if kind == "ne" else I.LZERO, y, note="y = 1" if kind == "ne" else "y = 0")]
    if kind in ("lt", "ge"):
        body += [I.setcc(d, I.SETCC_LT0 if kind == "lt" else I.SETCC_GTE0, note="lanes: d < 0" if kind == "lt"
                         else "lanes: d >= 0"), I.mov(I.LONE, y, note="y = 1"), I.encc()]
    body += [I.fabs(d, t, note="|d|: -0 is 0"), I.setcc(t, I.SETCC_EQ0, note="lanes: a == b"),
             I.mov(I.LONE if one_on_equal else I.LZERO, y), I.encc(),
             *_nan_probe(d, t), I.setcc(t, I.SETCC_GTE0, note="lanes: unordered (or inf - inf)"),
             I.mov(I.LONE if kind == "ne" else I.LZERO, y), I.encc(),
             I.mov(a, d), I.isub(b, d, note="bits(b) - bits(a)"), *_nan_probe(a, t),
             I.setcc(d, I.SETCC_EQ0, note="lanes: the same bits"), I.setcc(t, I.SETCC_LT0, note="... and not NaN"),
             I.mov(I.LONE if one_on_equal else I.LZERO, y), I.encc(),
             I.store(y, tile=2)]
    return Program(op, f"a {dict(lt='<', ge='>=', gt='>', le='<=', eq='==', ne='!=')[op]} b",
                   tuple(_persist([(11, K_NAN)]) + [I.encc(True)]), tuple(I.schedule(body)),
                   (I.encc(False), RESTORE_L11), operands=3)


def _fill(fp32_dest: bool, value: float | str) -> Program:
    """DST tile = value (a compile-time float, rounded to the DST format to nearest even, or run-time f32 bits,
    rounded by SFPSTOCHRND in a bf16 DST)."""
    if isinstance(value, float) and not fp32_dest and not np.isnan(value):
        value = _bf16(value)
    setup = _persist([(4, value)]) + _round_bf16(4, fp32_dest or not isinstance(value, str))
    return Program("fill", "fill", tuple(setup), (I.store(4, note="value"),))


def _copy() -> Program:
    """DST[out] = DST[a] (copy_dest_values): a load and a store."""
    return Program("copy", "copy", (), tuple(I.schedule([I.load(0, tile=0), I.store(0, tile=1)])), operands=2)


def _unary_simple(op: str) -> Program:
    """neg (sign flip), abs (sign cleared; a negative NaN stays), relu (max(x, 0) by SFPSWAP with +0): exact."""
    ins = {"neg": [I.mov(0, 0, negate=True)], "abs": [I.fabs(0, 0)],
           "relu": [I.mov(I.LZERO, 1), I.swap(0, 1, note="LReg0 = max(x, +0)")]}[op]
    return Program(op, op, (), tuple(I.schedule([I.load(0), *ins, I.store(0)])))


RAW: dict[str, Callable[..., Program]] = {
    "exp": lambda fp32_dest=False, scale=None: _exp(fp32_dest, _scalar(scale)),
    "exp_approx": lambda fp32_dest=False, scale=None: _exp_approx(fp32_dest, _scalar(scale)),
    "recip": lambda fp32_dest=False: _recip(fp32_dest),
    "log": lambda fp32_dest=False: _log(fp32_dest),
    "rsqrt": lambda fp32_dest=False: _rsqrt(fp32_dest, root=False),
    "sqrt": lambda fp32_dest=False: _rsqrt(fp32_dest, root=True),
    "max": lambda fp32_dest=False: _minmax("max"),
    "min": lambda fp32_dest=False: _minmax("min"),
    "where": lambda fp32_dest=False: _where(),
    "mad": lambda fp32_dest=False, a=1.0, b=0.0: _mad(fp32_dest, _scalar(a), _scalar(b)),
    "neg": lambda fp32_dest=False: _unary_simple("neg"),
    "abs": lambda fp32_dest=False: _unary_simple("abs"),
    "relu": lambda fp32_dest=False: _unary_simple("relu"),
    **{op: (lambda fp32_dest=False, _op=op: _arith(_op, fp32_dest)) for op in ("add", "sub", "mul")},
    **{op: (lambda fp32_dest=False, _op=op: _compare(_op)) for op in _CMP},
    "fill": lambda fp32_dest=False, value=0.0: _fill(fp32_dest, _scalar(value)),
    "copy": lambda fp32_dest=False: _copy(),
}


# ---- C++ emission --------------------------------------------------------------------------------------------------

COMMON = """\
#ifndef TILEGRID_SFPU_COMMON
#define TILEGRID_SFPU_COMMON
namespace tilegrid_sfpu {
// Point the SFPU at DST tile `tile` (tt-llk's _llk_math_eltwise_sfpu_start_): DST offset = the tile's 64 rows,
// address modifiers 4-7 (ADDR_MOD_3 in an instruction means ADDR_MOD_7: no auto-increment), wait for the FPU.
inline void begin(uint32_t tile) {
    ckernel::addr_mod_t{.srca = {.incr = 0}, .srcb = {.incr = 0}, .dest = {.incr = 0}}.set(ADDR_MOD_7);
    ckernel::math::set_dst_write_addr<DstTileShape::Tile32x32, UnpackDestination::SrcRegs>(tile);
    ckernel::math::set_addr_mod_base();
    TTI_STALLWAIT(p_stall::STALL_SFPU, p_stall::MATH);
}
// Back to the FPU's addressing once the SFPU has finished (tt-llk's _llk_math_eltwise_sfpu_done_).
inline void end() {
    ckernel::math::clear_dst_reg_addr();
    TTI_STALLWAIT(p_stall::STALL_CFG, p_stall::WAIT_SFPU);
    ckernel::math::clear_addr_mod_base();
}
}  // namespace tilegrid_sfpu
#endif
"""

DST_NAMES = {1: ("dst",), 2: ("a", "out"), 3: ("a", "b", "out"), 4: ("c", "a", "b", "out")}


def function_name(p: Program, key: str) -> str:
    return f"tilegrid_sfpu_{p.name}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def cpp(p: Program, fname: str, fp32_dest: bool) -> str:
    """The C++ function applying `p` to DST tiles (math thread only)."""
    names = DST_NAMES[p.operands]
    params = ", ".join([f"uint32_t {n}" for n in names] + [f"uint32_t {a}" for a in p.args])
    lines = [f"// {p.doc}: {p.instructions} SFPU instructions per 32-lane vector ({p.per_tile()} per tile)",
             f"static_assert(DST_ACCUM_MODE == {'true' if fp32_dest else 'false'}, \"tilegrid SFPU routine "
             f"{fname} was generated for a {'fp32' if fp32_dest else 'bf16'} DST\");",
             f"inline void {fname}({params}) {{"]
    hoisted: list[str] = []
    if p.operands == 1:
        lines.append("    tilegrid_sfpu::begin(dst);")
        addr = {0: None}
    else:
        lines.append("    tilegrid_sfpu::begin(0);")
        addr = {k: f"({n} << 6)" for k, n in enumerate(names)}
    lines += [f"    {i.cpp()}" for i in p.setup]
    lines += ["#pragma GCC unroll 0", f"    for (int v = 0; v < {VECTORS_PER_TILE}; ++v) {{"]
    for ins in list(p.body) + [I.next_rows()]:
        a = addr.get(ins.tile) if ins.op in ("SFPLOAD", "SFPSTORE") else None
        if a is not None:  # a run-time DST address: encode once, before the loop
            var = f"insn{len(hoisted)}"
            op_args = ", ".join(str(x) for x in ins.args(a))
            hoisted.append(f"    const uint32_t {var} = TT_OP_{ins.op}({op_args});")
            lines.append(f"        TT_INSN({var});" + (f"  // {ins.note}" if ins.note else ""))
        else:
            lines.append(f"        {ins.cpp()}")
    lines.append("    }")
    lines += [f"    {i.cpp()}" for i in p.teardown]
    lines += ["    tilegrid_sfpu::end();", "}"]
    at = lines.index("#pragma GCC unroll 0")
    return "\n".join(lines[:at] + hoisted + lines[at:]) + "\n"


def definitions(p: Program, fname: str, fp32_dest: bool) -> str:
    return f"#ifdef TRISC_MATH\n{COMMON}{cpp(p, fname, fp32_dest)}#endif  // TRISC_MATH\n"


# ---- the kernel-API spellings (real sfpi) --------------------------------------------------------------------------

def _api_call(op: str) -> Callable[..., str]:
    """The op table's `ttmetal` call (tilegrid/ops.py) on DST tile indices: unary in place, else the operands then out."""
    tt = OPS[op].ttmetal
    names = {1: ("x",), 2: ("a", "b", "out"), 3: ("c", "a", "b", "out")}[OPS[op].arity]

    def call(*dst: object) -> str:
        if len(dst) != len(names):
            raise TypeError(f"{op} takes {len(names)} DST tile indices, got {len(dst)}")
        return tt.call.format(**dict(zip(names, (str(d) for d in dst), strict=True))) + ";"

    return call


def _api_mad(a: float | str, b: float | str) -> SfpuRoutine:
    def bits(v: float | str) -> str:
        return v if isinstance(v, str) else f"0x{I.f32_bits(v):08x}u"

    return SfpuRoutine("mad", "api", '#include "api/compute/eltwise_unary/binop_with_scalar.h"\n',
                       "binop_with_scalar_tile_init();",
                       lambda i: f"mul_unary_tile({i}, {bits(a)}); add_unary_tile({i}, {bits(b)});")


def routine(op: str, mode: str = "api", fp32_dest: bool = False, **params: float | str | None) -> SfpuRoutine:
    """The SFPU code for op-table entry `op`: mode "api" (tt-metal's kernel API; needs sfpi) or "raw" (tilegrid's
    own instructions).  fp32_dest: the compute kernel's fp32_dest_acc_en (a raw routine is generated for one DST
    format and checks it at compile time).  params: exp / exp_approx take scale (x * scale first), mad takes a, b;
    a float is baked in, a str is the C++ expression of the f32's bits at run time (e.g. a runtime argument)."""
    if mode == "api":
        if op == "mad":
            return _api_mad(params.get("a", 1.0), params.get("b", 0.0))  # type: ignore[arg-type]
        tt = OPS[op].ttmetal if op in OPS else None
        if tt is None:
            raise KeyError(f"no kernel-API spelling for SFPU op {op!r}")
        if params.get("scale") is not None:
            raise ValueError("the kernel-API exp takes its scale as a bf16 template argument; use mode='raw'")
        return SfpuRoutine(op, "api", f'#include "{tt.header}"\n', tt.init + ";", _api_call(op))
    if mode != "raw":
        raise ValueError(f"mode must be 'api' or 'raw', not {mode!r}")
    if op not in RAW:
        raise KeyError(f"no raw SFPU routine for op {op!r} (have: {', '.join(sorted(RAW))})")
    prog = RAW[op](fp32_dest=fp32_dest, **params)
    # one function per compile-time parameterisation; run-time scalars are its arguments
    key = sorted((k, "runtime" if isinstance(v, str) else v) for k, v in params.items())
    fname = function_name(prog, repr((op, fp32_dest, key)))
    call_args = _runtime_args(params)
    if call_args:
        prog = dataclasses.replace(prog, args=tuple(f"p{k}" for k in range(len(call_args))))
        prog = _rename_args(prog, call_args)

    def call(*dst: object) -> str:
        if len(dst) != prog.operands:
            raise TypeError(f"{op} takes {prog.operands} DST tile indices, got {len(dst)}")
        return f"MATH(({fname}({', '.join(str(d) for d in (*dst, *call_args))})));"

    return SfpuRoutine(op, "raw", definitions(prog, fname, fp32_dest), "", call, prog)


def _runtime_args(params: dict[str, float | str | None]) -> list[str]:
    """The run-time scalar parameters' C++ expressions, in a fixed order."""
    return [v for _, v in sorted(params.items()) if isinstance(v, str)]


def _rename_args(p: Program, exprs: list[str]) -> Program:
    """Run-time immediates refer to the call site's expressions; inside the function they are parameters p0, p1."""
    ren = {e: f"p{k}" for k, e in enumerate(exprs)}

    def fix(i: Insn) -> Insn:
        if isinstance(i.imm, str):
            imm = i.imm
            for e, n in ren.items():
                imm = imm.replace(f"(({e})", f"(({n})")
            return dataclasses.replace(i, imm=imm)
        return i

    return dataclasses.replace(p, setup=tuple(fix(i) for i in p.setup), body=tuple(fix(i) for i in p.body))
