"""How a compute kernel spells an SFPU op: the one place SFPU code is chosen.

Each SFPU op is spelled one of two ways, selectable per op (`SfpuModes`, from the kernel option
`sfpu=`):

- "api": the tt-metal kernel-API call of its op-table entry (`OpDef.ttmetal`, checked against
  ttnn 0.81.1's headers), what a card with Tenstorrent's sfpi compiler runs. The stand-in compiler
  of the simulated device cannot build those headers (they are written with sfpi's vector types), so
  the simulated run refuses such kernels, naming the op and the user's line.
- "raw": tilegrid's own routine (tilegrid/targets/ttmetal/sfpu.py: raw Tensix instructions through
  tt-llk's TTI_SFP* macros), which any RISC-V GCC assembles; it runs on the simulated device.

"auto" (the default) is "raw" where a routine exists when the program runs on the simulated device,
and "api" otherwise (a program compiled for a card). The op's meaning stays in the op table
(tilegrid/ops.py); its raw spelling is sfpu.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tilegrid.errors import CompileError, SourceLoc
from tilegrid.ops import OPS, OpDef, TtMetal
from tilegrid.targets.ttmetal.cpp import cpp_float
from tilegrid.targets.ttmetal.sfpu import RAW, routine

# SFPU helpers that are not op-table entries
FILL = TtMetal("api/compute/eltwise_unary/fill.h", "fill_tile_init()", "fill_tile({out}, {value})")
# a binary op with one of the compute's f32 scalars, in place on the other operand's DST tile
SCALAR = {name: TtMetal("api/compute/eltwise_unary/binop_with_scalar.h", "binop_with_scalar_tile_init()",
                        f"{name}_unary_tile({{x}}, __builtin_bit_cast(uint32_t, {{scale}}))")
          for name in ("add", "sub", "rsub", "mul", "div")}
COPY_DST = TtMetal("api/compute/copy_dest_values.h", "copy_dest_values_init()",
                   "copy_dest_values<DataFormat::{dst_format}>({x}, {out})")

Scalar = float | str  # a value known when the kernel compiles, or a C++ float expression (run time)
MODES = ("api", "raw", "auto")
HELPERS = ("fill", "copy")  # selectable names that are not op-table entries
# op-table entries (and helpers) with a raw routine (also raw: x + s, x - s, s - x, x * s, x / s with a scalar s)
RAW_OPS = frozenset(k for k in RAW if k in OPS or k in HELPERS)


@dataclass(frozen=True)
class SfpuModes:
    """Which spelling each SFPU op gets: `default` ("api", "raw" or "auto") unless `ops` names the op;
    `simulated`: the program runs on the simulated device (where "auto" means raw)."""

    default: str = "auto"
    ops: tuple[tuple[str, str], ...] = ()
    simulated: bool = False

    @staticmethod
    def of(option: str | Mapping[str, str] | None, simulated: bool, loc: SourceLoc | None = None,
           kernel: str | None = None) -> SfpuModes:
        """The kernel option `sfpu=` ("api", "raw", "auto", None = "auto", or {op: mode}), checked."""
        note = ("sfpu= takes 'api' (tt-metal's kernel API; needs Tenstorrent's sfpi compiler), 'raw' (tilegrid's "
                "own SFPU routines), 'auto' (raw on the simulated device where a routine exists), or a dict "
                "{op: mode}, e.g. sfpu={'exp': 'raw'}")
        if option is None:
            return SfpuModes("auto", (), simulated)
        if isinstance(option, str):
            if option not in MODES:
                raise CompileError(f"sfpu={option!r} is not a mode", loc, kernel=kernel, note=note)
            return SfpuModes(option, (), simulated)
        if not isinstance(option, Mapping):
            raise CompileError(f"sfpu= must be a string or a dict, got {type(option).__name__}", loc, kernel=kernel,
                               note=note)
        for op, mode in option.items():
            if op not in OPS and op not in HELPERS and op != "default":
                raise CompileError(f"sfpu= names {op!r}, which is no SFPU op", loc, kernel=kernel,
                                   note="the ops are the op table's names (tilegrid.ops.OPS: exp, recip, max, ...) "
                                        "and 'fill', 'copy'")
            if mode not in MODES:
                raise CompileError(f"sfpu={{{op!r}: {mode!r}}}: {mode!r} is not a mode", loc, kernel=kernel,
                                   note=note)
        default = option.get("default", "auto")
        return SfpuModes(default, tuple(sorted((k, v) for k, v in option.items() if k != "default")), simulated)

    def mode(self, op: str) -> str:
        return dict(self.ops).get(op, self.default)


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


def has_raw(op: str) -> bool:
    """Whether tilegrid has a raw routine for the SFPU op (or helper) `op` in some form."""
    return op in RAW_OPS


def literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return cpp_float(v)
    return str(v)


def raw_scalar(v: Scalar) -> float | str:
    """A scalar as a raw routine takes it: a float baked in, or the C++ expression of its f32 bits."""
    return float(v) if isinstance(v, (int, float)) else f"__builtin_bit_cast(uint32_t, (float)({v}))"


class Speller:
    """The SFPU code of ops on DST tiles (C++ index expressions) for one compute kernel."""

    def __init__(self, modes: SfpuModes, fp32_dest: bool) -> None:
        self.modes = modes
        self.fp32_dest = fp32_dest

    def _raw(self, key: str, available: bool, loc: str | None) -> bool:
        mode = self.modes.mode(key)
        if mode == "auto":
            return self.modes.simulated and available
        if mode == "raw" and not available:
            raise CompileError(f"there is no raw SFPU routine for '{key}' in this form (sfpu='raw' selected it)", loc,
                               note=f"raw routines: {', '.join(sorted(RAW_OPS))}; select the kernel API for this op: "
                                    f"sfpu={{'{key}': 'api'}} (it then runs only on a card with Tenstorrent's sfpi)")
        return mode == "raw"

    def _routine(self, name: str, dst: list[str], **params: float | str | None) -> SfpuCode:
        r = routine(name, "raw", self.fp32_dest, **params)
        return SfpuCode(None, r.definitions, "", r.call(*dst).rstrip(";"), needs_sfpi=False)

    @staticmethod
    def _api(name: str, spell: TtMetal | None, fields: dict[str, str], scaled: bool, loc: str | None) -> SfpuCode:
        if spell is None:
            raise CompileError(f"the tt-metal target has no spelling of the op '{name}'", loc,
                               note="tt-metal's kernel API has no such SFPU call; compute it from other ops")
        call = spell.scaled if scaled else spell.call
        if call is None:
            raise CompileError(f"the tt-metal target cannot apply a scale inside '{name}'", loc)
        return SfpuCode(spell.header, "", spell.init.format(**fields), call.format(**fields))

    def op(self, d: OpDef, operands: dict[str, str], params: dict[str, object], scale: Scalar | None = None,
           loc: str | None = None) -> SfpuCode:
        """Op-table entry `d` on DST tiles: {x} (in place) or {a}, {b}[, {c}] and {out}; `scale`: op(x * scale)."""
        if d.name == "pow" and int(params["n"]) < 0:  # type: ignore[call-overload]
            raise CompileError("the tt-metal target spells x ** n only for n >= 0 (power_tile)", loc,
                               note="write 1 / x ** -n: recip(x ** -n)")
        available = d.name in RAW and not d.params and (scale is None or d.scalable)
        if self._raw(d.name, available, loc):
            order = {1: ["x"], 2: ["a", "b", "out"], 3: ["c", "a", "b", "out"]}[d.arity]
            extra = {} if scale is None else {"scale": raw_scalar(scale)}
            return self._routine(d.name, [operands[k] for k in order], **extra)
        fields = {**operands, **{k: literal(v) for k, v in params.items()}}
        if scale is not None:
            fields["scale"] = literal(scale)
        return self._api(d.name, d.ttmetal, fields, scale is not None, loc)

    def fill(self, out: str, value: Scalar, loc: str | None = None) -> SfpuCode:
        """DST[out] = value."""
        if self._raw("fill", True, loc):
            return self._routine("fill", [out], value=raw_scalar(value))
        return self._api("fill", FILL, {"out": out, "value": literal(value)}, False, loc)

    def copy(self, x: str, out: str, loc: str | None = None) -> SfpuCode:
        """DST[out] = DST[x]."""
        if self._raw("copy", True, loc):
            return self._routine("copy", [x, out])
        fmt = "Float32" if self.fp32_dest else "Float16_b"
        return self._api("copy", COPY_DST, {"x": x, "out": out, "dst_format": fmt}, False, loc)

    def scalar(self, name: str, op: str, x: str, s: Scalar, loc: str | None = None) -> SfpuCode:
        """DST[x] = x op s (name add, sub, mul, div) or s - x (name rsub), in place; `op`: the op-table entry the
        user wrote (what sfpu= selects).  Raw: one multiply-add x * a + b; x / s is x * fl(1 / s)."""
        if self._raw(op, True, loc):
            if isinstance(s, str):
                neg: Scalar = f"-({s})"
                inv: Scalar = f"1.0f / ({s})"
            else:
                neg, inv = -float(s), float(1.0 / float(s)) if float(s) != 0 else float("inf")
            a, b = {"add": (1.0, s), "sub": (1.0, neg), "rsub": (-1.0, s), "mul": (s, 0.0), "div": (inv, 0.0)}[name]
            return self._routine("mad", [x], a=raw_scalar(a), b=raw_scalar(b))
        return self._api(f"{op} with a scalar", SCALAR[name], {"x": x, "scale": literal(s)}, False, loc)
