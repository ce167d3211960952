"""What an SFPU instruction stream computes, in NumPy: the ISA documents' functional models, lanes as array elements.

A routine of tilegrid/targets/ttmetal/sfpu.py is a list of sfpu_isa.Insn; `execute` runs it over whole arrays (every
element a lane: the SFPU's lanes never talk to each other in these routines), with the DST format's conversions on
load and store.  It is the routines' numerical specification: the tests check that wolfpine (the simulated
Wormhole, an independent implementation of the same ISA) agrees with it, and that it agrees with float64 within
each routine's stated bound over the whole float range — so accuracy work happens here, in milliseconds.

SFPMAD is "partially fused" (ISA SFPMAD.md: the product kept in more than FP32 precision, then one rounding); the
ISA does not say how many bits, so `fma` models the datapath wolfpine and ttsim use (see its docstring).
"""

from __future__ import annotations

import numpy as np

from tilegrid.targets.ttmetal import sfpu_isa as I

U32 = np.uint32
_SIGN, _EXP, _MAN = U32(0x80000000), U32(0x7F800000), U32(0x007FFFFF)


def _f(b: np.ndarray) -> np.ndarray:
    return b.view(np.float32)


def _ftz(b: np.ndarray) -> np.ndarray:
    """Denormal inputs are zero (keeping the sign)."""
    return np.where((b & _EXP) == 0, b & _SIGN, b)


_M32, _M64 = np.uint64(0xFFFFFFFF), np.uint64(0xFFFFFFFFFFFFFFFF)


def _sticky_shr(v: np.ndarray, amount: np.ndarray, width: int) -> np.ndarray:
    """v >> amount, with the lowest bit set if anything non-zero was shifted out and the result is non-zero."""
    amount = np.clip(amount, 0, 63).astype(np.uint64)
    out = v >> amount
    lost = ((out << amount) & (_M64 if width == 64 else _M32)) != v
    out = np.where((out != 0) & lost, out | np.uint64(1), out)
    return np.where(amount >= width, np.uint64(0), out)


