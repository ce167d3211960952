"""tilegrid's tt-metal device server: runs hand-written or generated tt-metal C++ programs on one device.

Runs INSIDE the ttnn venv (Python 3.12, ttnn 0.81.1, numpy<2) and imports nothing from tilegrid, so tilegrid's own
process (numpy>=2) never loads ttnn; `tilegrid.targets.ttmetal.device.DeviceSession` starts it and talks to it.

Protocol: one JSON object per line on stdin, one JSON reply per line on the original stdout.  Everything else the
process prints (ttnn's logs, which go to stdout, and the wolfpine simulator's stderr) is routed to stderr, so the
protocol channel stays clean.  The first line written is a hello: {"ready": true, ...} or {"ready": false, "error"}.

Requests ({"id": any} is echoed back):
  {"op": "ping"}                      -> {"ok": true, "pong": true}
  {"op": "info"}                      -> device grid, profile-buffer address, pids
  {"op": "close"}                     -> {"ok": true}; the device is closed and the server exits
  {"op": "run", ...program...}        -> see run() and docs/ttmetal_setup.md for the schema

A run that hangs (wolfpine's deadlock watchdog fires) or exceeds its "timeout_s" gets an error reply
({"ok": false, "error": {"kind": "deadlock"|"timeout", ...}}), after which the server kills the simulator and exits:
the device is wedged and the client starts a fresh server.  Compile errors come back as kind "compile" with the
compiler's output; other failures as "invalid_request" or "runtime".
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1
# Profiling record written by the instrumented kernels: per core, one 32-word row of a small L1 tensor sharded over the
# program's own cores (see _PROFILE_EPILOGUE); its address reaches the kernels as their last common runtime argument.
PROFILE_WORDS = 32
PROFILE_TAG = 0xA5000000
SLOTS = ("brisc", "ncrisc", "trisc0", "trisc1", "trisc2")  # trisc0 = unpack, trisc1 = math, trisc2 = pack

_PROFILE_PROLOGUE = "#define kernel_main tilegrid_user_kernel_main\n#line 1\n"
# Appended after the user's kernel: a kernel_main that stamps the tile's wall clock (the cycle counter behind tt-metal's
# own device profiler) around the user's body and stores [start, end] plus a tag into this core's L1 record.  A TRISC
# only issues instructions to the Tensix coprocessor, so its end stamp is taken after tensix_sync(): completion.
_PROFILE_EPILOGUE = r"""
#undef kernel_main
#ifndef RISCV_DEBUG_REG_WALL_CLOCK_L
#define RISCV_DEBUG_REG_WALL_CLOCK_L 0xFFB121F0
#endif
#if defined(COMPILE_FOR_BRISC)
#define TILEGRID_PROFILE_SLOT 0
#elif defined(COMPILE_FOR_NCRISC)
#define TILEGRID_PROFILE_SLOT 1
#elif defined(UCK_CHLKC_UNPACK)
#define TILEGRID_PROFILE_SLOT 2
#elif defined(UCK_CHLKC_MATH)
#define TILEGRID_PROFILE_SLOT 3
#elif defined(UCK_CHLKC_PACK)
#define TILEGRID_PROFILE_SLOT 4
#endif
extern uint8_t my_logical_x_;
extern uint8_t my_logical_y_;
void kernel_main() {
    volatile uint32_t* tilegrid_clock = reinterpret_cast<volatile uint32_t*>(RISCV_DEBUG_REG_WALL_CLOCK_L);
    const uint32_t tilegrid_t0 = *tilegrid_clock;
    tilegrid_user_kernel_main();
#if defined(TILEGRID_PROFILE_SLOT) && TILEGRID_PROFILE_SLOT >= 2
    ckernel::tensix_sync();  // a TRISC only issues: wait until this thread's Tensix instructions have completed
#endif
    const uint32_t tilegrid_t1 = *tilegrid_clock;
#ifdef TILEGRID_PROFILE_SLOT
    volatile uint32_t* rec = reinterpret_cast<volatile uint32_t*>(get_common_arg_val<uint32_t>(TILEGRID_PROFILE_ARG));
    rec[2 * TILEGRID_PROFILE_SLOT] = tilegrid_t0;
    rec[2 * TILEGRID_PROFILE_SLOT + 1] = tilegrid_t1;
    rec[10 + TILEGRID_PROFILE_SLOT] = 0xA5000000u | (uint32_t(TILEGRID_PROFILE_SLOT) << 16) |
                                      (uint32_t(my_logical_x_) << 8) | uint32_t(my_logical_y_);
#endif
}
"""


class RequestError(Exception):
    """A failure to report to the client as {"ok": false, "error": {"kind": kind, "message": ..., **detail}}."""

    def __init__(self, kind: str, message: str, **detail):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail


# --------------------------------------------------------------------------------------------- stream plumbing


class StderrTap:
    """Owns fds 1 and 2 after startup: everything written there (ttnn's stdout logging, the simulator child, which
    inherits them) goes through a pipe that a thread copies to the real stderr, remembering the tail and noticing
    wolfpine's "[DEADLOCK" watchdog reports."""

    def __init__(self, real_stderr_fd: int):
        self.real = real_stderr_fd
        r, w = os.pipe()
        os.dup2(w, 2)
        os.dup2(w, 1)
        os.close(w)
        self.tail: collections.deque[str] = collections.deque(maxlen=400)
        self.deadlock = threading.Event()
        self.deadlock_text: list[str] = []
        self._lock = threading.Lock()
        self._mark = 0  # count of lines seen, to slice "lines since request start"
        threading.Thread(target=self._pump, args=(r,), daemon=True).start()

    def _pump(self, r: int) -> None:
        buf = b""
        collecting = 0
        while True:
            try:
                chunk = os.read(r, 65536)
            except OSError:
                return
            if not chunk:
                return
            try:
                os.write(self.real, chunk)
            except OSError:
                pass
            buf += chunk
            *lines, buf = buf.split(b"\n")
            with self._lock:
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    self.tail.append(line)
                    self._mark += 1
                    if "[DEADLOCK" in line:
                        collecting = 12
                        self.deadlock_text = [line]
                    elif collecting:
                        self.deadlock_text.append(line)
                        collecting -= 1
                        if collecting == 0 or "TT_SIM_DEADLOCK" in line:
                            collecting = 0
                            self.deadlock.set()

    def mark(self) -> int:
        with self._lock:
            return self._mark

    def since(self, mark: int, limit: int = 80) -> list[str]:
        with self._lock:
            n = min(self._mark - mark, len(self.tail))
            lines = list(self.tail)[len(self.tail) - n:] if n > 0 else []
        return lines[-limit:]


