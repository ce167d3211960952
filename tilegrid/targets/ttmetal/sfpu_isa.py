"""The Wormhole B0 vector unit (SFPU) as a Python instruction stream: one `Insn` per Tensix instruction.

tilegrid writes its own SFPU routines (tilegrid/targets/ttmetal/sfpu.py) instead of calling tt-metal's sfpi-compiled
ones, because the sfpi compiler cannot be installed here.  A routine is a list of `Insn`s; this module knows, per
instruction, which `TTI_SFP*` macro of tt-llk's ckernel_ops.h emits it (argument order, immediate widths), which
LRegs it reads and writes, and whether its result arrives a cycle late.  `schedule` inserts the SFPNOPs the ISA
requires (WormholeB0 TensixCoprocessor/SFPMAD.md & co: "software must ensure that on the next cycle, the Vector
Unit does not execute an instruction which reads from any location written by the SFPMAD"; SFPSWAP is followed by
an SFPNOP, which the hardware would otherwise stall for).  The same `Insn`s are executed by the NumPy model in
sfpu_model.py, so a routine's numerics can be checked without a device.

Names and modifier values follow the ISA documents (tenstorrent/tt-isa-documentation, WormholeB0/TensixTile/
TensixCoprocessor/SFP*.md); LReg numbering: 0-7 general, 8 = 0.8373, 9 = 0.0, 10 = 1.0 (read-only), 11-14 written
by SFPCONFIG only (sfpi reserves 11 = -1.0: tilegrid's routines borrow it and put -1.0 back), 15 = lane index * 2.
"""

from __future__ import annotations

import dataclasses
import struct

# ---- registers and modifiers (values from the ISA pages) ----------------------------------------------------------
LCONST_0837, LZERO, LONE = 8, 9, 10

LOADI_BF16, LOADI_FP16, LOADI_USHORT, LOADI_SHORT, LOADI_UPPER, LOADI_LOWER = 0, 1, 2, 4, 8, 10
SETCC_LT0, SETCC_NE0, SETCC_GTE0, SETCC_EQ0 = 0, 2, 4, 6
IADD_IMM, IADD_SUB = 1, 2  # VD = VC + imm / VD = VC - VD (else VD = VC + VD)
CC_LT0, CC_NONE, CC_GTE0 = 0, 4, 8  # SFPIADD / how LaneFlags are set from the result's sign
ENCC_EC, ENCC_EI, ENCC_RI = 1, 2, 8  # SFPENCC Mod1; Imm2 bit 0 = enable, bit 1 = flag value
EXEXP_NODEBIAS, EXEXP_CC_NEG, EXEXP_CC_INV = 1, 2, 8
SETEXP_IMM, SETEXP_FROM_EXP = 1, 2  # else: exponent from VD's low 8 bits
SWAP_SWAP, SWAP_MINMAX = 0, 1  # SFPSWAP: VD = min, VC = max (sign-magnitude total order: +NaN largest)
STOCHRND_FP16B = 1  # SFPSTOCHRND FP32 -> BF16 precision, round to nearest, ties away from zero
STOCHRND_UINT16, STOCHRND_INT16 = 6, 7
ADDR_MOD = 3  # SFPLOAD/SFPSTORE address modifier; with the address-mod base set this is ADDR_MOD_7 (no increment)

# Instructions whose result arrives a cycle late (ISA "Instruction scheduling": 2-cycle latency).
SLOW = {"SFPMAD", "SFPADDI", "SFPMULI", "SFPLUT", "SFPLUTFP32"}


