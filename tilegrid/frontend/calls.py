"""Calls in thread bodies: tilegrid functions, methods of blocks / CBs / DMA handles /
semaphores, the CB protocol (reserve, pop, push, store), DMA and multicast, and inlined helpers.

A mixin of `ThreadBuilder` (builder.py), which provides emit / eval / error and block math.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from xdsl.ir import SSAValue

from tilegrid.errors import CompileError
from tilegrid.frontend.values import (
    Blk,
    CBRef,
    DMAHandle,
    Idx,
    Method,
    SemRef,
    Slot,
    StreamRef,
    StreamView,
)
from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.ops import API, OPS, OpDef, broadcast_shape

TABLE_METHODS = {name for name, d in API.items() if d.method}  # x.exp(), x.clamp(lo, hi), ...


def parse_function(fn: Callable, what: str) -> tuple[str, int, ast.AST, dict, dict]:
    """A function's file, indentation, AST (with its real line numbers), globals and closure values."""
    file, indent, tree = _parsed(fn, what)
    closure = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            closure[name] = cell.cell_contents
        except ValueError:
            pass
    return file, indent, tree, fn.__globals__, closure


_trees: dict[int, tuple[Any, str, int, ast.AST]] = {}


def _parsed(fn: Callable, what: str) -> tuple[str, int, ast.AST]:
    """The source's file, indentation and AST, parsed once per code object (the builder only reads
    the tree; a kernel built for many shapes re-parses nothing). Keyed by the code object's identity
    (held, so its id stays its own): equal code objects of two files are two sources."""
    code = fn.__code__
    hit = _trees.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1:]
    file = inspect.getsourcefile(fn) or "<unknown>"
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise CompileError(
            f"the source of {what} is not available",
            note="tilegrid compiles thread functions from their source: define kernels in a .py file",
        ) from e
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first - 1)
    _trees[id(code)] = (code, file, len(lines[0]) - len(lines[0].lstrip()), tree.body[0])
    return _trees[id(code)][1:]