def _sim_children() -> list[int]:
    """PIDs of this process's children (the wolfpine server that tt-metal's UMD spawned, in its own session)."""
    me = str(os.getpid())
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            out.append(int(d))
    return out


def _kill_children_and_exit(code: int, grace: float = 0.0) -> None:
    """Exit without leaving the simulator behind.  After a clean close_device tt-metal tells the simulator to shut
    down; `grace` seconds let it finish (and write any TT_SIM_PROFILE / TT_SIM_TRACE_* outputs) before it is killed."""
    deadline = time.monotonic() + grace
    while grace and _sim_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _sim_children():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(code)


# --------------------------------------------------------------------------------------------------- the server


class Server:
    """One open device, many programs."""

    def __init__(self, tap: StderrTap, profile: bool):
        t0 = time.perf_counter()
        import numpy as np
        import ttnn

        self.np = np
        self.ttnn = ttnn
        self.tap = tap
        self.import_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        self.device = ttnn.open_device(device_id=0)
        self.open_s = time.perf_counter() - t1
        grid = self.device.compute_with_storage_grid_size()
        self.grid = (int(grid.x), int(grid.y))
        self.dtypes = {"bf16": ttnn.bfloat16, "f32": ttnn.float32}
        self.fidelity = {"LoFi": ttnn.MathFidelity.LoFi, "HiFi2": ttnn.MathFidelity.HiFi2,
                         "HiFi3": ttnn.MathFidelity.HiFi3, "HiFi4": ttnn.MathFidelity.HiFi4}
        self.kernel_cache = os.environ.get("TT_METAL_CACHE")
        self.profile = profile
        self.probe_dir = os.environ.get("TILEGRID_SIMPROBE_DIR")
        self._probe_seq = 0
        self.probe_ok = self.probe_dir is not None and self._probe_snapshot(timeout=10.0) is not None
        self.probe_err = None if self.probe_ok or not self.probe_dir else "the simulator probe did not answer"
        self.programs_run = 0

    def info(self) -> dict:
        return {"grid": list(self.grid), "import_s": round(self.import_s, 3), "open_s": round(self.open_s, 3),
                "profile": self.profile, "sim_counters": self.probe_ok,
                "pid": os.getpid(), "sim_pids": _sim_children(), "protocol": PROTOCOL_VERSION,
                "ttnn": getattr(self.ttnn, "__version__", None), "programs_run": self.programs_run}

    # ----------------------------------------------------------------------------------------- request parsing

    def _rects(self, spec) -> list[tuple[int, int, int, int]]:
        """A core set, by nesting depth: [x, y] (one core), [[x0, y0], [x1, y1]] (one inclusive rectangle), or
        [[[x0, y0], [x1, y1]], ...] (a list of rectangles).  Logical worker coordinates, x = column."""

        def is_pair(v) -> bool:
            return isinstance(v, (list, tuple)) and len(v) == 2 and all(type(w) is int for w in v)

        if is_pair(spec):
            rects = [(spec, spec)]
        elif isinstance(spec, (list, tuple)) and len(spec) == 2 and all(is_pair(v) for v in spec):
            rects = [tuple(spec)]
        elif isinstance(spec, (list, tuple)) and spec and all(
                isinstance(r, (list, tuple)) and len(r) == 2 and all(is_pair(v) for v in r) for r in spec):
            rects = [tuple(r) for r in spec]
        else:
            raise RequestError("invalid_request", f"bad core set {spec!r}: want [x, y], [[x0, y0], [x1, y1]] or a "
                                                  "list of [[x0, y0], [x1, y1]] rectangles (single cores as "
                                                  "[[x, y], [x, y]])")
        gx, gy = self.grid
        out = []
        for (x0, y0), (x1, y1) in rects:
            if not (0 <= x0 <= x1 < gx and 0 <= y0 <= y1 < gy):
                raise RequestError("invalid_request", f"core range {[[x0, y0], [x1, y1]]} is outside the {gx}x{gy} "
                                                      "worker grid (or not start <= end)")
            out.append((x0, y0, x1, y1))
        return out

    def _core_range_set(self, spec) -> object:
        ttnn = self.ttnn
        return ttnn.CoreRangeSet([ttnn.CoreRange(ttnn.CoreCoord(x0, y0), ttnn.CoreCoord(x1, y1))
                                  for x0, y0, x1, y1 in self._rects(spec)])

    def _cores_of(self, spec) -> list[tuple[int, int]]:
        return sorted({(x, y) for x0, y0, x1, y1 in self._rects(spec)
                       for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)})

    def _values(self, items, tensors: dict, where: str) -> list[int]:
        """Resolve an argument list: ints, {"addr": t}, {"accessor": t} (TensorAccessorArgs compile-time args, a list),
        {"noc_x": [x, y]} / {"noc_y": [x, y]} (NoC coordinates of a logical core, for multicast and semaphores),
        {"pages": t} (the tensor's page count), {"page_size": t}."""
        out: list[int] = []
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, dict)):
                raise RequestError("invalid_request", f"{where}: argument {v!r} is not an int or a reference")
            if isinstance(v, int):
                if not 0 <= v < 2**32:
                    raise RequestError("invalid_request", f"{where}: {v} does not fit a uint32")
                out.append(v)
                continue
            if len(v) != 1:
                raise RequestError("invalid_request", f"{where}: reference {v!r} must have exactly one key")
            ((key, ref),) = v.items()
            if key in ("addr", "accessor", "pages", "page_size"):
                if ref not in tensors:
                    raise RequestError("invalid_request", f"{where}: unknown tensor {ref!r} in {v!r}")
                t = tensors[ref]
                if key == "addr":
                    out.append(t.buffer_address())
                elif key == "accessor":
                    out += [int(a) for a in self.ttnn.TensorAccessorArgs(t).get_compile_time_args()]
                elif key == "pages":
                    out.append(int(t.buffer_num_pages()))
                else:
                    out.append(int(t.buffer_page_size()))
            elif key in ("noc_x", "noc_y"):
                c = self.device.worker_core_from_logical_core(self.ttnn.CoreCoord(int(ref[0]), int(ref[1])))
                out.append(int(c.x if key == "noc_x" else c.y))
            else:
                raise RequestError("invalid_request", f"{where}: unknown argument reference {v!r}")
        return out

    def _source(self, k: dict, name: str) -> str:
        src = k.get("source")
        if src is None and k.get("source_file"):
            with open(k["source_file"]) as f:
                src = f.read()
        if not isinstance(src, str) or "kernel_main" not in src:
            raise RequestError("invalid_request", f"{name}: 'source' must be C++ text defining kernel_main()")
        if not self.profile:
            return src
        return _PROFILE_PROLOGUE + src + "\n" + _PROFILE_EPILOGUE

    # ---------------------------------------------------------------------------------------------- one program

    def run(self, req: dict) -> dict:
        """Build the ProgramDescriptor a request describes, run it with ttnn.generic_op, save outputs as float32 .npy.

        Request fields: tensors {name: {shape, dtype: bf16|f32, input: path.npy | output: path.npy, poison: bool (an output
        starts as NaN)}}, cbs [{index,
        total_size, page_size, format, cores}], semaphores [{initial_value, cores, id?}], kernels [{kind: reader|
        writer|compute|dataflow, source, cores, compile_args, runtime_args: [{core, args}], common_runtime_args,
        defines {name: value}, and for compute: math_fidelity, fp32_dest_acc_en, dst_full_sync_en,
        math_approx_mode, unpack_to_dest_fp32 [CB index]; for dataflow: processor 0|1, noc 0|1}], engines (bool),
        timeout_s.  A cb may give "formats": [{index, format, page_size}] instead of one index / format / page_size:
        CB indices sharing one allocation.  Core sets: see
        _rects; argument values: see _values.  docs/ttmetal_setup.md has the whole schema and the reply."""
        np, ttnn = self.np, self.ttnn
        t_start = time.perf_counter()
        timing: dict[str, float] = {}
        # ---- tensors: inputs first, outputs last (generic_op's convention) ----
        specs = req.get("tensors") or {}
        if not isinstance(specs, dict) or not specs:
            raise RequestError("invalid_request", "'tensors' must be a non-empty object {name: spec}")
        tensors: dict[str, object] = {}
        order_in, order_out = [], []
        for name, s in specs.items():
            shape = [int(d) for d in s.get("shape", [])]
            dtype = s.get("dtype", "bf16")
            if dtype not in self.dtypes:
                raise RequestError("invalid_request", f"tensor {name}: dtype {dtype!r} is not one of bf16, f32")
            if len(shape) < 2 or shape[-1] % 32 or shape[-2] % 32:
                raise RequestError("invalid_request", f"tensor {name}: shape {shape} must be 2-D+ with the last two "
                                                      "dimensions multiples of 32 (TILE layout)")
            if "input" in s:
                try:
                    arr = np.load(s["input"])
                except OSError as e:
                    raise RequestError("invalid_request", f"tensor {name}: cannot read {s['input']}: {e}") from e
                if list(arr.shape) != shape:
                    raise RequestError("invalid_request", f"tensor {name}: file shape {list(arr.shape)} != {shape}")
                tensors[name] = ttnn.Tensor(np.ascontiguousarray(arr, dtype=np.float32), data_type=self.dtypes[dtype],
                                            device=self.device, layout=ttnn.TILE_LAYOUT)
            elif "output" in s and s.get("poison"):  # NaN-filled, so that what the program never wrote shows
                tensors[name] = ttnn.Tensor(np.full(shape, np.nan, np.float32), data_type=self.dtypes[dtype],
                                            device=self.device, layout=ttnn.TILE_LAYOUT)
            elif "output" in s:
                tensors[name] = ttnn.allocate_tensor_on_device(ttnn.Shape(shape), self.dtypes[dtype],
                                                               ttnn.TILE_LAYOUT, self.device, ttnn.DRAM_MEMORY_CONFIG)
            else:
                raise RequestError("invalid_request", f"tensor {name}: give 'input' (a .npy path) or 'output'")
            (order_out if "output" in s else order_in).append(name)
        if not order_out:
            raise RequestError("invalid_request", "at least one tensor must be an output")
        timing["upload_s"] = time.perf_counter() - t_start
        # ---- circular buffers and semaphores ----
        cbs = []
        for i, cb in enumerate(req.get("cbs") or []):
            # one allocation; "formats" lists several CB indices that share its memory (one per data format)
            views = cb.get("formats") or [{"index": cb.get("index"), "format": cb.get("format", "bf16"),
                                           "page_size": cb.get("page_size")}]
            fmts = []
            for v in views:
                fmt = v.get("format", "bf16")
                if fmt not in self.dtypes:
                    raise RequestError("invalid_request", f"cb {i}: format {fmt!r} is not one of bf16, f32")
                fmts.append(ttnn.CBFormatDescriptor(buffer_index=int(v["index"]), data_format=self.dtypes[fmt],
                                                    page_size=int(v["page_size"])))
            cbs.append(ttnn.CBDescriptor(total_size=int(cb["total_size"]),
                                         core_ranges=self._core_range_set(cb["cores"]), format_descriptors=fmts))
        sems = []
        for i, s in enumerate(req.get("semaphores") or []):
            sems.append(ttnn.SemaphoreDescriptor(id=int(s.get("id", i)), core_ranges=self._core_range_set(s["cores"]),
                                                 initial_value=int(s.get("initial_value", 0))))
        # ---- profiling records: a [cores, 32] uint32 tensor, one row in each participating core's L1 ----
        prof = None
        if self.profile:
            all_cores = sorted({c for k in req.get("kernels") or [] for c in self._cores_of(k.get("cores") or [])})
            if all_cores:
                grid = ttnn.CoreRangeSet([ttnn.CoreRange(ttnn.CoreCoord(x, y), ttnn.CoreCoord(x, y))
                                          for x, y in all_cores])
                mem = ttnn.MemoryConfig(ttnn.TensorMemoryLayout.HEIGHT_SHARDED, ttnn.BufferType.L1,
                                        ttnn.ShardSpec(grid, [1, PROFILE_WORDS], ttnn.ShardOrientation.ROW_MAJOR))
                prof = ttnn.Tensor(np.zeros((len(all_cores), PROFILE_WORDS), dtype=np.uint32),
                                   data_type=ttnn.uint32, device=self.device, layout=ttnn.ROW_MAJOR_LAYOUT,
                                   mem_config=mem)
        # ---- kernels ----
        kernels = []
        for i, k in enumerate(req.get("kernels") or []):
            kind = k.get("kind")
            name = f"kernel {i} ({kind})"
            if kind == "compute":
                fid = k.get("math_fidelity", "HiFi4")
                if fid not in self.fidelity:
                    raise RequestError("invalid_request", f"{name}: math_fidelity {fid!r} unknown")
                config = ttnn.ComputeConfigDescriptor(
                    math_fidelity=self.fidelity[fid], math_approx_mode=bool(k.get("math_approx_mode", False)),
                    fp32_dest_acc_en=bool(k.get("fp32_dest_acc_en", False)),
                    dst_full_sync_en=bool(k.get("dst_full_sync_en", False)))
                to_dest = [int(c) for c in k.get("unpack_to_dest_fp32") or []]
                if to_dest:  # these CB indices unpack straight into DST (fp32 kept whole, not TF32 in SrcA/SrcB)
                    modes = [ttnn.UnpackToDestMode.Default] * 64
                    for c in to_dest:
                        modes[c] = ttnn.UnpackToDestMode.UnpackToDestFp32
                    config.unpack_to_dest_mode = modes
            elif kind == "reader":
                config = ttnn.ReaderConfigDescriptor()
            elif kind == "writer":
                config = ttnn.WriterConfigDescriptor()
            elif kind == "dataflow":
                proc = [ttnn.DataMovementProcessor.RISCV_0, ttnn.DataMovementProcessor.RISCV_1][int(k.get("processor",
                                                                                                             0))]
                noc = [ttnn.NOC.RISCV_0_default, ttnn.NOC.RISCV_1_default][int(k.get("noc", k.get("processor", 0)))]
                config = ttnn.DataMovementConfigDescriptor(processor=proc, noc=noc)
            else:
                raise RequestError("invalid_request", f"{name}: kind must be reader, writer, compute or dataflow")
            core_spec = k.get("cores")
            if not core_spec:
                raise RequestError("invalid_request", f"{name}: 'cores' is required")
            rt = ttnn.RuntimeArgs()
            for entry in k.get("runtime_args") or []:
                x, y = entry["core"]
                rt[int(x)][int(y)] = self._values(entry.get("args", []), tensors, f"{name} runtime args")
            defines = k.get("defines") or {}
            common = self._values(k.get("common_runtime_args") or [], tensors, f"{name} common args")
            if prof is not None:  # the record's address, as a runtime value: the kernel binary does not change
                defines = {**defines, "TILEGRID_PROFILE_ARG": str(len(common))}
                common = [*common, prof.buffer_address()]
            kernels.append(ttnn.KernelDescriptor(
                kernel_source=self._source(k, name), source_type=ttnn.KernelDescriptor.SourceType.SOURCE_CODE,
                core_ranges=self._core_range_set(core_spec),
                compile_time_args=self._values(k.get("compile_args") or [], tensors, f"{name} compile args"),
                defines=[(str(a), str(b)) for a, b in defines.items()], runtime_args=rt,
                common_runtime_args=common,
                config=config))
        if not kernels:
            raise RequestError("invalid_request", "no kernels")
        program = ttnn.ProgramDescriptor(kernels=kernels, semaphores=sems, cbs=cbs)
        io = [tensors[n] for n in order_in + order_out]
        if len(io) < 2:  # generic_op wants at least one input and one output; an output-only program gets a dummy
            io = [tensors[order_out[0]], *io]
        # ---- run ----
        want_engines = bool(req.get("engines")) and self.probe_ok
        snap0 = self._probe_snapshot("on") if want_engines else None
        t0 = time.time()
        t_prog = time.perf_counter()
        try:
            ttnn.generic_op(io, program)
            ttnn.synchronize_device(self.device)
        except Exception as e:  # noqa: BLE001 - classify whatever tt-metal threw
            raise _classify(e) from e
        program_s = time.perf_counter() - t_prog
        snap1 = self._probe_snapshot("off") if want_engines else None
        built = self._newest_build_since(t0)
        build_s = min(max(built - t0, 0.0), program_s) if built else 0.0
        timing.update(program_s=program_s, build_s=build_s, run_s=program_s - build_s)
        # ---- outputs ----
        t_out = time.perf_counter()
        outputs = {}
        for n in order_out:
            host = tensors[n].cpu()
            if host.dtype != ttnn.float32:  # bf16 has no numpy dtype; widen on the host (exact)
                host = ttnn.to_dtype(host, ttnn.float32)
            arr = np.asarray(host.to_numpy(), dtype=np.float32).reshape(specs[n]["shape"])
            np.save(specs[n]["output"], arr)
            outputs[n] = specs[n]["output"]
        timing["download_s"] = time.perf_counter() - t_out
        kernel_cores = [self._cores_of(k["cores"]) for k in req["kernels"]]
        cycles = self._read_profile(prof, kernel_cores)
        engines = self._engine_counters(snap0, snap1, sorted({c for cs in kernel_cores for c in cs}))
        for t in [*tensors.values(), *([prof] if prof is not None else [])]:
            t.deallocate()
        timing["total_s"] = time.perf_counter() - t_start
        self.programs_run += 1
        return {"ok": True, "outputs": outputs, "timing": {k: round(v, 4) for k, v in timing.items()},
                "built": bool(built), "cycles": cycles, "engines": engines}

    def _probe_snapshot(self, switch: str = "", timeout: float = 5.0) -> dict | None:
        """Ask the probe in the simulator (simprobe/sitecustomize.py) for its running counters; switch "on"/"off"
        turns wolfpine's event bus on or off right after the snapshot."""
        if not self.probe_dir:
            return None
        self._probe_seq += 1
        seq = self._probe_seq
        tmp = os.path.join(self.probe_dir, f".req-{seq}")
        with open(tmp, "w") as f:
            f.write(switch)
        os.replace(tmp, os.path.join(self.probe_dir, f"req-{seq}"))
        path = os.path.join(self.probe_dir, f"snap-{seq}.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    snap = json.load(f)["counters"]
                os.unlink(path)
                return snap
            time.sleep(0.003)
        return None

    def _engine_counters(self, before: dict | None, after: dict | None, cores: list[tuple[int, int]]) -> dict | None:
        """Per core and wolfpine unit: what the simulator's cost model charged during this program (the difference of
        two probe snapshots).  Keys of "cores": logical "x,y" for the program's cores (mapped through tt-metal's
        logical -> NoC coordinates); other tiles (DRAM, other workers) keep the probe's tile name."""
        if before is None or after is None:
            return None
        to_logical = {}
        for x, y in cores:
            c = self.device.worker_core_from_logical_core(self.ttnn.CoreCoord(x, y))
            to_logical[f"noc0:{int(c.x)}:{int(c.y)}"] = f"{x},{y}"
        out: dict[str, dict] = {}
        for k, v in after.items():
            d = v - before.get(k, 0)
            if not d:
                continue
            tile, unit, name = k.split(",", 2)
            core = to_logical.get(tile, tile)
            out.setdefault(core, {}).setdefault(unit, {})[name] = d
        return {"unit": "wolfpine model cycles / counts per tile and unit (TT_SIM_COST_MODEL=1 for busy/stall cycles)",
                "cores": out}

    def _newest_build_since(self, t0: float) -> float | None:
        """The mtime of the newest kernel binary tt-metal's JIT wrote since t0 (None: everything came from cache)."""
        root = self.kernel_cache
        if not root or not os.path.isdir(root):
            return None
        newest = None
        for top in os.scandir(root):
            kdir = os.path.join(top.path, "kernels")
            if not top.is_dir() or not os.path.isdir(kdir):
                continue
            for family in os.scandir(kdir):
                if not family.is_dir() or family.stat().st_mtime < t0 - 1:
                    continue
                for h in os.scandir(family.path):
                    if not h.is_dir() or h.stat().st_mtime < t0 - 1:
                        continue
                    for dirpath, _dirs, files in os.walk(h.path):
                        for f in files:
                            if f.endswith(".elf"):
                                m = os.stat(os.path.join(dirpath, f)).st_mtime
                                if m >= t0 and (newest is None or m > newest):
                                    newest = m
        return newest

    def _read_profile(self, prof, kernels_cores: list[list[tuple[int, int]]]) -> dict | None:
        """Per core and RISC-V engine: [start, end] of the kernel body on the tile's wall clock (simulated cycles;
        wolfpine keeps one clock per tile, so compare spans within a core, not start times across cores)."""
        if prof is None:
            return None
        words = self.np.asarray(prof.cpu().to_numpy(), dtype=self.np.uint64).reshape(-1, PROFILE_WORDS)
        cores: dict[str, dict] = {}
        for row in words:
            for slot, name in enumerate(SLOTS):
                tag = int(row[10 + slot])
                if tag & 0xFF000000 != PROFILE_TAG or (tag >> 16) & 0xFF != slot:
                    continue
                x, y = (tag >> 8) & 0xFF, tag & 0xFF
                t0, t1 = int(row[2 * slot]), int(row[2 * slot + 1])
                rec = cores.setdefault(f"{x},{y}", {"core": [x, y]})
                rec[name] = {"start": t0, "end": t1, "cycles": (t1 - t0) % 2**32}
        for rec in cores.values():
            spans = [v for k, v in rec.items() if k in SLOTS]
            rec["span_cycles"] = (max(v["end"] for v in spans) - min(v["start"] for v in spans)) % 2**32
        expected = sorted({c for cs in kernels_cores for c in cs})
        return {"unit": "cycles (tile wall clock, RISCV_DEBUG_REG_WALL_CLOCK_L)",
                "cores": [cores[k] for k in sorted(cores, key=lambda s: tuple(map(int, s.split(","))))],
                "max_span_cycles": max((r["span_cycles"] for r in cores.values()), default=0),
                "missing_cores": [list(c) for c in expected if f"{c[0]},{c[1]}" not in cores]}

    def close(self) -> None:
        self.ttnn.close_device(self.device)


_LOG_RE = re.compile(r"build failed\. Log: (.*?)(?:\n\s*backtrace:|\Z)", re.S)


def _classify(e: Exception) -> RequestError:
    """tt-metal's exceptions are RuntimeErrors with the whole story in the text; pull out what the client needs."""
    text = str(e)
    if "build failed" in text or "Failed to generate binaries" in text:
        m = _LOG_RE.search(text)
        log = (m.group(1) if m else text).strip()
        return RequestError("compile", "kernel compilation failed", compiler_output=log)
    first = text.split("\nbacktrace:")[0].strip()
    return RequestError("runtime", first[:4000])


# --------------------------------------------------------------------------------------------------- main loop


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    real_err = os.dup(2)
    tap = StderrTap(real_err)
    sys.stdout = sys.stderr  # a stray print() must not corrupt the protocol

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    profile = os.environ.get("TILEGRID_TTMETAL_PROFILE", "1") != "0"
    if os.environ.get("TILEGRID_TTMETAL_SIMPROBE", "1") != "0":
        # The simulator (started by UMD when the device opens) inherits this environment and imports our probe.
        import tempfile

        os.environ["TILEGRID_SIMPROBE_DIR"] = tempfile.mkdtemp(prefix="tilegrid-simprobe-")
        probe_code = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simprobe")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (probe_code, os.environ.get("PYTHONPATH")) if p)
    mark = tap.mark()
    try:
        server = Server(tap, profile=profile)
    except Exception as e:  # noqa: BLE001
        reply({"ready": False, "error": {"kind": "device_open", "message": str(e).split("\nbacktrace:")[0],
                                         "stderr": tap.since(mark)}})
        _kill_children_and_exit(2)
    reply({"ready": True, **server.info()})

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            reply({"ok": False, "error": {"kind": "invalid_request", "message": f"not JSON: {e}"}})
            continue
        rid = req.get("id")
        op = req.get("op")
        if op == "ping":
            reply({"id": rid, "ok": True, "pong": True})
        elif op == "info":
            reply({"id": rid, "ok": True, **server.info()})
        elif op == "close":
            try:
                server.close()
            finally:
                reply({"id": rid, "ok": True, "closed": True})
            writes_reports = any(k == "TT_SIM_PROFILE" or k.startswith("TT_SIM_TRACE") for k in os.environ)
            _kill_children_and_exit(0, grace=120.0 if writes_reports else 0.0)
        elif op == "run":
            _serve_run(server, tap, req, reply)
        else:
            reply({"id": rid, "ok": False, "error": {"kind": "invalid_request", "message": f"unknown op {op!r}"}})
    # stdin closed: the client is gone
    try:
        server.close()
    finally:
        _kill_children_and_exit(0, grace=5.0)
    return 0


def _serve_run(server: Server, tap: StderrTap, req: dict, reply) -> None:
    """Run one program on a worker thread (tt-metal releases the GIL while it waits on the device), watching for
    wolfpine's deadlock report and the request's timeout; a wedged device ends the server."""
    rid = req.get("id")
    timeout = float(req.get("timeout_s", 0) or 0)
    result: dict = {}
    mark = tap.mark()
    tap.deadlock.clear()

    def work() -> None:
        try:
            result["reply"] = server.run(req)
        except RequestError as e:
            result["error"] = e
        except Exception as e:  # noqa: BLE001
            result["error"] = RequestError("runtime", f"{type(e).__name__}: {e}", traceback=traceback.format_exc())

    th = threading.Thread(target=work, daemon=True)
    t0 = time.monotonic()
    th.start()
    fatal = None
    while th.is_alive():
        th.join(0.05)
        if tap.deadlock.is_set():
            time.sleep(0.2)  # let the rest of the watchdog report arrive
            fatal = RequestError("deadlock", "wolfpine's watchdog reports no forward progress (device hang)",
                                 watchdog="\n".join(tap.deadlock_text))
            break
        if timeout and time.monotonic() - t0 > timeout:
            fatal = RequestError("timeout", f"the program did not finish within {timeout:g} s")
            break
    if fatal is not None:
        reply({"id": rid, "ok": False, "fatal": True,
               "error": {"kind": fatal.kind, "message": fatal.message, **fatal.detail, "stderr": tap.since(mark)}})
        _kill_children_and_exit(3)
    if "error" in result:
        e = result["error"]
        reply({"id": rid, "ok": False,
               "error": {"kind": e.kind, "message": e.message, **e.detail, "stderr": tap.since(mark, 40)}})
    else:
        reply({"id": rid, **result["reply"]})


if __name__ == "__main__":
    sys.exit(main())