def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:  # noqa: C901
    """Wormhole's SFPMAD on bit patterns: a * b + c, "partially fused" (ISA SFPMAD.md).  The product's 48 bits are cut
    to 24 + 3 guard bits and a sticky bit, the addend gets 3 guard bits, the smaller operand is aligned with a sticky
    bit kept only when something survives, the sum (32 bits) is normalised keeping just its last bit as sticky,
    then rounded to nearest even; denormal inputs read as zero, denormal results flush to +0.  This datapath model
    is the one wolfpine (and Tenstorrent's ttsim) implement, fuzz-matched there against the hardware."""
    a, b, c = (np.asarray(v, U32).astype(np.uint64) for v in (a, b, c))
    u = np.uint64

    def unpack(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = ((v >> u(23)) & u(255)).astype(np.int64)
        return e, np.where(e == 0, u(0), (v & u(0x7FFFFF)) | u(0x800000))

    xe, xm = unpack(a)
    ye, ym = unpack(b)
    ze, zm = unpack(c)
    zs, ps = c & u(0x80000000), (a ^ b) & u(0x80000000)
    pm = (xm * ym) << u(3)
    pm = (pm >> u(23)) | ((pm & u(0x7FFFFF)) != 0).astype(np.uint64)
    pe = xe + ye - 127
    zm = zm << u(3)
    zinf_m = u(0x4000000)  # an infinite z's mantissa after the shift
    special = (xe == 255) | (ye == 255) | (pe >= 255) | (ze == 255)
    invalid = (((xe == 255) & ((xm != u(0x800000)) | (ym == 0))) | ((ye == 255) & ((ym != u(0x800000)) | (xm == 0)))
               | ((ze == 255) & (zm == zinf_m) & ((xe == 255) | (ye == 255) | (pe >= 255)) & (zs != ps)))
    znan = (ze == 255) & (zm != zinf_m) & ~invalid
    nan_result = np.where(special & invalid, ps | u(0x7F800001), np.where(special & znan, zs | u(0x7F800001), u(0)))
    is_nan = nan_result != 0
    early = np.where(special & ~is_nan & (ze == 255), c, np.where(special & ~is_nan, ps | u(0x7F800000), u(0)))
    done = special & ~is_nan  # the infinite results
    pe = np.where(is_nan, np.minimum(pe, 255), pe)
    tiny = (pm == 0) | (pe < 0)
    early = np.where(~done & tiny & ~is_nan, np.where(zm != 0, c, u(0)), early)
    done |= tiny & ~is_nan
    pm, pe = np.where(tiny & is_nan, u(0), pm), np.where(tiny & is_nan, 0, pe)
    re = np.maximum(pe, ze)
    pm = np.where(pe < re, _sticky_shr(pm, re - pe, 64), pm)
    zm = np.where(ze < re, _sticky_shr(zm, re - ze, 32), zm)
    rs = np.where(pm >= zm, ps, zs)
    zm = np.where(zs != rs, ~zm & _M32, zm)
    pm = np.where(ps != rs, ~pm, pm)
    rm = (zm + pm + (ps != zs).astype(np.uint64)) & _M32
    zero = rm == 0
    n = np.frexp(rm.astype(np.float64))[1].astype(np.int64) - 27  # 5 - clz32
    re = re + n
    ovf, unf = re >= 255, re < 0
    rm = np.where(n <= 0, (rm << np.clip(-n, 0, 63).astype(np.uint64)) & _M32,
                  (rm >> np.clip(n, 0, 63).astype(np.uint64)) | (rm & u(1)))
    r = ((np.clip(re, 0, 255).astype(np.uint64) << u(23)) + ((rm >> u(3)) & u(0x7FFFFF))) & _M32
    r = r + (((rm & u(7)) + (r & u(1))) > 4).astype(np.uint64)
    out = np.where(is_nan, nan_result, rs) | r
    out = np.where((r >> u(23)) == 0, nan_result, out)
    out = np.where(unf | zero, nan_result, out)
    out = np.where(ovf, np.where(is_nan, nan_result, rs | u(0x7F800000)), out)
    return np.where(done, early, out).astype(U32)


def _signmag_key(b: np.ndarray) -> np.ndarray:
    """SFPSWAP's order (sign-magnitude integers; for floats -NaN < -inf < ... < +inf < +NaN) as int64 keys."""
    mag = (b & ~_SIGN).astype(np.int64)
    return np.where(b & _SIGN, -mag - 1, mag)


class Machine:
    """LRegs, lane flags and the flag stack of one SFPU, for n lanes; DST tiles are arrays of FP32 bit patterns."""

    def __init__(self, n: int, fp32_dest: bool):
        self.n, self.fp32_dest = n, fp32_dest
        self.lreg = np.zeros((17, n), U32)
        self.lreg[I.LCONST_0837] = I.f32_bits(0.8373)
        self.lreg[I.LONE] = I.f32_bits(1.0)
        self.lreg[11] = I.f32_bits(-1.0)
        self.flags = np.ones(n, bool)
        self.use_flags = np.zeros(n, bool)
        self.stack: list[tuple[np.ndarray, np.ndarray]] = []

    def enabled(self) -> np.ndarray:
        return np.where(self.use_flags, self.flags, True)

    def write(self, vd: int, value: np.ndarray, en: np.ndarray | None = None) -> None:
        if vd < 8:
            en = self.enabled() if en is None else en
            self.lreg[vd] = np.where(en, value.astype(U32), self.lreg[vd])

    def run(self, insns: list[I.Insn], dst: list[np.ndarray], params: dict[str, int] | None = None) -> None:
        """Execute `insns` once over every lane; SFPLOAD/SFPSTORE of operand k touch dst[k] (bit patterns).
        Run-time immediates (C++ expressions) are looked up in `params`."""
        for ins in insns:
            self.step(ins, dst, params or {})

    def step(self, ins: I.Insn, dst: list[np.ndarray], params: dict[str, int]) -> None:  # noqa: C901
        op, L, en = ins.op, self.lreg, self.enabled()
        imm = ins.imm if isinstance(ins.imm, int) else _eval(ins.imm, params)
        vc, vd = L[ins.vc], L[ins.vd] if ins.vd < 17 else None
        if op in ("SFPNOP", "INCRWC"):
            return
        if op == "SFPLOAD":
            b = dst[ins.tile]
            self.write(ins.vd, b if self.fp32_dest else b & U32(0xFFFF0000))
        elif op == "SFPSTORE":
            v = L[ins.vd]
            if not self.fp32_dest:  # SFPSTORE to a bf16 DST: flush denormals, truncate the mantissa
                v = np.where((v & _EXP) == 0, v & _SIGN, v) & U32(0xFFFF0000)
            dst[ins.tile][...] = np.where(en, v, dst[ins.tile])
        elif op == "SFPLOADI":
            m = ins.mod
            if m == I.LOADI_BF16:
                v = np.full(self.n, imm << 16, U32)
            elif m == I.LOADI_USHORT:
                v = np.full(self.n, imm, U32)
            elif m == I.LOADI_SHORT:
                v = np.full(self.n, (imm ^ 0x8000) - 0x8000, np.int64).astype(U32)
            elif m == I.LOADI_UPPER:
                v = (L[ins.vd] & U32(0xFFFF)) | U32(imm << 16)
            elif m == I.LOADI_LOWER:
                v = (L[ins.vd] & U32(0xFFFF0000)) | U32(imm)
            else:
                raise NotImplementedError(f"SFPLOADI mode {m}")
            self.write(ins.vd, v)
        elif op == "SFPCONFIG":
            if ins.vd in (11, 12, 13, 14) and ins.mod == 0:
                L[ins.vd] = L[0][0]  # constants: LReg[0]'s lanes are all equal here
            elif ins.vd in (11, 12, 13, 14) and ins.mod == 1:  # the ISA's default values
                L[ins.vd] = I.f32_bits({11: -1.0, 12: 1 / 65536, 13: -0.67487759, 14: -0.34484843}[ins.vd])
            else:
                raise NotImplementedError("SFPCONFIG other than LReg[11..14] = LReg[0]")
        elif op == "SFPMAD":
            self.write(ins.vd, fma(L[ins.va], L[ins.vb], L[ins.vc]))
        elif op == "SFPADDI":
            self.write(ins.vd, fma(np.full(self.n, imm << 16, U32), np.full(self.n, I.f32_bits(1.0), U32), vd))
        elif op == "SFPMULI":
            self.write(ins.vd, fma(np.full(self.n, imm << 16, U32), vd, np.zeros(self.n, U32)))
        elif op == "SFPIADD":
            m = ins.mod
            if m & I.IADD_IMM:
                r = vc.astype(np.int64) + _simm12(imm)
            elif m & I.IADD_SUB:
                r = vc.astype(np.int64) - vd.astype(np.int64)
            else:
                r = vc.astype(np.int64) + vd.astype(np.int64)
            r = (r & 0xFFFFFFFF).astype(U32)
            self.write(ins.vd, r)
            if ins.vd < 8 and not (m & I.CC_NONE):
                neg = (r & _SIGN) != 0
                self.flags = np.where(en, ~neg if m & I.CC_GTE0 else neg, self.flags)
        elif op == "SFPSHFT":
            amount = imm if ins.mod & 1 else None
            if amount is None:
                raise NotImplementedError("SFPSHFT by a register")
            amount = _simm12(amount)
            v = (vd << U32(amount & 31)) if amount >= 0 else (vd >> U32((-amount) & 31))
            self.write(ins.vd, v)
        elif op == "SFPSETCC":
            c = vc.view(np.int32)
            m = ins.mod
            if m & 8:
                f = np.zeros(self.n, bool)
            elif m & 1:
                f = np.full(self.n, bool(imm & 1))
            else:
                f = {I.SETCC_LT0: c < 0, I.SETCC_NE0: c != 0, I.SETCC_GTE0: c >= 0, I.SETCC_EQ0: c == 0}[m]
            f = np.where(self.use_flags, f, False)
            self.flags = np.where(en, f, self.flags)
        elif op == "SFPENCC":
            m = ins.mod
            if m & I.ENCC_EI:
                self.use_flags = np.full(self.n, bool(imm & 1))
            elif m & I.ENCC_EC:
                self.use_flags = ~self.use_flags
            self.flags = np.full(self.n, bool(imm & 2)) if m & I.ENCC_RI else np.ones(self.n, bool)
        elif op == "SFPPUSHC":
            assert len(self.stack) < 8, "SFPPUSHC on a full flag stack"
            self.stack.append((self.flags.copy(), self.use_flags.copy()))
        elif op == "SFPPOPC":
            if ins.mod != 0:
                raise NotImplementedError("SFPPOPC peek modes")
            self.flags, self.use_flags = self.stack.pop()
        elif op == "SFPEXEXP":
            e = ((vc >> U32(23)) & U32(0xFF)).astype(np.int64) - (0 if ins.mod & I.EXEXP_NODEBIAS else 127)
            self.write(ins.vd, (e & 0xFFFFFFFF).astype(U32))
            if ins.mod & (I.EXEXP_CC_NEG | I.EXEXP_CC_INV):
                raise NotImplementedError("SFPEXEXP setting flags")
        elif op == "SFPEXMAN":
            self.write(ins.vd, (vc & _MAN) | (U32(0) if ins.mod & 1 else U32(1 << 23)))
        elif op == "SFPSETEXP":
            if ins.mod & I.SETEXP_IMM:
                e = np.full(self.n, imm & 0xFF, U32)
            elif ins.mod & I.SETEXP_FROM_EXP:
                e = (vd >> U32(23)) & U32(0xFF)
            else:
                e = vd & U32(0xFF)
            self.write(ins.vd, (vc & ~_EXP) | (e << U32(23)))
        elif op == "SFPSETMAN":
            man = U32((imm << 11) & 0x7FFFFF) if ins.mod & 1 else (vd & _MAN)
            self.write(ins.vd, (vc & ~_MAN) | man)
        elif op == "SFPSETSGN":
            s = U32((imm & 1) << 31) if ins.mod & 1 else (vd & _SIGN)
            self.write(ins.vd, (vc & ~_SIGN) | s)
        elif op == "SFPABS":
            if ins.mod & 1:
                self.write(ins.vd, np.where(vc > U32(0xFF800000), vc, vc & ~_SIGN))
            else:
                self.write(ins.vd, np.abs(vc.view(np.int32)).view(U32))
        elif op == "SFPMOV":
            self.write(ins.vd, vc ^ _SIGN if ins.mod & 1 else vc.copy())
        elif op in ("SFPAND", "SFPOR", "SFPXOR"):
            f = {"SFPAND": np.bitwise_and, "SFPOR": np.bitwise_or, "SFPXOR": np.bitwise_xor}[op]
            self.write(ins.vd, f(vd, vc))
        elif op == "SFPNOT":
            self.write(ins.vd, ~vc)
        elif op == "SFPSWAP":
            if ins.mod == I.SWAP_SWAP:
                lo, hi = vc.copy(), vd.copy()  # new VD, new VC
                new_d, new_c = lo, hi
            elif ins.mod == I.SWAP_MINMAX:
                c_small = _signmag_key(vc) < _signmag_key(vd)
                new_d = np.where(c_small, vc, vd)
                new_c = np.where(c_small, vd, vc)
            else:
                raise NotImplementedError(f"SFPSWAP mode {ins.mod}")
            self.write(ins.vc, new_c, en)
            self.write(ins.vd, new_d, en)
        elif op == "SFPCAST":
            mag = (vc & ~_SIGN).astype(np.float64)
            r = np.where(vc & _SIGN, -mag, mag).astype(np.float32).view(U32)
            self.write(ins.vd, r)
        elif op == "SFP_STOCH_RND":
            self.write(ins.vd, _stoch_rnd(vc, ins.mod))
        elif op == "SFPDIVP2":
            e = (vc >> U32(23)) & U32(0xFF)
            ne = np.where(e == 255, e, (e + U32(imm)) & U32(0xFF)) if ins.mod & 1 else np.full(self.n, imm & 0xFF, U32)
            self.write(ins.vd, (vc & ~_EXP) | (ne << U32(23)))
        else:
            raise NotImplementedError(op)


def _simm12(imm: int) -> int:
    """A 12-bit two's complement immediate field's value."""
    imm &= 0xFFF
    return imm - 0x1000 if imm & 0x800 else imm


def _stoch_rnd(c: np.ndarray, mode: int) -> np.ndarray:
    """SFPSTOCHRND with the deterministic rounding constant (ISA SFPSTOCHRND_FloatFloat.md, _FloatInt.md)."""
    exp = ((c >> U32(23)) & U32(0xFF)).astype(np.int64)
    if mode in (0, 1):  # FP32 -> FP16A / BF16 precision
        keep = 10 if mode == 0 else 7
        drop = 23 - keep
        low = c & U32((1 << drop) - 1)
        r = c - low + np.where(low.astype(np.int64) << keep >= 0x400000, U32(1 << drop), U32(0))
        r = np.where(exp == 255, c & U32(0xFF800000), r)
        return np.where(exp == 0, U32(0), r).astype(U32)
    keep_sign, max_mag = {2: (False, 255), 3: (True, 127), 6: (False, 65535), 7: (True, 32767)}[mode]
    e = exp - 127
    man = ((c & _MAN) | U32(0x800000)).astype(np.int64)
    shifted = np.where(e >= 0, man << np.clip(e, 0, 40), man >> np.clip(-e, 0, 63))
    mag = (shifted >> 23) + ((shifted & 0x7FFFFF) >= 0x400000)
    mag = np.where(e < -1, 0, np.where(e >= 16, max_mag, np.minimum(mag, max_mag)))
    sign = np.where(keep_sign & (mag != 0), c.astype(np.int64) & 0x80000000, 0)
    return (sign + mag).astype(U32)


def _eval(expr: str, params: dict[str, int]) -> int:
    """A run-time immediate (the C++ expression of a constant) evaluated from `params` (name -> value)."""
    return int(eval(expr.replace("&&", " and "), {"__builtins__": {}}, dict(params)))  # noqa: S307


def to_dst(x: np.ndarray, fp32_dest: bool) -> np.ndarray:
    """An input as a DST tile holds it: FP32 bits, or bf16 in the high half — rounded to nearest even and with every
    NaN made +NaN, as ttnn converts a float32 array to a bf16 tensor on the host."""
    x = np.asarray(x, np.float32).ravel()
    if fp32_dest:
        return x.view(U32).copy()
    import ml_dtypes

    b = x.astype(ml_dtypes.bfloat16).astype(np.float32).view(U32)
    return np.where(np.isnan(x), U32(0x7FC00000), b)


def execute(program, operands: list[np.ndarray], fp32_dest: bool, params: dict[str, int] | None = None) -> np.ndarray:
    """Run a routine (anything with setup, body, teardown and operands, e.g. sfpu.Program) on float32 arrays of one
    shape: operands are the DST tiles it reads (unary: [x]; binary: [a, b]; where: [c, a, b]).  Returns the result
    tile as float32, as it would leave a DST of that format."""
    shape = np.shape(operands[0])
    dst = [to_dst(x, fp32_dest) for x in operands]
    while len(dst) < program.operands:
        dst.append(np.full(dst[0].shape, 0x7FC00000, U32))  # the output tile, poisoned
    m = Machine(dst[0].size, fp32_dest)
    m.run(list(program.setup), dst, params)
    m.run(list(program.body), dst, params)
    m.run(list(program.teardown), dst, params)
    return dst[program.operands - 1].view(np.float32).reshape(shape)