class CallsMixin:
    """Calls, CBs, DMA and semaphores for ThreadBuilder."""

    # ---- calls ----------------------------------------------------------------------------

    def call_args(self, node: ast.Call, names: list[str], required: int) -> list[Any]:
        """Positional and keyword arguments of a call, in the order of `names`."""
        vals: list[Any] = [self.eval(a) for a in node.args]
        if len(vals) > len(names):
            raise self.error(f"takes at most {len(names)} arguments, got {len(vals)}", node)
        out: list[Any] = vals + [None] * (len(names) - len(vals))
        for kw in node.keywords:
            if kw.arg not in names:
                raise self.error(f"unexpected keyword argument '{kw.arg}' (accepted: {', '.join(names)})", node)
            out[names.index(kw.arg)] = self.eval(kw.value)
        for i in range(required):
            if out[i] is None:
                raise self.error(f"missing argument '{names[i]}'", node)
        return out

    def apply_api(self, d: OpDef, node: ast.Call, obj: Any = None) -> Blk:
        """A call of an op-table entry, as a function (`exp(x)`, `maximum(a, b)`) or a method (`x.exp()`,
        `obj` = x): its operands, compile-time parameters and variant keywords (`approx=True`)."""
        names = [*(["x"] if d.arity == 1 else ["a", "b"] if d.arity == 2 else ["cond", "a", "b"]),
                 *(p.name for p in d.params), *d.variants]
        if obj is not None:
            names = names[1:]
        vals = self.call_args(node, names, len(names) - len(d.params) - len(d.variants) if obj is None else 0)
        if obj is not None:
            vals = [obj, *vals]
        return self.apply_op(d, vals, node)

    def apply_op(self, d: OpDef, vals: list[Any], node: ast.AST) -> Blk:
        """Op `d` on its operands, then its parameters and variant keywords, in the table's order."""
        vals = vals + [None] * (d.arity + len(d.params) + len(d.variants) - len(vals))
        operands, rest = vals[: d.arity], vals[d.arity:]
        params = dict(zip((p.name for p in d.params), rest))
        for p in d.params:
            v = params[p.name]
            ok = isinstance(v, int) if p.kind is int else isinstance(v, int | float)
            if v is None or isinstance(v, bool) or not ok:
                raise self.error(f"{d.api[0]}(): '{p.name}' must be a{'n integer' if p.kind is int else ' number'} "
                                 f"known when the kernel compiles, got {self.describe(v)}", node)
        for (kw, variant), v in zip(d.variants.items(), rest[len(d.params):]):
            if v is None:
                continue
            if not isinstance(v, bool):
                raise self.error(f"{d.api[0]}({kw}=...) must be True or False, known when the kernel compiles", node,
                                 note=f"write {kw}=True for {OPS[variant].doc}")
            if v:
                d = OPS[variant]
        if d.arity == 2:
            return self.block_binary(d.name, operands[0], operands[1], node)
        if d.arity == 3:
            return self.where(*operands, node)
        return self.unary(d.name, self.expect_block(operands[0], node, d.api[0] if d.api else d.name), node, **params)

    def call_method(self, m: Method, node: ast.Call) -> Any:
        obj, name = m.obj, m.name
        if isinstance(obj, CBRef):
            if name == "reserve":
                return self.reserve(obj, node)
            if name in ("pop", "wait"):
                return self.wait(obj, node)
            if name == "push":
                return self.explicit_push(obj, node)
            raise self.error(f"a CB has no method '{name}'", node, note="CBs have reserve(), pop() / wait() and push()")
        if isinstance(obj, SemRef):
            return self.call_semaphore(obj, name, node)
        if isinstance(obj, DMAHandle):
            if name != "wait":
                raise self.error(f"a DMA handle has no method '{name}'", node, note="call .wait()")
            return self.dma_wait(obj)
        assert isinstance(obj, Blk)
        if name in TABLE_METHODS:
            return self.apply_api(API[name], node, obj)
        if name == "transpose":
            return Blk(self.emit(B.TransposeOp(self.use(obj, node))).results[0])
        if name == "astype":
            (dtype,) = self.call_args(node, ["dtype"], 1)
            if dtype not in ("bf16", "f32"):
                raise self.error(f"astype() takes 'bf16' or 'f32' (known when the kernel compiles), got {dtype!r}",
                                 node, note="e.g. P = S.exp().astype('bf16'), or x.astype(y.dtype)")
            if dtype == obj.type.dtype:
                return obj
            return Blk(self.emit(B.CopyOp(self.use(obj, node), C.BlockType(obj.type.dims, dtype))).results[0])
        if name in ("rowmax", "rowsum", "colmax", "colsum", "max", "sum"):
            dim, axis = self.call_args(node, ["dim", "axis"], 0)
            d = dim if dim is not None else axis
            if name in ("max", "sum") and d is None:
                raise self.error(f"block.{name}() needs dim=-1 (rows) or dim=0 (columns)", node)
            if d is None:
                d = -1 if name.startswith("row") else 0
            default = -1 if name.startswith("row") else 0 if name.startswith("col") else d
            if d not in (-1, 1, 0, -2) or (name[:3] in ("row", "col") and d not in (default, default + (2 if default < 0 else -2))):
                raise self.error(f"{name}() reduces along dim {default}, got dim={d}", node,
                                 note="rowmax/rowsum reduce across a row (dim=-1); colmax/colsum down a column (dim=0)")
            kind = "max" if name.endswith("max") else "sum"
            return self.reduce(kind, 1 if d in (-1, 1) else 0, obj, None, node)
        if name == "store":
            (value,) = self.call_args(node, ["value"], 1)
            return self.store(obj, value, node)
        raise self.error(
            f"a block has no method '{name}'",
            node,
            note=f"blocks have {', '.join(sorted(TABLE_METHODS))}, transpose, astype, rowmax, rowsum, colmax, colsum, "
            "store",
        )

    def call_api(self, name: str, node: ast.Call) -> Any:
        if name == "core_index":
            (dim,) = self.call_args(node, ["dim"], 1)
            if dim not in (0, 1):
                raise self.error(f"core_index() takes 0 (row) or 1 (column), got {dim!r}", node,
                                 note="core_index(0) is the core's row in the grid, core_index(1) its column")
            return Idx(self.emit(C.CoreIndexOp(dim)).results[0])
        if name == "dma":
            src, dst, core, mcast = self.call_args(node, ["src", "dst", "core", "mcast"], 2)
            if core is not None or mcast is not None:
                return self.dma_mcast(src, dst, core, mcast, node)
            return self.dma(src, dst, node)
        if name == "fill":
            value, shape, dtype = self.call_args(node, ["value", "shape", "dtype"], 2)
            t = self.block_type(shape, dtype or "f32", node)
            if not isinstance(value, int | float):
                raise self.error(f"fill() value must be a number, got {self.describe(value)}", node)
            return Blk(self.emit(B.FillOp(float(value), t)).results[0])
        if name in ("row_index", "col_index"):
            shape, dtype = self.call_args(node, ["shape", "dtype"], 1)
            t = self.block_type(shape, dtype or "f32", node)
            return Blk(self.emit(B.IotaOp(0 if name == "row_index" else 1, t)).results[0])
        if name in ("rowmax", "rowsum", "colmax", "colsum"):
            x, acc = self.call_args(node, ["x", "acc"], 1)
            x = self.expect_block(x, node, name)
            return self.reduce(name[3:], 1 if name.startswith("row") else 0, x, acc, node)
        if name in API:
            return self.apply_api(API[name], node)
        if name == "transpose":
            (x,) = self.call_args(node, ["x"], 1)
            return Blk(self.emit(B.TransposeOp(self.use(self.expect_block(x, node, name), node))).results[0])
        if name == "matmul":
            a, b = self.call_args(node, ["a", "b"], 2)
            return self.binop(ast.MatMult(), a, b, node)
        raise self.error(f"{name}() is not supported in a thread yet", node)

    def inline_call(self, fn: Callable, node: ast.Call) -> Any:
        """A plain Python function called from a thread is inlined: its body is compiled in place,
        with its parameters bound to the call's arguments; it ends with `return value` (or nothing)."""
        file, indent, fdef, globs, closure = parse_function(fn, f"function '{fn.__name__}'")
        if not isinstance(fdef, ast.FunctionDef) or fdef.args.vararg or fdef.args.kwarg:
            raise self.error(f"'{fn.__name__}' cannot be inlined: a helper is a plain `def` with named parameters", node)
        params = [a.arg for a in fdef.args.args]
        values = [self.eval(a) for a in node.args]
        if len(values) > len(params):
            raise self.error(f"'{fn.__name__}' takes {len(params)} arguments, got {len(values)}", node)
        bound = dict(zip(params, values))
        for kw in node.keywords:
            bound[kw.arg] = self.eval(kw.value)
        defaults = fn.__defaults__ or ()
        for p, d in zip(params[len(params) - len(defaults):], defaults):
            bound.setdefault(p, d)
        missing = [p for p in params if p not in bound]
        if missing:
            raise self.error(f"'{fn.__name__}' is missing arguments {', '.join(missing)}", node)
        body = list(fdef.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        ret = body.pop() if body and isinstance(body[-1], ast.Return) else None
        saved = (self.file, self.indent, self.globals, self.closure, self.vars, self.assigned_at)
        self.file, self.indent, self.globals, self.closure = file, indent, globs, closure
        self.vars, self.assigned_at = dict(bound), {}
        try:
            for stmt in body:
                if isinstance(stmt, ast.Return) or any(isinstance(n, ast.Return) for n in ast.walk(stmt)):
                    raise self.error("an inlined helper returns once, as its last statement", stmt)
                self.visit(stmt)
            return self.eval(ret.value) if ret is not None and ret.value is not None else None
        finally:
            self.file, self.indent, self.globals, self.closure, self.vars, self.assigned_at = saved

    def call_print(self, node: ast.Call) -> None:
        vals = [self.eval(a) for a in node.args]
        blocks = [v for v in vals if isinstance(v, Blk)]
        label = " ".join(str(v) for v in vals if not isinstance(v, Blk)) or ast.unparse(node.args[0]) if node.args else ""
        if len(blocks) != 1:
            raise self.error("print() in a thread takes one block (and optional text)", node)
        self.emit(C.PrintOp(self.use(blocks[0], node), label))

    # ---- CBs and DMA ----------------------------------------------------------------------

    def cb_type(self, cb: CBRef) -> C.BlockType:
        a = self.args[cb.index]
        return C.BlockType(C.block_dims(a), a["dtype"])

    def reserve(self, cb: CBRef, node: ast.AST) -> Blk:
        v = self.emit(C.CBReserveOp(cb.index, self.cb_type(cb))).results[0]
        slot = Slot(cb.index, cb.name, "reserved", self.loc(node))
        self.scopes[-1].slots.append(slot)
        return Blk(v, slot)

    def wait(self, cb: CBRef, node: ast.AST) -> Blk:
        v = self.emit(C.CBWaitOp(cb.index, self.cb_type(cb))).results[0]
        slot = Slot(cb.index, cb.name, "popped", self.loc(node))
        self.scopes[-1].slots.append(slot)
        return Blk(v, slot)

    def explicit_push(self, cb: CBRef, node: ast.AST) -> None:
        for scope in reversed(self.scopes):
            for slot in scope.slots:
                if slot.cb == cb.index and slot.role == "reserved" and not slot.filled:
                    self.unwaited_read(slot, "pushed")
                    if not slot.filled:
                        slot.filled = True
                        self.emit(C.CBPushOp(cb.index))
                    return
        raise self.error(f"push() on CB '{cb.name}' with no reserved block waiting to be pushed", node)

    def store(self, dst: Blk, value: Any, node: ast.AST) -> None:
        if dst.slot is None or dst.slot.role != "reserved":
            raise self.error("store() writes into a reserved CB block", node, note="blk = out_cb.reserve(); blk.store(x)")
        if dst.slot.filled:
            raise self.error(f"this block of CB '{dst.slot.cb_name}' was already filled and pushed", node)
        if dst.slot.released_at:
            raise self.error("store() into a block after its release", node)
        v = self.expect_block(value, node, "store")
        if broadcast_shape(v.type.dims, dst.type.dims) != dst.type.dims:
            raise self.error(
                f"cannot store a {self.shape_str(v)} block into a {self.shape_str(dst)} block of CB '{dst.slot.cb_name}'",
                node,
                note="a CB slot holds block_factors tiles of its argument ([M,1] columns and [1,N] rows broadcast)",
            )
        self.emit(B.StoreOp(dst.value, self.use(v, node)))
        dst.slot.filled = True
        self.emit(C.CBPushOp(dst.slot.cb))

    def dma(self, src: Any, dst: Any, node: ast.AST) -> DMAHandle:
        if isinstance(src, StreamView) and isinstance(dst, Blk):
            if dst.slot is None or dst.slot.role != "reserved" or dst.slot.filled:
                raise self.error("a DMA read lands in a freshly reserved CB block", node, note="dma(stream[i, j], cb.reserve())")
            self.check_cb_matches(src.stream, dst.slot, node)
            op = C.DMAReadOp(src.stream.arg, [self.index(i) for i in src.indices], dst.value)
            h = DMAHandle(self.emit(op).results[0], dst.slot, loc=self.loc(node))
            dst.slot.pending_dma = h
            return h
        if isinstance(src, Blk) and isinstance(dst, StreamView):
            if src.slot is not None:
                self.check_cb_matches(dst.stream, src.slot, node)
                if src.slot.role == "reserved":
                    self.unwaited_read(src.slot, "written to DRAM")
            op = C.DMAWriteOp(dst.stream.arg, self.use(src, node), [self.index(i) for i in dst.indices])
            h = DMAHandle(self.emit(op).results[0], None, loc=self.loc(node))
            if src.slot is not None and src.slot.role == "popped":
                src.slot.pending_writes.append(h)
            return h
        raise self.error(
            f"dma() copies a stream block into a reserved CB block or a CB block into a stream block, "
            f"got {self.describe(src)} -> {self.describe(dst)}",
            node,
            note="read: dma(stream[i, j], cb.reserve()).wait(); write: dma(cb.pop(), stream[i, j]).wait()",
        )

    def target(self, core: Any, mcast: Any, node: ast.AST) -> list[SSAValue]:
        """Index operands for a remote core (y, x) or rectangle (y, x, h, w)."""
        if core is None:
            if mcast is not None:
                raise self.error("mcast=(h, w) needs core=(y, x), the rectangle's first core", node)
            return []
        for what, v in (("core", core), ("mcast", mcast)):
            if v is not None and not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(i, int | Idx) for i in v)):
                raise self.error(f"{what}= takes a pair of integers (rows, cols), got {self.describe(v)}", node)
        vals = list(core) + (list(mcast) if mcast is not None else [])
        for v in (mcast or ()):
            if isinstance(v, int) and v < 1:
                raise self.error(f"mcast=(h, w) must be at least (1, 1), got {mcast}", node)
        return [self.index(v) for v in vals]

    def dma_mcast(self, src: Any, dst: Any, core: Any, mcast: Any, node: ast.AST) -> DMAHandle:
        if not (isinstance(src, Blk) and src.slot is not None and isinstance(dst, Blk) and dst.slot is not None):
            raise self.error(
                "a multicast dma copies a CB block to the same CB on other cores: dma(blk, blk, core=(y, x), mcast=(h, w))",
                node,
            )
        if src.slot.cb != dst.slot.cb:
            raise self.error(
                f"a multicast lands in the same CB on every receiver: source is CB '{src.slot.cb_name}', "
                f"destination CB '{dst.slot.cb_name}'",
                node,
            )
        if src.slot.role == "reserved" and not src.slot.filled and src.slot.pending_dma is None:
            raise self.error(f"the multicast source block of CB '{src.slot.cb_name}' is not filled yet", node)
        self.unwaited_read(src.slot, "multicast")
        target = self.target(core, mcast, node)
        if not target:
            raise self.error("dma() between cores needs core=(y, x) (and mcast=(h, w) for a rectangle)", node)
        op = C.DMAMcastOp(src.slot.cb, self.use(src, node), target)
        return DMAHandle(self.emit(op).results[0], None, loc=self.loc(node))

    def call_semaphore(self, sem: SemRef, name: str, node: ast.Call) -> None:
        if name in ("set", "inc"):
            value, core, mcast = self.call_args(node, ["value", "core", "mcast"], 1 if name == "set" else 0)
            if value is None:
                value = 1
            if not isinstance(value, int | Idx) or isinstance(value, bool):
                raise self.error(f"semaphore values are integers, got {self.describe(value)}", node)
            cls = C.SemSetOp if name == "set" else C.SemIncOp
            self.emit(cls(sem.index, self.index(value), self.target(core, mcast, node)))
            return
        if name == "wait":
            value, reset = self.call_args(node, ["value", "reset"], 1)
            for v in (value, reset):
                if v is not None and (not isinstance(v, int | Idx) or isinstance(v, bool)):
                    raise self.error(f"semaphore values are integers, got {self.describe(v)}", node)
            self.emit(C.SemWaitOp(sem.index, self.index(value), self.index(reset) if reset is not None else None))
            return
        raise self.error(f"a Semaphore has no method '{name}'", node, note="semaphores have set(), inc() and wait()")

    def check_cb_matches(self, s: StreamRef, slot: Slot, node: ast.AST) -> None:
        a, c = self.args[s.arg], self.args[slot.cb]
        if a["block"] != c["block"]:
            raise self.error(
                f"a block of '{s.name}' ({a['block'][0]}x{a['block'][1]} tiles) does not fit CB '{slot.cb_name}' "
                f"({c['block'][0]}x{c['block'][1]} tiles)",
                node,
            )

    def dma_wait(self, h: DMAHandle) -> None:
        if h.waited:
            return
        h.waited = True
        self.emit(C.DMAWaitOp(h.value))
        if h.slot is not None and not h.slot.filled:
            h.slot.filled = True
            h.slot.pending_dma = None
            self.emit(C.CBPushOp(h.slot.cb))