def f32_bits(x: float) -> int:
    """The IEEE binary32 bit pattern of x (rounded to nearest float32 first)."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b & 0xFFFFFFFF))[0]


@dataclasses.dataclass(frozen=True)
class Insn:
    """One SFPU (or RWC) instruction.  `imm` may be a C++ expression (a run-time value): the instruction is then
    encoded at run time (tt-llk's TT_ macro, through the instruction buffer) instead of by the assembler (TTI_).
    `tile` is the operand a SFPLOAD/SFPSTORE addresses (0 = the routine's first DST tile)."""

    op: str
    vd: int = 0
    vc: int = 0
    vb: int = 0
    va: int = 0
    imm: int | str = 0
    mod: int = 0
    tile: int = 0
    note: str = ""

    @property
    def reads(self) -> frozenset[int]:
        op, m = self.op, self.mod
        if op in ("SFPLOAD", "SFPNOP", "SFPENCC", "INCRWC", "SFPCOMPC", "SFPPUSHC", "SFPPOPC"):
            return frozenset()
        if op == "SFPSTORE":
            return frozenset({self.vd})
        if op == "SFPLOADI":
            return frozenset({self.vd}) if m in (LOADI_UPPER, LOADI_LOWER) else frozenset()
        if op == "SFPMAD":
            return frozenset({self.va, self.vb, self.vc})
        if op in ("SFPADDI", "SFPMULI"):
            return frozenset({self.vd})
        if op == "SFPIADD":
            return frozenset({self.vc} if m & IADD_IMM else {self.vc, self.vd})
        if op == "SFPSHFT":
            return frozenset({self.vd} if m & 1 else {self.vd, self.vc})
        if op in ("SFPSETEXP", "SFPSETSGN", "SFPSETMAN"):
            return frozenset({self.vc} if m & 1 else {self.vc, self.vd})
        if op in ("SFPAND", "SFPOR", "SFPXOR", "SFPSWAP"):
            return frozenset({self.vc, self.vd})
        if op == "SFPCONFIG":
            return frozenset({0})
        return frozenset({self.vc})  # SETCC, EXEXP, EXMAN, ABS, MOV, NOT, CAST, STOCH_RND, DIVP2

    @property
    def writes(self) -> frozenset[int]:
        if self.op in ("SFPSTORE", "SFPNOP", "SFPENCC", "SFPSETCC", "INCRWC", "SFPCOMPC", "SFPPUSHC", "SFPPOPC"):
            return frozenset()
        if self.op == "SFPSWAP":
            return frozenset({self.vc, self.vd})
        return frozenset({self.vd})

    def args(self, addr: str | None = None) -> tuple[int | str, ...]:
        """The TTI_/TT_ macro arguments, in ckernel_ops.h order.  `addr`: the DST address of a load/store."""
        op, imm = self.op, self.imm
        if isinstance(imm, int) and op in ("SFPIADD", "SFPSHFT"):
            imm &= 0xFFF  # 12-bit two's complement field
        if op in ("SFPLOAD", "SFPSTORE"):
            return (self.vd, self.mod, ADDR_MOD, addr if addr is not None else imm)
        if op == "SFPLOADI":
            return (self.vd, self.mod, imm)
        if op == "SFPMAD":
            return (self.va, self.vb, self.vc, self.vd, self.mod)
        if op in ("SFPADDI", "SFPMULI"):
            return (imm, self.vd, self.mod)
        if op == "SFPCAST":
            return (self.vc, self.vd, self.mod)
        if op == "SFP_STOCH_RND":
            return (0, 0, self.vb, self.vc, self.vd, self.mod)  # deterministic rounding (no PRNG)
        if op == "SFPCONFIG":
            return (imm, self.vd, self.mod)
        if op == "SFPNOP":
            return ()
        if op == "INCRWC":
            return (0, imm, 0, 0)
        return (imm, self.vc, self.vd, self.mod)

    def cpp(self, addr: str | None = None) -> str:
        a = self.args(addr)
        runtime = any(isinstance(x, str) for x in a)
        name = ("TT_" if runtime else "TTI_") + self.op
        text = name if self.op == "SFPNOP" else f"{name}({', '.join(_lit(x) for x in a)})"
        return f"{text};" + (f"  // {self.note}" if self.note else "")


def _lit(x: int | str) -> str:
    """A macro argument: immediates (bit patterns) in hex, small numbers (registers, modes) in decimal."""
    return f"0x{x:x}" if isinstance(x, int) and x > 15 else str(x)


# ---- constructors, one per instruction form (the ISA's semantics in each docstring) --------------------------------


def load(vd: int, tile: int = 0, note: str = "") -> Insn:
    """VD = Dst[tile][the current 4 rows x 8 even/odd columns], as FP32 (the DST format the config selects)."""
    return Insn("SFPLOAD", vd=vd, tile=tile, note=note)


def store(vd: int, tile: int = 0, note: str = "") -> Insn:
    """Dst[tile][...] = VD (a bf16 DST truncates the mantissa and flushes denormals)."""
    return Insn("SFPSTORE", vd=vd, tile=tile, note=note)


def loadi(vd: int, mode: int, imm16: int | str, note: str = "") -> Insn:
    return Insn("SFPLOADI", vd=vd, mod=mode, imm=imm16, note=note)


def const(vd: int, value: float, note: str = "") -> list[Insn]:
    """VD = value in every lane: one SFPLOADI when value is a bf16, else two (upper then lower 16 bits)."""
    b = f32_bits(value)
    if b & 0xFFFF == 0:
        return [loadi(vd, LOADI_BF16, b >> 16, note or repr(value))]
    return [loadi(vd, LOADI_UPPER, b >> 16, note or repr(value)), loadi(vd, LOADI_LOWER, b & 0xFFFF)]


def const_bits(vd: int, bits: int | str, note: str = "") -> list[Insn]:
    """VD = a 32-bit pattern; `bits` may be a C++ uint32_t expression (a run-time constant)."""
    if isinstance(bits, int):
        if bits & 0xFFFF == 0:
            return [loadi(vd, LOADI_BF16, bits >> 16, note)]
        return [loadi(vd, LOADI_UPPER, bits >> 16, note), loadi(vd, LOADI_LOWER, bits & 0xFFFF)]
    return [loadi(vd, LOADI_UPPER, f"(({bits}) >> 16)", note), loadi(vd, LOADI_LOWER, f"(({bits}) & 0xFFFF)")]


def config(lreg: int) -> Insn:
    """LReg[lreg] (11..14) = LReg[0] (its first 8 lanes, broadcast): the only way to write those registers."""
    assert lreg in (11, 12, 13, 14)
    return Insn("SFPCONFIG", vd=lreg, note=f"LReg[{lreg}] = LReg[0]")


def mad(a: int, b: int, c: int, d: int, note: str = "") -> Insn:
    """VD = VA * VB + VC in FP32: one rounding (to nearest even); denormal inputs and outputs are zero."""
    return Insn("SFPMAD", va=a, vb=b, vc=c, vd=d, note=note)


def addi(vd: int, value: float, note: str = "") -> Insn:
    """VD = VD + value (value must be a bf16)."""
    b = f32_bits(value)
    assert b & 0xFFFF == 0, f"{value} is not a bf16"
    return Insn("SFPADDI", vd=vd, imm=b >> 16, note=note)


def iadd(vc: int, vd: int, cc: int = CC_NONE, note: str = "") -> Insn:
    """VD = VC + VD (32-bit integers); cc: set LaneFlags from the sign (CC_LT0, CC_GTE0) or leave them."""
    return Insn("SFPIADD", vc=vc, vd=vd, mod=cc, note=note)


def isub(vc: int, vd: int, cc: int = CC_NONE, note: str = "") -> Insn:
    """VD = VC - VD (32-bit integers)."""
    return Insn("SFPIADD", vc=vc, vd=vd, mod=IADD_SUB | cc, note=note)


def iadd_imm(vc: int, vd: int, imm: int, cc: int = CC_NONE, note: str = "") -> Insn:
    """VD = VC + imm (imm a signed 12-bit integer)."""
    assert -2048 <= imm < 2048
    return Insn("SFPIADD", vc=vc, vd=vd, imm=imm, mod=IADD_IMM | cc, note=note)


def shft(vd: int, amount: int, note: str = "") -> Insn:
    """VD = VD << amount (amount < 0: logical shift right)."""
    return Insn("SFPSHFT", vd=vd, imm=amount, mod=1, note=note)


def setcc(vc: int, mode: int, note: str = "") -> Insn:
    """LaneFlags = (VC as int32 <0 / !=0 / >=0 / ==0), for enabled lanes."""
    return Insn("SFPSETCC", vc=vc, mod=mode, note=note)


def encc(enable: bool | None = None, note: str = "") -> Insn:
    """LaneFlags = true in every lane; enable: also turn predication on (True) or off (False)."""
    if enable is None:
        return Insn("SFPENCC", note=note or "all lanes on")
    return Insn("SFPENCC", imm=3 if enable else 0, mod=ENCC_EI | ENCC_RI if enable else ENCC_EI,
                note=note or ("predication on" if enable else "predication off"))


def exexp(vc: int, vd: int, biased: bool = True, note: str = "") -> Insn:
    """VD = VC's exponent field as an integer: 0..255 (biased) or -127..128."""
    return Insn("SFPEXEXP", vc=vc, vd=vd, mod=EXEXP_NODEBIAS if biased else 0, note=note)


def exman(vc: int, vd: int, hidden_one: bool = True, note: str = "") -> Insn:
    """VD = VC's 23 mantissa bits, with the implicit leading one at bit 23 (or zero)."""
    return Insn("SFPEXMAN", vc=vc, vd=vd, mod=0 if hidden_one else 1, note=note)


def setexp(vc: int, vd: int, imm: int | None = None, note: str = "") -> Insn:
    """VD = {VC.sign, E, VC.mantissa}: E = imm, or VD's low 8 bits (an integer exponent)."""
    if imm is None:
        return Insn("SFPSETEXP", vc=vc, vd=vd, note=note)
    return Insn("SFPSETEXP", vc=vc, vd=vd, imm=imm, mod=SETEXP_IMM, note=note)


def setman(vc: int, vd: int, imm: int | None = None, note: str = "") -> Insn:
    """VD = {VC.sign, VC.exponent, M}: M = imm << 11 (imm a 12-bit immediate), or VD's mantissa."""
    if imm is None:
        return Insn("SFPSETMAN", vc=vc, vd=vd, note=note)
    return Insn("SFPSETMAN", vc=vc, vd=vd, imm=imm, mod=1, note=note)


def setsgn(vc: int, vd: int, sign: int | None = None, note: str = "") -> Insn:
    """VD = {S, VC.exponent, VC.mantissa}: S = sign (0/1), or VD's sign bit."""
    if sign is None:
        return Insn("SFPSETSGN", vc=vc, vd=vd, note=note)
    return Insn("SFPSETSGN", vc=vc, vd=vd, imm=sign, mod=1, note=note)


def fabs(vc: int, vd: int, note: str = "") -> Insn:
    """VD = |VC| as FP32 (a negative NaN keeps its sign)."""
    return Insn("SFPABS", vc=vc, vd=vd, mod=1, note=note)


def mov(vc: int, vd: int, negate: bool = False, note: str = "") -> Insn:
    """VD = VC (negate: with its sign bit flipped)."""
    return Insn("SFPMOV", vc=vc, vd=vd, mod=1 if negate else 0, note=note)


def swap(vc: int, vd: int, mode: int = SWAP_MINMAX, note: str = "") -> Insn:
    """SWAP_MINMAX: VD = min(VC, VD), VC = max(VC, VD), in the total order -NaN < -inf < ... < +inf < +NaN."""
    return Insn("SFPSWAP", vc=vc, vd=vd, mod=mode, note=note)


def cast(vc: int, vd: int, note: str = "") -> Insn:
    """VD = float(VC), VC a sign-magnitude integer, rounded to nearest even."""
    return Insn("SFPCAST", vc=vc, vd=vd, note=note)


def stoch_rnd(vc: int, vd: int, mode: int, note: str = "") -> Insn:
    """SFPSTOCHRND, deterministic: FP32 -> bf16 precision (mode 1) or FP32 -> bounded integer (modes 2, 3, 6, 7),
    rounding to nearest with ties away from zero."""
    return Insn("SFP_STOCH_RND", vc=vc, vd=vd, mod=mode, note=note)


def nop() -> Insn:
    return Insn("SFPNOP")


def next_rows() -> Insn:
    """Advance the DST row counter to the next 4 rows x 16 columns (two SFPLOADs' worth: even, odd columns)."""
    return Insn("INCRWC", imm=2, note="next 32 datums")


# ---- scheduling ---------------------------------------------------------------------------------------------------


def schedule(insns: list[Insn]) -> list[Insn]:
    """Insert the SFPNOPs the ISA requires: after a slow instruction whose result the next one reads, and after
    every SFPSWAP (the hardware would stall a cycle anyway; the NOP makes it explicit and costs the same)."""
    out: list[Insn] = []
    for ins in insns:
        if out:
            prev = out[-1]
            if (prev.op in SLOW and prev.writes & ins.reads) or prev.op == "SFPSWAP":
                out.append(nop())
        out.append(ins)
    if out and out[-1].op == "SFPSWAP":
        out.append(nop())
    return out


def count(insns: list[Insn]) -> int:
    """SFPU instructions (INCRWC, a counter update, is not one)."""
    return sum(1 for i in insns if i.op != "INCRWC")
