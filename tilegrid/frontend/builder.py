"""Python AST of thread functions -> block IR (one `visit_<Node>` per supported construct).

Thread bodies are parsed from source, never run. Every op carries the user's
`file:line:col` in a `loc` attribute; every mistake raises `CompileError` at that line.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, ModuleOp, StringAttr, f32, i1
from xdsl.ir import Block, Operation, Region, SSAValue

import tilegrid.lang.ops as api
from tilegrid.errors import CompileError
from tilegrid.frontend.calls import TABLE_METHODS, CallsMixin, parse_function
from tilegrid.frontend.foreign import BLOCK_FUNCTIONS, refusal_note
from tilegrid.frontend.values import (
    ApiFunc,
    Blk,
    CBRef,
    Cond,
    DMAHandle,
    FScalar,
    Idx,
    Method,
    Poison,
    Scope,
    SemRef,
    Slot,
    StreamRef,
    StreamView,
)
from tilegrid.ir import block as B
from tilegrid.ir import core as C
from tilegrid.lang.ops import Semaphore
from tilegrid.lang.spec import Stream, ThreadDef
from tilegrid.ops import API, broadcast_shape

API_FUNCS = {id(getattr(api, n)): n for n in dir(api) if callable(getattr(api, n)) and not n.startswith("_")}
PY_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
             ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
BLOCK_METHODS = TABLE_METHODS | {"transpose", "rowmax", "rowsum", "colmax", "colsum", "max", "sum", "store", "astype"}
BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Mod: "mod"}
CMPOPS = {ast.GtE: "ge", ast.Gt: "gt", ast.LtE: "le", ast.Lt: "lt", ast.Eq: "eq", ast.NotEq: "ne"}
CMPI = {"ge": "sge", "gt": "sgt", "le": "sle", "lt": "slt", "eq": "eq", "ne": "ne"}
SUPPORTED = "assignments, `for` over range(), `if`, `with cb.reserve()/cb.wait()`, calls and expressions"


def set_loc(op: Operation, loc: str) -> Operation:
    op.attributes["loc"] = StringAttr(loc)
    return op


def assigned_names(stmts: list[ast.stmt]) -> list[str]:
    """Names a list of statements may rebind, in first-assignment order."""
    return list(_assigned(tuple(stmts)))


@lru_cache(maxsize=4096)
def _assigned(stmts: tuple[ast.stmt, ...]) -> tuple[str, ...]:  # AST nodes hash by identity; trees are cached
    out: list[str] = []
    for s in stmts:
        for node in ast.walk(s):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in out:
                out.append(node.id)
    return tuple(out)


class ThreadBuilder(CallsMixin, ast.NodeVisitor):
    """Builds one `tilegrid.thread` from one thread function."""

    def __init__(self, thread: ThreadDef, args: list[dict], streams: dict[int, int],
                 semaphores: list[Semaphore] | None = None, tensors: list[Any] | None = None) -> None:
        self.thread = thread
        self.tensors = tensors or []
        self.semaphores = semaphores if semaphores is not None else []
        self.args = args
        self.streams = streams  # id(tensor) -> argument index
        self.file, self.indent, self.fndef, self.globals, self.closure = parse_function(thread.fn, f"thread '{thread.name}'")
        self.vars: dict[str, Any] = {}
        self.assigned_at: dict[str, ast.AST] = {}
        self.scopes: list[Scope] = []
        self.block = Block()
        self.node: ast.AST = self.fndef

    # ---- plumbing -------------------------------------------------------------------------

    def loc(self, node: ast.AST | None = None) -> str:
        node = node or self.node
        line = getattr(node, "lineno", self.fndef.lineno)
        col = getattr(node, "col_offset", 0) + self.indent
        return f"{self.file}:{line}:{col + 1}"

    def error(self, msg: str, node: ast.AST | None = None, note: str | None = None) -> CompileError:
        return CompileError(f"thread '{self.thread.name}': {msg}", self.loc(node), note=note)

    def emit(self, op: Operation) -> Operation:
        set_loc(op, self.loc())
        self.block.add_op(op)
        return op

    @contextmanager
    def into(self, block: Block) -> Iterator[None]:
        saved = self.block
        self.block = block
        try:
            yield
        finally:
            self.block = saved

    @contextmanager
    def scope(self, end_node: ast.AST) -> Iterator[None]:
        self.scopes.append(Scope())
        yield
        self.end_scope(self.scopes.pop(), end_node)

    def end_scope(self, scope: Scope, node: ast.AST) -> None:
        """Push reserved slots nobody filled, release popped slots: the end of a Python block."""
        where = self.loc(node)
        for slot in scope.slots:
            if slot.role == "reserved" and not slot.filled:
                self.unwaited_read(slot, "pushed at the end of its Python block")
                slot.filled = True
                self.emit(C.CBPushOp(slot.cb))
            elif slot.role == "popped" and slot.released_at is None:
                self.unwaited_writes(slot)
                self.emit(C.CBPopOp(slot.cb))
                slot.released_at = where

    def unwaited_read(self, slot: Slot, then: str) -> None:
        """A DMA read still in flight when its block is pushed or read: a race on hardware."""
        h = slot.pending_dma
        if h is not None and not h.waited:
            raise CompileError(
                f"thread '{self.thread.name}': race: the DMA into a block of CB '{slot.cb_name}' is never waited "
                f"before the block is {then} (on hardware the block may not have landed yet)",
                h.loc,
                note="wait for the transfer before the block is used: dma(...).wait(), or h = dma(...) then h.wait() "
                "before the block is pushed, multicast or written",
            )

    def unwaited_writes(self, slot: Slot) -> None:
        """A DMA write still reading its block when the block is released: a race on hardware."""
        for h in slot.pending_writes:
            if not h.waited:
                raise CompileError(
                    f"thread '{self.thread.name}': race: the DMA writing a block of CB '{slot.cb_name}' to DRAM is "
                    "never waited before the block is released (its slot may be refilled while the DMA still reads "
                    "it)",
                    h.loc,
                    note="wait for the write before the block's release: dma(blk, stream[...]).wait()",
                )

    def visit(self, node: ast.AST) -> Any:
        saved = self.node
        self.node = node
        try:
            return super().visit(node)
        except CompileError:
            raise
        except Exception as e:  # a compiler bug must still point at the user's line
            raise self.error(f"internal compiler error while compiling this line: {type(e).__name__}: {e}", node,
                             note="this is a tilegrid bug; please report it with this kernel") from e
        finally:
            self.node = saved

    def generic_visit(self, node: ast.AST) -> Any:
        raise self.error(
            f"Python construct '{type(node).__name__}' is not supported in a thread",
            node,
            note=f"thread bodies support {SUPPORTED}",
        )

    # ---- entry ----------------------------------------------------------------------------

    def build(self) -> C.ThreadOp:
        fn = self.fndef
        if not isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef):
            raise self.error("a thread must be a function", fn)
        params = [a.arg for a in fn.args.args]
        names = [a["name"] for a in self.args]
        if len(params) != len(names):
            raise self.error(
                f"takes {len(params)} CB parameters but the kernel has {len(names)} tensor arguments ({', '.join(names)})",
                fn,
                note="declare one CB parameter per kernel tensor argument, in the same order",
            )
        for i, p in enumerate(params):
            self.vars[p] = CBRef(i, p)
        body = fn.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # docstring
        if not body or all(isinstance(s, ast.Pass) for s in body):
            raise self.error("the thread body is empty", fn, note="a thread must pop, reserve or compute something")
        with self.scope(fn):
            for stmt in body:
                self.visit(stmt)
        return C.ThreadOp(self.thread.kind, self.thread.name, Region(self.block))

    # ---- statements -----------------------------------------------------------------------

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return
        self.eval(node.value)

    def visit_Pass(self, node: ast.Pass) -> None:
        return

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None:
            raise self.error("a thread returns nothing", node, note="write results to an output CB")
        raise self.error("`return` is not supported inside a thread", node, note="let the thread body end instead")

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self.eval(node.value)
        for target in node.targets:
            self.bind(target, value, node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            return
        self.bind(node.target, self.eval(node.value), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if not isinstance(node.target, ast.Name):
            raise self.error("only names can be assigned", node.target)
        cur = self.lookup(node.target.id, node.target)
        self.bind(node.target, self.binop(node.op, cur, self.eval(node.value), node), node)

    def bind(self, target: ast.expr, value: Any, node: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.vars[target.id] = value
            self.assigned_at[target.id] = node
            return
        if isinstance(target, ast.Tuple) and isinstance(value, tuple) and len(value) == len(target.elts):
            for t, v in zip(target.elts, value):
                self.bind(t, v, node)
            return
        raise self.error("only names (or tuples of names) can be assigned in a thread", target)

    def visit_For(self, node: ast.For) -> None:
        if node.orelse:
            raise self.error("`for ... else` is not supported", node)
        if not isinstance(node.target, ast.Name):
            raise self.error("the loop variable must be a single name", node.target)
        it = node.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"):
            raise self.error("`for` loops must iterate over range(...)", it, note="for i in range(n): ...")
        bounds = [self.eval(a) for a in it.args]
        if not 1 <= len(bounds) <= 3 or it.keywords:
            raise self.error("range() takes 1 to 3 positional arguments", it)
        lb, ub, step = (0, bounds[0], 1) if len(bounds) == 1 else (bounds[0], bounds[1], bounds[2] if len(bounds) == 3 else 1)
        for b in (lb, ub, step):
            if not isinstance(b, int | Idx) or isinstance(b, bool):
                raise self.error(f"range() bounds must be integers, got {self.describe(b)}", it)
        if isinstance(step, int) and step <= 0:
            raise self.error(f"range() step must be positive, got {step}", it)

        assigned = assigned_names(node.body)
        carried: list[str] = []
        for name in assigned:
            if name == node.target.id or name not in self.vars:
                continue
            v = self.vars[name]
            if isinstance(v, Blk) and v.slot is not None and v.slot.role == "popped":
                self.vars[name] = self.copy_block(v, node)  # the loop carries a value, not the CB slot
                carried.append(name)
            elif isinstance(v, Blk) and v.slot is None or isinstance(v, Idx | FScalar):
                carried.append(name)
            elif isinstance(v, int) and not isinstance(v, bool):
                self.vars[name] = Idx(self.const_index(v))
                carried.append(name)
            elif isinstance(v, float):
                self.vars[name] = FScalar(self.const_f32(v))
                carried.append(name)
        inits = [self.vars[n].value for n in carried]
        body = Block(arg_types=[IndexType()] + [v.type for v in inits])
        saved = dict(self.vars)
        self.vars[node.target.id] = Idx(body.args[0])
        for name, arg in zip(carried, body.args[1:]):
            self.vars[name] = self.wrap(arg)
        with self.into(body):
            with self.scope(node):
                for stmt in node.body:
                    self.visit(stmt)
                # before the body's slots are released: a carried CB block is copied while it is live
                yields = [self.coerce(self.vars[n], v.type, n, node) for n, v in zip(carried, inits)]
            self.emit(scf.YieldOp(*yields))
        op = self.emit(scf.ForOp(self.index(lb), self.index(ub), self.index(step), inits, Region(body)))
        self.vars = saved
        for name, res in zip(carried, op.results):
            self.vars[name] = self.wrap(res)
        for name in assigned:
            if name not in carried:
                self.vars[name] = Poison(
                    f"'{name}' is assigned inside the loop at line {node.lineno} and cannot be read after it"
                    " (only blocks and numbers assigned before the loop are carried across iterations; a CB block "
                    "popped in the loop body is released at the end of each iteration)",
                    note=f"compute what you need from '{name}' inside the loop into a variable assigned before the loop",
                )

    def visit_If(self, node: ast.If) -> None:
        cond = self.eval(node.test)
        if isinstance(cond, bool | int | float):
            for stmt_list in ([node.body] if cond else [node.orelse]):
                if stmt_list:
                    with self.scope(node):
                        for stmt in stmt_list:
                            self.visit(stmt)
            return
        if not isinstance(cond, Cond):
            raise self.error(
                f"an `if` condition must compare integers, got {self.describe(cond)}",
                node.test,
                note="branch on loop and core indices; to select between blocks elementwise use where(cond, a, b)",
            )
        saved = dict(self.vars)
        outer = [slot for sc in self.scopes for slot in sc.slots]
        before = [(sl.filled, sl.pending_dma, list(sl.pending_writes)) for sl in outer]
        handles = [h for sl in outer for h in [sl.pending_dma, *sl.pending_writes] if h is not None]
        waited_before = [h.waited for h in handles]
        branches = []
        filled_after = []
        waited_after: list[list[bool]] = []
        both = set(assigned_names(node.body)) & set(assigned_names(node.orelse))
        for stmts in (node.body, node.orelse):
            self.vars = dict(saved)
            for sl, (f, d, w) in zip(outer, before):
                sl.filled, sl.pending_dma, sl.pending_writes = f, d, list(w)
            for h, w in zip(handles, waited_before):  # each branch waits (or not) on its own
                h.waited = w
            blk = Block()
            with self.into(blk):
                with self.scope(node):
                    for stmt in stmts:
                        self.visit(stmt)
                    # a CB block the branch binds to a result of the `if` is copied before its release
                    for name in assigned_names(stmts):
                        v = self.vars.get(name)
                        if (name in saved or name in both) and isinstance(v, Blk) and v.slot is not None \
                                and v.slot.role == "popped" and v.slot.released_at is None:
                            self.vars[name] = self.copy_block(v, node)
            branches.append((blk, self.vars))
            filled_after.append([sl.filled for sl in outer])
            waited_after.append([h.waited for h in handles])
        # A slot filled (and so pushed) in one branch only is pushed at the end of the other.
        for k, sl in enumerate(outer):
            if filled_after[0][k] != filled_after[1][k]:
                if before[k][1] is not None:  # the path that does not fill it does not wait for its DMA
                    sl.pending_dma = before[k][1]
                    sl.pending_dma.waited = False
                    self.unwaited_read(sl, "pushed at the end of the `if`, on the path that does not wait for it")
                with self.into(branches[1 if filled_after[0][k] else 0][0]):
                    self.emit(C.CBPushOp(sl.cb))
            sl.filled = filled_after[0][k] or filled_after[1][k]
            if sl.filled:
                sl.pending_dma = None
        for h, a, b in zip(handles, *waited_after):
            h.waited = a and b  # waited after the `if` only if waited on both paths
        assigned = assigned_names(node.body + node.orelse)
        results: list[str] = []
        types = []
        for name in assigned:
            a, b = branches[0][1].get(name), branches[1][1].get(name)
            if a is None or b is None or isinstance(a, Poison) or isinstance(b, Poison):
                continue
            ta, tb = self.ir_type(a), self.ir_type(b)
            if ta is None or tb is None:
                if a is b:
                    continue
                continue
            if isinstance(ta, C.BlockType) and isinstance(tb, C.BlockType):
                if ta.dims != tb.dims:
                    raise self.error(
                        f"'{name}' is a {ta.dims[0]}x{ta.dims[1]} block in one branch and {tb.dims[0]}x{tb.dims[1]} in the other",
                        node,
                    )
                ta = C.BlockType(ta.dims, "f32" if "f32" in (ta.dtype, tb.dtype) else "bf16")
            elif type(ta) is not type(tb):
                raise self.error(f"'{name}' has different kinds of value in the two branches", node)
            results.append(name)
            types.append(ta)
        for (blk, bvars), _ in zip(branches, range(2)):
            self.vars = bvars
            with self.into(blk):
                ys = [self.coerce(self.materialize(bvars[n]), t, n, node) for n, t in zip(results, types)]
                self.emit(scf.YieldOp(*ys))
        op = self.emit(scf.IfOp(cond.value, types, Region(branches[0][0]), Region(branches[1][0])))
        self.vars = saved
        for name, res in zip(results, op.results):
            self.vars[name] = self.wrap(res)
        for name in assigned:
            if name not in results:
                self.vars[name] = Poison(
                    f"'{name}' is assigned in only one branch of the `if` at line {node.lineno}"
                    " (or is a CB block there) and cannot be read after it"
                )

    def visit_With(self, node: ast.With) -> None:
        if len(node.items) != 1:
            raise self.error("`with` takes one CB block at a time", node)
        item = node.items[0]
        value = self.eval(item.context_expr)
        if not (isinstance(value, Blk) and value.slot is not None):
            raise self.error(
                "`with` needs a CB block: `with cb.reserve() as blk:` or `with cb.wait() as blk:`", item.context_expr
            )
        # The slot belongs to the with body, not the enclosing block.
        self.scopes[-1].slots.remove(value.slot)
        with self.scope(node):
            self.scopes[-1].slots.append(value.slot)
            if item.optional_vars is not None:
                self.bind(item.optional_vars, value, node)
            for stmt in node.body:
                self.visit(stmt)

    # ---- expressions ----------------------------------------------------------------------

    def eval(self, node: ast.expr) -> Any:
        return self.visit(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self.eval(e) for e in node.elts)

    visit_List = visit_Tuple

    def visit_Await(self, node: ast.Await) -> Any:
        return self.eval(node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        return self.lookup(node.id, node)

    def lookup(self, name: str, node: ast.AST) -> Any:
        if name in self.vars:
            v = self.vars[name]
            if isinstance(v, Poison):
                raise self.error(v.why, node, note=v.note)
            return v
        for ns in (self.closure, self.globals):
            if name in ns:
                return self.python_value(ns[name], name, node)
        if name in ("inf", "nan"):
            return float(name)
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise self.error(
            f"name '{name}' is not defined",
            node,
            note="the thread uses a name its kernel never defines; if this is a fragment of a larger kernel, "
            "define it (in the thread, or as a constant or Stream in the kernel function)",
        )

    def python_value(self, v: Any, name: str, node: ast.AST) -> Any:
        if isinstance(v, bool | int | float | str | tuple):
            return v
        if isinstance(v, Stream):
            idx = self.streams.get(id(v.tensor))
            if idx is None:
                raise self.error(
                    f"Stream '{name}' wraps a tensor that is not an argument of this Program", node,
                    note="pass the same tensor objects to Program(...)(...) that the Streams were made from",
                )
            same = [i for i, t in enumerate(self.tensors) if t is v.tensor]
            if len(same) > 1:  # one array passed as several arguments: reading any of them is the same
                infos = [self.args[i] for i in same]
                if any(a["output"] for a in infos) or len({(a["block"], a["dtype"]) for a in infos}) > 1:
                    raise self.error(
                        f"Stream '{name}' is ambiguous: the same array is passed as "
                        f"{' and '.join(a['name'] for a in infos)}, "
                        + ("one of them an output" if any(a["output"] for a in infos) else "with different blocks"),
                        node,
                        note="pass distinct arrays (for example a .copy()) where a kernel writes one or reads them "
                        "in different blocks",
                    )
                idx = same[0]
            return StreamRef(idx, self.args[idx]["name"], len(self.args[idx]["shape"]))
        if isinstance(v, Semaphore):
            for i, sem in enumerate(self.semaphores):
                if sem is v:
                    return SemRef(i, name)
            self.semaphores.append(v)
            return SemRef(len(self.semaphores) - 1, name)
        if id(v) in API_FUNCS:
            return ApiFunc(API_FUNCS[id(v)])
        if inspect.ismodule(v) or any(v is f for f in (float, int, range, print, min, max, abs, pow)):
            return v
        if inspect.isfunction(v):
            return v  # a helper, inlined where it is called
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            raise self.error(
                f"'{name}' is a tensor ({type(v).__name__} of shape {tuple(v.shape)}); a thread reads tensors "
                "through CBs, not directly",
                node,
                note=f"pop the block from its CB parameter (e.g. blk = {name}_cb.pop()) or read it with "
                f"dma(Stream({name})[...], cb.reserve())",
            )
        raise self.error(
            f"'{name}' is a {type(v).__name__}; a thread can use integer and float constants, Streams "
            "and tilegrid functions from its kernel",
            node,
        )

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        obj = self.eval(node.value)
        if inspect.ismodule(obj):
            v = getattr(obj, node.attr, None)
            if isinstance(v, float | int):
                return v
            if id(v) in API_FUNCS:
                return ApiFunc(API_FUNCS[id(v)])
            if v is not None and node.attr in BLOCK_FUNCTIONS:  # np.exp(x) is exp(x): tilegrid/frontend/foreign.py
                return ApiFunc(node.attr, python=v)
            raise self.error(f"'{obj.__name__}.{node.attr}' is not a tilegrid operation and cannot be used in a thread",
                             node, note=refusal_note(obj.__name__, node.attr))
        if isinstance(obj, Blk):
            if node.attr == "shape":
                return obj.type.dims
            if node.attr == "dtype":
                return obj.type.dtype
            if node.attr not in BLOCK_METHODS:
                raise self.error(
                    f"a block has no attribute '{node.attr}'",
                    node,
                    note="blocks have .shape, .dtype and the methods " + ", ".join(sorted(BLOCK_METHODS)),
                )
        if isinstance(obj, Blk | CBRef | DMAHandle | SemRef):
            return Method(obj, node.attr)
        raise self.error(f"{self.describe(obj)} has no attribute '{node.attr}'", node)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        obj = self.eval(node.value)
        if isinstance(obj, tuple | list | str):
            i = self.eval(node.slice)
            if not isinstance(i, int | slice):
                raise self.error(f"a constant tuple is indexed with constants, not {self.describe(i)}", node)
            try:
                return obj[i]
            except IndexError as e:
                raise self.error(f"index {i} is out of range for {obj!r}", node) from e
        if not isinstance(obj, StreamRef):
            raise self.error(f"only Streams can be indexed, not {self.describe(obj)}", node)
        idx = self.eval(node.slice)
        idx = list(idx) if isinstance(idx, tuple) else [idx]
        if len(idx) != obj.rank:
            raise self.error(
                f"Stream of '{obj.name}' has {obj.rank} dimensions but is indexed with {len(idx)} indices",
                node,
                note="index every leading dimension in elements and the last two in blocks",
            )
        for i in idx:
            if not isinstance(i, int | Idx) or isinstance(i, bool):
                raise self.error(f"stream indices must be integers, got {self.describe(i)}", node)
        self.check_stream_bounds(obj, idx, node)
        return StreamView(obj, idx)

    def check_stream_bounds(self, s: StreamRef, idx: list[Any], node: ast.AST) -> None:
        a = self.args[s.arg]
        br, bc = C.block_dims(a)
        limits = list(a["shape"][:-2]) + [a["shape"][-2] // br, a["shape"][-1] // bc]
        for k, (i, n) in enumerate(zip(idx, limits)):
            if isinstance(i, int) and not 0 <= i < n:
                raise self.error(
                    f"stream index {i} is out of range for dimension {k} of '{s.name}' (size {n}"
                    + (" blocks)" if k >= len(limits) - 2 else ")"),
                    node,
                    note="leading indices count elements, the last two count blocks of the CB's block shape "
                    f"({br}x{bc} elements for '{s.name}')",
                )

    def constant(self, node: ast.expr) -> Any:
        """The value of an expression that is a number known when the kernel compiles, computed
        without emitting IR (so the expression can still be compiled afterwards); None if not one."""
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, int | float) else None
        if isinstance(node, ast.Name | ast.Attribute):
            if isinstance(node, ast.Name) and isinstance(self.vars.get(node.id), Blk | Idx | FScalar):
                return None
            try:
                v = self.eval(node)
            except CompileError:
                return None
            return v if isinstance(v, int | float) else None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = self.constant(node.operand)
            return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
        if isinstance(node, ast.BinOp) and type(node.op) in PY_BINOPS:
            a, b = self.constant(node.left), self.constant(node.right)
            if a is None or b is None:
                return None
            try:
                return PY_BINOPS[type(node.op)](a, b)
            except ArithmeticError:
                return None
        return None

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return self.binop(node.op, self.eval(node.left), self.eval(node.right), node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.eval(node.operand)
        if isinstance(node.op, ast.USub):
            if isinstance(v, int | float):
                return -v
            if isinstance(v, Blk):
                return self.unary("neg", v, node)
            return self.binop(ast.Sub(), 0, v, node)
        if isinstance(node.op, ast.UAdd):
            return v
        if isinstance(node.op, ast.Not):
            if isinstance(v, bool | int):
                return not v
            if isinstance(v, Cond):
                one = self.emit(arith.ConstantOp(IntegerAttr(1, i1)))
                return Cond(self.emit(arith.XOrIOp(v.value, one)).results[0])
        raise self.error(f"unsupported unary operator on {self.describe(v)}", node)

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        """`and` / `or` short-circuit on compile-time values as Python does (`if DEBUG and x > 0:`
        emits nothing when DEBUG is False); run-time conditions combine with arith.andi / ori."""
        is_and = isinstance(node.op, ast.And)
        vals = []
        for v in node.values:
            x = self.eval(v)
            if isinstance(x, bool | int) and not isinstance(x, Cond):
                if bool(x) != is_and:  # False in an `and`, True in an `or`: decided
                    return bool(x)
                continue  # True in an `and`, False in an `or`: no effect
            vals.append(x)
        if not vals:
            return is_and
        conds = [self.as_cond(v, node) for v in vals]
        op = arith.AndIOp if isinstance(node.op, ast.And) else arith.OrIOp
        acc = conds[0]
        for c in conds[1:]:
            acc = self.emit(op(acc, c)).results[0]
        return Cond(acc)

    def as_cond(self, v: Any, node: ast.AST) -> SSAValue:
        if isinstance(v, Cond):
            return v.value
        if isinstance(v, bool | int):
            return self.emit(arith.ConstantOp(IntegerAttr(int(bool(v)), i1))).results[0]
        raise self.error(f"expected a condition, got {self.describe(v)}", node)

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        cond = self.eval(node.test)
        if not isinstance(cond, Cond):
            return self.eval(node.body if cond else node.orelse)
        a, b = self.eval(node.body), self.eval(node.orelse)
        if isinstance(a, int | Idx) and isinstance(b, int | Idx) and not isinstance(a, bool):
            return Idx(self.emit(arith.SelectOp(cond.value, self.index(a), self.index(b))).results[0])
        if self.is_scalar(a) and self.is_scalar(b):
            return FScalar(self.emit(arith.SelectOp(cond.value, self.scalar(a), self.scalar(b))).results[0])
        raise self.error(
            f"`a if cond else b` on a run-time condition selects between numbers, got {self.describe(a)} and "
            f"{self.describe(b)}",
            node,
            note="use an `if` statement to choose between blocks",
        )

    def visit_Compare(self, node: ast.Compare) -> Any:
        if len(node.ops) != 1:
            raise self.error("chained comparisons are not supported", node, note="write `a < b and b < c`")
        kind = CMPOPS.get(type(node.ops[0]))
        if kind is None:
            raise self.error(f"comparison '{type(node.ops[0]).__name__}' is not supported", node)
        a, b = self.eval(node.left), self.eval(node.comparators[0])
        if isinstance(a, Blk) or isinstance(b, Blk):
            return self.block_binary(kind, a, b, node)
        if not isinstance(a, Idx | FScalar | Cond) and not isinstance(b, Idx | FScalar | Cond):
            try:
                return {"ge": a >= b, "gt": a > b, "le": a <= b, "lt": a < b, "eq": a == b, "ne": a != b}[kind]
            except TypeError as e:
                raise self.error(f"cannot compare {self.describe(a)} with {self.describe(b)}", node) from e
        if isinstance(a, int | Idx) and isinstance(b, int | Idx):
            op = arith.CmpiOp(self.index(a), self.index(b), CMPI[kind])
            return Cond(self.emit(op).results[0])
        raise self.error(f"cannot compare {self.describe(a)} with {self.describe(b)}", node)

    def visit_Call(self, node: ast.Call) -> Any:
        fn = self.eval(node.func)
        if isinstance(fn, Method):
            return self.call_method(fn, node)
        if isinstance(fn, ApiFunc):
            if fn.python is not None and node.args and not node.keywords:
                nums = [self.constant(a) for a in node.args]
                if all(isinstance(x, int | float) and not isinstance(x, bool) for x in nums):
                    return float(fn.python(*nums))  # math.sqrt(2.0): a number known when the kernel compiles
            return self.call_api(fn.name, node)
        if fn is print:
            return self.call_print(node)
        if inspect.isfunction(fn) and not fn.__module__.startswith("tilegrid.lang"):
            return self.inline_call(fn, node)
        if fn is float:
            args = [self.eval(a) for a in node.args]
            if len(args) == 1 and isinstance(args[0], str | int | float):
                return float(args[0])
        if fn is int:
            args = [self.eval(a) for a in node.args]
            if len(args) == 1 and isinstance(args[0], int | float):
                return int(args[0])
        if fn in (min, max):
            args = [self.eval(a) for a in node.args]
            if all(isinstance(a, int | float) for a in args):
                return fn(*args)
            if len(args) == 2 and all(isinstance(a, int | Idx) for a in args):
                op = (arith.MinSIOp if fn is min else arith.MaxSIOp)(self.index(args[0]), self.index(args[1]))
                return Idx(self.emit(op).results[0])
            if len(args) == 2 and any(isinstance(a, Blk) for a in args):
                return self.block_binary("min" if fn is min else "max", args[0], args[1], node)
        if fn in (abs, pow):
            args = [self.eval(a) for a in node.args]
            if args and isinstance(args[0], Blk) and not node.keywords and len(args) <= 2:
                return self.apply_op(API[fn.__name__], args, node)
            if all(isinstance(a, int | float) for a in args):
                return fn(*args)
        name = getattr(fn, "__name__", type(fn).__name__)
        raise self.error(f"'{name}(...)' cannot be called in a thread", node, note="see the tilegrid language reference")

    # ---- block math -----------------------------------------------------------------------

    def use(self, b: Blk, node: ast.AST) -> SSAValue:
        """The block's value, checking the CB protocol: no reads before fill or after release."""
        if b.slot is not None:
            if b.slot.released_at is not None:
                raise self.error(
                    f"a block of CB '{b.slot.cb_name}' is used after its release at {b.slot.released_at}",
                    node,
                    note="a popped block is released at the end of the Python block that popped it; "
                    "copy what you need into a variable computed before then",
                )
            if b.slot.role == "reserved" and not b.slot.filled:
                raise self.error(
                    f"a reserved block of CB '{b.slot.cb_name}' is read before it is filled",
                    node,
                    note="fill a reserved block with store() or a dma(...).wait() before reading it",
                )
        return b.value

    def expect_block(self, v: Any, node: ast.AST, what: str) -> Blk:
        if not isinstance(v, Blk):
            raise self.error(f"{what}() expects a block, got {self.describe(v)}", node)
        return v

    def unary(self, name: str, x: Blk, node: ast.AST, **params: Any) -> Blk:
        return Blk(self.emit(B.op(name)(self.use(x, node), **params)).results[0])

    def reduce(self, kind: str, dim: int, x: Blk, acc: Any, node: ast.AST) -> Blk:
        r = Blk(self.emit(B.ReduceOp(kind, dim, self.use(x, node))).results[0])
        if acc is None:
            return r
        acc = self.expect_block(acc, node, f"the accumulator of {'row' if dim else 'col'}{kind}")
        if acc.type.dims != r.type.dims:
            raise self.error(
                f"accumulator is {self.shape_str(acc)} but the reduction gives {self.shape_str(r)}", node
            )
        return self.block_binary("max" if kind == "max" else "add", r, acc, node)

    def where(self, c: Any, a: Any, b: Any, node: ast.AST) -> Blk:
        cond = self.expect_block(c, node, "where")
        shape = cond.type.dims
        for v in (a, b):
            if isinstance(v, Blk):
                shape = broadcast_shape(shape, v.type.dims) or shape
        dtype = "f32" if any(isinstance(v, Blk) and v.type.dtype == "f32" for v in (a, b)) else (
            a.type.dtype if isinstance(a, Blk) else b.type.dtype if isinstance(b, Blk) else "f32"
        )
        t = C.BlockType(shape, dtype)
        ops = []
        for v in (cond, a, b):
            if isinstance(v, int | float):
                ops.append(self.emit(B.FillOp(float(v), t)).results[0])
            elif isinstance(v, Blk):
                if broadcast_shape(v.type.dims, shape) != shape:
                    raise self.error(f"where(): a {self.shape_str(v)} block does not broadcast to {shape[0]}x{shape[1]}", node)
                ops.append(self.use(v, node))
            else:
                raise self.error(f"where() takes blocks or numbers, got {self.describe(v)}", node)
        return Blk(self.emit(B.op("where")(ops[0], ops[1], ops[2], t)).results[0])

    def block_binary(self, kind: str, a: Any, b: Any, node: ast.AST) -> Blk:
        if isinstance(a, Blk) and isinstance(b, Blk):
            shape = broadcast_shape(a.type.dims, b.type.dims)
            if shape is None:
                raise self.error(
                    f"shapes do not broadcast: {self.shape_str(a)} {kind} {self.shape_str(b)}",
                    node,
                    note="elementwise operands must have equal shapes, or one must be an [M,1] column or [1,N] row",
                )
            return Blk(self.emit(B.op(kind)(self.use(a, node), self.use(b, node))).results[0])
        if isinstance(a, Blk) and self.is_scalar(b):
            return Blk(self.emit(B.op(kind)(self.use(a, node), self.scalar(b))).results[0])
        if isinstance(b, Blk) and self.is_scalar(a):
            return Blk(self.emit(B.op(kind)(self.scalar(a), self.use(b, node))).results[0])
        raise self.error(f"unsupported operands for '{kind}': {self.describe(a)} and {self.describe(b)}", node)

    def binop(self, op: ast.operator, a: Any, b: Any, node: ast.AST) -> Any:
        if isinstance(op, ast.MatMult):
            if not (isinstance(a, Blk) and isinstance(b, Blk)):
                raise self.error(f"@ multiplies two blocks, got {self.describe(a)} @ {self.describe(b)}", node)
            if a.type.dims[1] != b.type.dims[0]:
                raise self.error(
                    f"matmul inner dimensions differ: {self.shape_str(a)} @ {self.shape_str(b)}",
                    node,
                    note="for Q @ K^T write Q_block @ K_block.transpose()",
                )
            return Blk(self.emit(B.MatmulOp(self.use(a, node), self.use(b, node))).results[0])
        if isinstance(op, ast.Pow) and isinstance(a, Blk):
            if not isinstance(b, int) or isinstance(b, bool):
                raise self.error(f"a block's power must be an integer known when the kernel compiles, got "
                                 f"{self.describe(b)}", node, note="for x ** 0.5 write x.sqrt(); for e ** x, x.exp()")
            return self.unary("pow", a, node, n=b)
        if isinstance(a, Blk) or isinstance(b, Blk):
            kind = BINOPS.get(type(op))
            if kind is None:
                raise self.error(f"operator '{type(op).__name__}' is not supported on blocks", node)
            return self.block_binary(kind, a, b, node)
        if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            fn = PY_BINOPS.get(type(op))
            if fn is None:
                raise self.error(f"operator '{type(op).__name__}' is not supported in a thread", node)
            try:
                return fn(a, b)
            except ZeroDivisionError as e:
                raise self.error("division by zero", node) from e
        if isinstance(a, int | Idx) and isinstance(b, int | Idx):
            if isinstance(op, ast.Mod | ast.FloorDiv) and b == 0:
                raise self.error("integer division by zero", node)
            if isinstance(op, ast.Mod):  # Python's modulo, the sign of the divisor: a - (a // b) * b
                x, y = self.index(a), self.index(b)
                q = self.emit(arith.FloorDivSIOp(x, y)).results[0]
                return Idx(self.emit(arith.SubiOp(x, self.emit(arith.MuliOp(q, y)).results[0])).results[0])
            ops = {ast.Add: arith.AddiOp, ast.Sub: arith.SubiOp, ast.Mult: arith.MuliOp, ast.FloorDiv: arith.FloorDivSIOp}
            cls = ops.get(type(op))
            if cls is None:
                raise self.error(f"operator '{type(op).__name__}' is not supported on integers in a thread", node)
            return Idx(self.emit(cls(self.index(a), self.index(b))).results[0])
        if self.is_scalar(a) and self.is_scalar(b):
            ops = {ast.Add: arith.AddfOp, ast.Sub: arith.SubfOp, ast.Mult: arith.MulfOp, ast.Div: arith.DivfOp}
            cls = ops.get(type(op))
            if cls is None:
                raise self.error(f"operator '{type(op).__name__}' is not supported on floats in a thread", node)
            return FScalar(self.emit(cls(self.scalar(a), self.scalar(b))).results[0])
        raise self.error(f"unsupported operands: {self.describe(a)} and {self.describe(b)}", node)

    # ---- helpers --------------------------------------------------------------------------

    def is_scalar(self, v: Any) -> bool:
        return isinstance(v, int | float | Idx | FScalar) and not isinstance(v, bool)

    def const_index(self, v: int) -> SSAValue:
        return self.emit(arith.ConstantOp(IntegerAttr(v, IndexType()))).results[0]

    def const_f32(self, v: float) -> SSAValue:
        return self.emit(arith.ConstantOp(FloatAttr(v, f32))).results[0]

    def index(self, v: Any) -> SSAValue:
        if isinstance(v, Idx):
            return v.value
        if isinstance(v, int) and not isinstance(v, bool):
            return self.const_index(v)
        raise self.error(f"expected an integer, got {self.describe(v)}")

    def scalar(self, v: Any) -> SSAValue:
        if isinstance(v, FScalar):
            return v.value
        if isinstance(v, int | float):
            return self.const_f32(float(v))
        if isinstance(v, Idx):
            from xdsl.dialects.builtin import i64

            i = self.emit(arith.IndexCastOp(v.value, i64)).results[0]
            return self.emit(arith.SIToFPOp(i, f32)).results[0]
        raise self.error(f"expected a number, got {self.describe(v)}")

    def materialize(self, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return Idx(self.const_index(v))
        if isinstance(v, float):
            return FScalar(self.const_f32(v))
        return v

    def ir_type(self, v: Any) -> Any:
        if isinstance(v, Blk) and v.slot is None or isinstance(v, Idx | FScalar):
            return v.value.type
        if isinstance(v, int) and not isinstance(v, bool):
            return IndexType()
        if isinstance(v, float):
            return f32
        return None

    def coerce(self, v: Any, t: Any, name: str, node: ast.AST) -> SSAValue:
        """`v` as a value of type `t` (carried variables keep their type across iterations)."""
        v = self.materialize(v)
        if isinstance(v, Blk) and isinstance(t, C.BlockType):
            if v.slot is not None and v.slot.role == "popped":
                v = self.copy_block(v, node)
            elif v.slot is not None:
                raise self.error(
                    f"'{name}' is carried across iterations but is bound to a reserved CB block",
                    self.assigned_at.get(name, node),
                    note="carry a computed block; store it into the reserved block when it is final",
                )
            if v.type == t:
                return v.value
            if v.type.dims != t.dims:
                raise self.error(
                    f"'{name}' is {t.dims[0]}x{t.dims[1]} before the loop/branch but becomes "
                    f"{self.shape_str(v)} here; a carried block keeps its shape",
                    self.assigned_at.get(name, node),
                    note=f"give '{name}' its final shape before the loop, or use a new name for the {self.shape_str(v)} value",
                )
            return self.emit(B.CopyOp(v.value, t)).results[0]
        if isinstance(v, Idx | FScalar) and v.value.type == t:
            return v.value
        raise self.error(f"'{name}' changes kind inside the loop/branch ({self.describe(v)})", node)

    def copy_block(self, b: Blk, node: ast.AST) -> Blk:
        """A value copy of a CB block (so it outlives the slot's release)."""
        return Blk(self.emit(B.CopyOp(self.use(b, node))).results[0])

    def wrap(self, v: SSAValue) -> Any:
        if isinstance(v.type, C.BlockType):
            return Blk(v)
        if isinstance(v.type, IndexType):
            return Idx(v)
        return FScalar(v)

    def block_type(self, shape: Any, dtype: Any, node: ast.AST) -> C.BlockType:
        if not (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(d, int) for d in shape)):
            raise self.error(f"shape must be a tuple of two integers (elements), got {self.describe(shape)}", node)
        for d in shape:
            if d != 1 and (d <= 0 or d % 32):
                raise self.error(
                    f"shape {shape} is not made of whole tiles: each dimension must be 1 or a multiple of 32",
                    node,
                    note="(32, 1) is one tile column, (32, 32) one tile",
                )
        if dtype not in ("bf16", "f32", "float32", "bfloat16"):
            raise self.error(f"dtype must be 'bf16' or 'f32', got {dtype!r}", node)
        return C.BlockType(shape, {"float32": "f32", "bfloat16": "bf16"}.get(dtype, dtype))

    def shape_str(self, b: Blk) -> str:
        r, c = b.type.dims
        return f"{r}x{c}"

    def describe(self, v: Any) -> str:
        if isinstance(v, Blk):
            return f"a {self.shape_str(v)} {v.type.dtype} block"
        if isinstance(v, Idx):
            return "a run-time integer"
        if isinstance(v, FScalar):
            return "a run-time float"
        if isinstance(v, Cond):
            return "a condition"
        if isinstance(v, CBRef):
            return f"CB '{v.name}'"
        if isinstance(v, SemRef):
            return f"semaphore '{v.name}'"
        if isinstance(v, StreamRef):
            return f"the Stream of '{v.name}'"
        if isinstance(v, StreamView):
            return f"a block of the Stream of '{v.stream.name}'"
        if isinstance(v, DMAHandle):
            return "a DMA handle"
        if isinstance(v, Method):
            return f"the method .{v.name} (not called)"
        if isinstance(v, tuple):
            return f"the tuple {v!r}"
        if isinstance(v, Poison):
            return "a name that cannot be read here"
        return f"the {type(v).__name__} {v!r}"


