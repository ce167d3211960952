"""Hardware numerics (data formats, matrix-unit fidelity, the SFPU fast exp): values are held as float32 arrays, rounded to their format where hardware rounds.

Also the matrix unit's math fidelity and the bfp8_b block-floating-point format, so that a run
with LoFi or bfp8_b shows the accuracy it pays (used by the performance model's runs).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

NP_DTYPES = {"bf16": ml_dtypes.bfloat16, "f32": np.float32}
FIDELITY_PHASES = {"LoFi": 1, "HiFi2": 2, "HiFi3": 3, "HiFi4": 4}


def dtype_of(a: np.ndarray) -> str | None:
    if a.dtype == ml_dtypes.bfloat16:
        return "bf16"
    if a.dtype == np.float32:
        return "f32"
    return None


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """x (float32) rounded to `dtype` (round-to-nearest-even), still as float32."""
    if dtype == "bf16":
        return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
    if dtype == "bfp8_b":
        return round_bfp8_b(x)
    if dtype == "bfp4_b":
        return round_bfp8_b(x, magnitude_bits=3)
    return np.asarray(x, np.float32)


def round_bfp8_b(x: np.ndarray, magnitude_bits: int = 7) -> np.ndarray:
    """Block floating point bfp8_b: each run of 16 consecutive values along the last axis (one row
    of a 16x16 tile face) shares one 8-bit exponent, the largest of the group; each value keeps a
    sign and a 7-bit magnitude (the implicit one made explicit), rounded to nearest even.
    (anchors/wormhole.md §3: 'BFP8 = 16 datums share one exponent'; tile 1088 B = 1024 x 1 B
    + 64 exponent bytes.) Values far below the group's largest flush to zero, as on hardware.
    `magnitude_bits=3` gives bfp4_b (4 bits a datum)."""
    a = np.asarray(x, np.float32)
    if a.shape[-1] % 16:
        raise ValueError(f"bfp8_b needs a last dimension that is a multiple of 16, got {a.shape}")
    g = a.reshape(*a.shape[:-1], a.shape[-1] // 16, 16)
    finite = np.where(np.isfinite(g), np.abs(g), 0.0)
    mx = finite.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(mx > 0, mx, 1.0)))
    top = 2**magnitude_bits - 1
    quantum = np.exp2(e - (magnitude_bits - 1)).astype(np.float32)  # 1.xxxxxx * 2^e at the top
    q = np.clip(np.rint(g / quantum), -top, top) * quantum
    q = np.where(np.isfinite(g), q, g)  # inf / nan pass through
    return q.reshape(a.shape).astype(np.float32)


def _keep_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """x with only the implicit one and the `bits` most significant mantissa bits (truncation)."""
    a = np.ascontiguousarray(x, np.float32)
    mask = np.uint32((0xFFFFFFFF << (23 - bits)) & 0xFFFFFFFF)
    return (a.view(np.uint32) & mask).view(np.float32)


def fidelity_matmul(a: np.ndarray, b: np.ndarray, fidelity: str) -> np.ndarray:
    """a @ b as the Wormhole/Blackhole matrix unit computes it at a math fidelity.

    ISA (tt-isa-documentation WormholeB0/TensixTile/TensixCoprocessor/SrcASrcB.md, "Fidelity
    phases"): MVMUL computes Dst += SrcB @ SrcA; in0 (`a`) is unpacked to SrcB, in1 (`b`) to SrcA.
    Operands are at most TF32 (FP32 loses its low 13 mantissa bits when unpacked). For BF16:
      phase 0: SrcA implicit 1 + 4 MSBs      x SrcB implicit 1 + 6 MSBs
      phase 1: SrcA remaining (3) bits       x SrcB implicit 1 + 6 MSBs
      phase 2: SrcA implicit 1 + 4 MSBs      x SrcB remaining bit(s)
      phase 3: SrcA remaining bits           x SrcB remaining bit(s)
    (TF32: SrcA's "remaining" is the next 5 bits, its last bit is never used.) LoFi = phase 0,
    HiFi2 = 0-1, HiFi3 = 0-2, HiFi4 = all four. Dst accumulates in full precision.
    """
    phases = FIDELITY_PHASES[fidelity]
    a = _keep_mantissa(a, 10)  # TF32 in SrcB
    b = _keep_mantissa(b, 9)  # TF32 in SrcA, least significant bit ignored
    a_hi = _keep_mantissa(a, 6)
    a_lo = a - a_hi
    b_hi = _keep_mantissa(b, 4)
    b_lo = b - b_hi
    out = np.matmul(a_hi, b_hi)
    if phases >= 2:
        out += np.matmul(a_hi, b_lo)
    if phases >= 3:
        out += np.matmul(a_lo, b_hi)
    if phases >= 4:
        out += np.matmul(a_lo, b_lo)
    return out


# The SFPU's fast approximate exp (tt-metal `exp_tile<true, true>`, tt-llk `_calculate_exponential_`
# with its default input clamping) is Schraudolph's trick: one multiply-add in fp32 builds the
# float's bit pattern directly. 2^(x / ln 2) in units of 2^-8 of the exponent field:
EXP_APPROX_SLOPE = np.float32(369.329925537109375)  # fp32(256 * fp32(1 / ln 2))
EXP_APPROX_BIAS = np.float32(32500.818359375)  # 127 * 256 less 11.18, centring the linear 2^f ~ 1 + f
EXP_APPROX_FLOOR = np.float32(-88.5)  # inputs are clamped here first (exp(-88.5) ~ 0)


def exp_approx(x: np.ndarray) -> np.ndarray:
    """exp(x) as the SFPU's fast approximation computes it: within about 3.1% of exp(x) for
    x <= 88 (exp(0) = 0.978515625), clamped below at -88.5. The result's top 17 bits are
    round-half-away(|slope * x + bias|) shifted into place (ISA SFPSTOCHRND, SFPSHFT)."""
    x = np.maximum(np.asarray(x, np.float32), EXP_APPROX_FLOOR)
    t = (EXP_APPROX_SLOPE * x + EXP_APPROX_BIAS).astype(np.float32)
    n = np.minimum(np.floor(np.abs(t.astype(np.float64)) + 0.5), 65535).astype(np.uint32)
    return (n << np.uint32(15)).view(np.float32)
