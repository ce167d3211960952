"""How a compute kernel spells an SFPU op: the one place SFPU code is chosen.

Today every SFPU op is the tt-metal kernel-API call of its op-table entry (`OpDef.ttmetal`, checked
against ttnn 0.81.1's headers): what a card with Tenstorrent's sfpi compiler runs. The stand-in
compiler cannot build those headers (they are written with sfpi's vector types), so the simulated
run refuses such kernels. Raw SFPU routines written with tt-llk's instruction macros (which any
RISC-V GCC assembles) plug in here: `sfpu_spelling` is the whole integration point.
"""

from __future__ import annotations

from dataclasses import dataclass

from tilegrid.errors import CompileError
from tilegrid.ops import OpDef, TtMetal
from tilegrid.targets.ttmetal.cpp import cpp_float

# SFPU helpers that are not op-table entries
FILL = TtMetal("api/compute/eltwise_unary/fill.h", "fill_tile_init()", "fill_tile({out}, {value})")
# a binary op with one of the compute's f32 scalars, in place on the other operand's DST tile
SCALAR = {name: TtMetal("api/compute/eltwise_unary/binop_with_scalar.h", "binop_with_scalar_tile_init()",
                        f"{name}_unary_tile({{x}}, __builtin_bit_cast(uint32_t, {{scale}}))")
          for name in ("add", "sub", "rsub", "mul", "div")}
COPY_DST = TtMetal("api/compute/copy_dest_values.h", "copy_dest_values_init()",
                   "copy_dest_values<DataFormat::{dst_format}>({x}, {out})")


@dataclass(frozen=True)
class SfpuCode:
    """C++ of one SFPU op: `header` to include, `definitions` to put before kernel_main (a raw
    routine's functions), `init` to run before a run of these ops, `call` to apply it to DST tiles.
    `needs_sfpi`: built only by Tenstorrent's sfpi compiler (the kernel API's SFPU calls), so the
    simulated device refuses it; a raw routine (tt-llk's instruction macros) does not."""

    header: str | None
    definitions: str
    init: str
    call: str
    needs_sfpi: bool = True


def sfpu_spelling(name: str, spell: TtMetal | None, operands: dict[str, str], params: dict[str, str],
                  scaled: bool = False, loc: str | None = None) -> SfpuCode:
    """The SFPU code of op `name` on DST tiles (`operands`: {x} or {a}, {b}[, {c}] and {out} as C++
    index expressions; `params`: parameters and {scale} as C++ literals / expressions).

    To plug in raw routines, return `SfpuCode(None, definitions, init, call, needs_sfpi=False)` here
    for the ops they cover (e.g. from `tilegrid.targets.ttmetal.sfpu.routine(name)`); nothing else in
    the target changes, and the simulated device then runs those ops."""
    if spell is None:
        raise CompileError(f"the tt-metal target has no spelling of the op '{name}'", loc,
                           note="tt-metal's kernel API has no such SFPU call; compute it from other ops")
    call = spell.scaled if scaled else spell.call
    if call is None:
        raise CompileError(f"the tt-metal target cannot apply a scale inside '{name}'", loc)
    fields = {**operands, **params}
    return SfpuCode(spell.header, "", spell.init.format(**fields), call.format(**fields))


def op_spelling(op: OpDef, operands: dict[str, str], params: dict[str, object], scaled: bool = False,
                loc: str | None = None) -> SfpuCode:
    """An op-table entry on DST tiles (see `sfpu_spelling`); parameters become C++ literals."""
    if op.name == "pow" and int(params["n"]) < 0:
        raise CompileError("the tt-metal target spells x ** n only for n >= 0 (power_tile)", loc,
                           note="write 1 / x ** -n: recip(x ** -n)")
    return sfpu_spelling(op.name, op.ttmetal, operands, {k: literal(v) for k, v in params.items()}, scaled, loc)


def literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return cpp_float(v)
    return str(v)