def check_semaphores(threads: list[C.ThreadOp]) -> None:
    """A semaphore that is set or incremented but that no thread waits on orders nothing: a bug."""
    updates: dict[int, Operation] = {}
    waited: set[int] = set()
    for t in threads:
        for o in t.walk():
            if isinstance(o, C.SemSetOp | C.SemIncOp):
                updates.setdefault(o.sem.data, o)
            elif isinstance(o, C.SemWaitOp):
                waited.add(o.sem.data)
    for k, o in sorted(updates.items()):
        if k not in waited:
            raise CompileError(
                f"semaphore {k} is {'set' if isinstance(o, C.SemSetOp) else 'incremented'} here but no thread "
                "ever waits on it",
                o.attributes["loc"].data,
                note="a semaphore orders two threads: the receiver of the signal must call sem.wait(value)",
            )


def build_module(kernel: str, grid: tuple[int, int], args: list[dict], threads: list[ThreadDef], streams: dict[int, int],
                 tensors: list[Any] | None = None) -> ModuleOp:
    """Block IR for a kernel: one `tilegrid.program` with a thread region per thread."""
    sems: list[Semaphore] = []
    ops = [ThreadBuilder(t, args, streams, sems, tensors).build() for t in threads]
    check_semaphores(ops)
    return ModuleOp([C.ProgramOp(kernel, grid, args, ops, semaphores=[s.initial for s in sems])])

