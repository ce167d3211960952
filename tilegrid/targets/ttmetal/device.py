"""Client side of tilegrid's tt-metal device server: runs in tilegrid's own process (numpy>=2, no ttnn).

`DeviceSession` starts host.py inside the ttnn venv (Python 3.12) under the environment setup.py installed, keeps
it (and the one device it opened) for many programs, restarts it if it dies, and closes it cleanly (context
manager, atexit).  Programs are described by the JSON schema in host.py / docs/ttmetal_setup.md; tensors may be
given as numpy arrays ("data"), which the session passes through .npy files in a private temporary directory.

    from tilegrid.targets.ttmetal.device import DeviceSession
    with DeviceSession() as dev:
        res = dev.run({"tensors": {"a": {"shape": [64, 64], "dtype": "bf16", "data": a},
                                   "out": {"shape": [64, 64], "dtype": "bf16", "output": True}},
                       "cbs": [...], "kernels": [...]})
        res.outputs["out"], res.timing, res.cycles
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tilegrid.targets.ttmetal.setup import Env, find_env

HOST_PY = Path(__file__).resolve().parent / "host.py"
DEFAULT_TIMEOUT_S = 600.0  # per program: wolfpine is a pure-Python simulator
START_TIMEOUT_S = 600.0  # import ttnn + open the device (+ a first firmware build on a cold cache)
GRACE_S = 30.0  # how much longer than the server's own timeout the client waits before killing it


class DeviceError(RuntimeError):
    """A structured failure from the device server.

    kind: "compile" (detail["compiler_output"]), "deadlock" (detail["watchdog"]: wolfpine's report), "timeout",
    "invalid_request", "runtime", "device_open", "server_died", "not_installed".  fatal: the server is gone (a hang
    or a crash); the session starts a fresh one on the next request."""

    def __init__(self, kind: str, message: str, detail: dict | None = None, fatal: bool = False):
        self.kind = kind
        self.message = message
        self.detail = detail or {}
        self.fatal = fatal
        extra = self.detail.get("compiler_output") or self.detail.get("watchdog") or ""
        super().__init__(f"[{kind}] {message}" + (f"\n{extra}" if extra else ""))


@dataclasses.dataclass
class RunResult:
    """One program's outputs (float32 arrays), wall timings (seconds) and per-core cycle stamps (or None)."""

    outputs: dict[str, np.ndarray]
    timing: dict[str, float]
    cycles: dict | None
    built: bool  # whether tt-metal's JIT compiled anything for this program (False: all from cache)
    reply: dict


class DeviceSession:
    """One long-lived host.py server (one open simulated device) serving many programs.

    profile: instrument kernels with wall-clock stamps (per core and RISC-V engine: BRISC, NCRISC, TRISC0-2).
    sim_env: extra environment for the server and the simulator it launches (e.g. {"TT_SIM_COST_MODEL": "1"} for
    wolfpine's cycle-cost model, {"TT_SIM_PROFILE": dir} for its per-unit report at exit).
    """

    def __init__(self, env: Env | None = None, *, profile: bool = True, sim_env: dict[str, str] | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, start_timeout_s: float = START_TIMEOUT_S,
                 stderr_log: Path | None = None):
        self.env = env if env is not None else find_env()
        if self.env is None:
            raise DeviceError("not_installed", "the tt-metal environment is not installed (or is out of date): run "
                                               "`tilegrid setup tt-metal`")
        self.profile = profile
        self.sim_env = dict(sim_env or {})
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.stderr_log = stderr_log if stderr_log is not None else self.env.logs_dir / "host-stderr.log"
        self.hello: dict | None = None  # the server's ready message: grid, open_s, import_s, pids
        self.start_s: float | None = None  # wall time of the last server start (process + import + device open)
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._replies: queue.Queue = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=300)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="tilegrid-ttmetal-"))
        self._closed = False
        self._started = False
        atexit.register(self.close)

    # ------------------------------------------------------------------------------------------- lifecycle

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> dict:
        """Start the server (if not running) and wait for its ready message; returns it."""
        if self.alive and self.hello is not None:
            return self.hello
        if self._closed:
            raise DeviceError("server_died", "this session was closed")
        if self._started:
            self.restarts += 1
        self._kill()
        env = self.env.env()
        env.update(self.sim_env)
        env["TILEGRID_TTMETAL_PROFILE"] = "1" if self.profile else "0"
        env.pop("PYTHONPATH", None)  # the ttnn venv must not see tilegrid's site-packages
        self.stderr_log.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if self.stderr_log.stat().st_size > 20_000_000:  # keep the log of the last sessions, not of all
                self.stderr_log.replace(self.stderr_log.with_suffix(".old.log"))
        t0 = time.perf_counter()
        self._replies = queue.Queue()
        self._proc = subprocess.Popen([str(self.env.python), "-P", "-u", str(HOST_PY)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(self._tmp),
                                      start_new_session=True, text=True, bufsize=1)
        threading.Thread(target=self._read_stdout, args=(self._proc, self._replies), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self._proc,), daemon=True).start()
        hello = self._wait_reply(self.start_timeout_s, "starting the device server")
        if not hello.get("ready"):
            err = hello.get("error", {})
            self._kill()
            raise DeviceError(err.get("kind", "device_open"), err.get("message", "device open failed"), err, True)
        self.start_s = time.perf_counter() - t0
        self.hello = hello
        self._started = True
        return hello

    def close(self) -> None:
        """Close the device and stop the server (idempotent; also runs at interpreter exit)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if self.alive:
            try:
                self._send({"op": "close", "id": "close"})
                self._wait_reply(60, "closing the device")
            except DeviceError:
                pass
            try:
                self._proc.wait(timeout=150)  # the simulator may be writing TT_SIM_PROFILE / TT_SIM_TRACE_* outputs
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> DeviceSession:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- requests

    def request(self, req: dict, timeout_s: float | None = None) -> dict:
        """Send one raw request and return the raw reply (raises DeviceError on an error reply)."""
        with self._lock:
            self.start()
            req = dict(req)
            req["id"] = next(self._ids)
            timeout = self.timeout_s if timeout_s is None else timeout_s
            if req.get("op") == "run":
                req.setdefault("timeout_s", timeout)
            self._send(req)
            reply = self._wait_reply(timeout + GRACE_S, f"request {req.get('op')}")
            if reply.get("id") != req["id"]:
                raise DeviceError("runtime", f"protocol out of step: sent id {req['id']}, got {reply!r:.300}")
            if not reply.get("ok"):
                err = dict(reply.get("error") or {})
                fatal = bool(reply.get("fatal"))
                if fatal:
                    self._reap()
                raise DeviceError(err.pop("kind", "runtime"), err.pop("message", "unknown error"), err, fatal)
            return reply

    def ping(self) -> bool:
        return bool(self.request({"op": "ping"}, timeout_s=60).get("pong"))

    def info(self) -> dict:
        return self.request({"op": "info"}, timeout_s=60)

    def run(self, program: dict[str, Any], timeout_s: float | None = None) -> RunResult:
        """Run one program.  Tensor specs may carry "data": ndarray (an input) or "output": True (an output, returned
        in RunResult.outputs); paths ("input": "x.npy", "output": "y.npy") pass through as they are."""
        req = {k: v for k, v in program.items() if k != "tensors"}
        req["op"] = "run"
        tensors = {}
        out_files: dict[str, Path] = {}
        tag = f"{os.getpid()}-{next(self._ids)}"
        for name, spec in program["tensors"].items():
            spec = dict(spec)
            if "data" in spec:
                arr = np.ascontiguousarray(np.asarray(spec.pop("data"), dtype=np.float32))
                spec.setdefault("shape", list(arr.shape))
                path = self._tmp / f"{tag}-{name}-in.npy"
                np.save(path, arr)
                spec["input"] = str(path)
            if spec.get("output") is True:
                out_files[name] = self._tmp / f"{tag}-{name}-out.npy"
                spec["output"] = str(out_files[name])
            spec["shape"] = [int(d) for d in spec["shape"]]
            tensors[name] = spec
        req["tensors"] = tensors
        try:
            reply = self.request(req, timeout_s)
            outputs = {}
            for name, path in reply.get("outputs", {}).items():
                outputs[name] = np.load(path)
            return RunResult(outputs=outputs, timing=reply.get("timing", {}), cycles=reply.get("cycles"),
                             built=bool(reply.get("built")), reply=reply)
        finally:
            for p in self._tmp.glob(f"{tag}-*"):
                p.unlink(missing_ok=True)

    def stderr_tail(self, n: int = 50) -> list[str]:
        """The server's (and simulator's) last stderr lines: ttnn logs, wolfpine messages."""
        return list(self._stderr_tail)[-n:]

    # ------------------------------------------------------------------------------------------------ plumbing

    def _send(self, req: dict) -> None:
        try:
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError) as e:
            self._reap()
            raise DeviceError("server_died", f"the device server is gone ({e}); stderr tail:\n"
                                             + "\n".join(self.stderr_tail(20)), fatal=True) from e

    def _wait_reply(self, timeout: float, what: str) -> dict:
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            self._kill()
            raise DeviceError("timeout", f"no reply within {timeout:g} s while {what}; the server was killed "
                                         "(it restarts on the next request)", {"stderr": self.stderr_tail()},
                              fatal=True) from None
        if line is None:
            code = self._proc.poll() if self._proc else None
            self._reap()
            raise DeviceError("server_died", f"the device server exited (code {code}) while {what}",
                              {"stderr": self.stderr_tail()}, fatal=True)
        try:
            return json.loads(line)
        except ValueError:
            return {"ok": False, "error": {"kind": "runtime", "message": f"unparseable reply: {line[:500]}"}}

    @staticmethod
    def _read_stdout(proc: subprocess.Popen, q: queue.Queue) -> None:
        for line in proc.stdout:
            if line.strip():
                q.put(line)
        q.put(None)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        with open(self.stderr_log, "a", encoding="utf-8", errors="replace") as log:
            log.write(f"---- tilegrid device server pid {proc.pid} started {time.ctime()}\n")
            for line in proc.stderr:
                self._stderr_tail.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    def _sim_pids(self) -> list[int]:
        """The wolfpine simulator processes of this server (UMD starts them in their own session)."""
        pids = set((self.hello or {}).get("sim_pids", []))
        if self._proc is not None:
            for d in Path("/proc").iterdir():
                if d.name.isdigit():
                    try:
                        stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    if int(stat[1]) == self._proc.pid:
                        pids.add(int(d.name))
        alive = []
        for pid in pids:
            try:
                if b"framework.sim" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    alive.append(pid)
            except OSError:
                pass
        return alive

    def _kill(self) -> None:
        """Kill the server's process group and its simulator; never leaves an orphaned simulator spinning."""
        proc = self._proc
        if proc is None:
            return
        sims = self._sim_pids()
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for pid in sims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()
        self._proc = None
        self.hello = None

    def _reap(self) -> None:
        """After a fatal reply or EOF: make sure the server and its simulator are gone."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=15)
        self._kill()


_SHARED: DeviceSession | None = None


def shared_session(**kwargs) -> DeviceSession:
    """A process-wide session, started on first use and closed at exit (a pytest module fixture can use it to open
    the device once).  Raises DeviceError("not_installed") when setup has not run."""
    global _SHARED
    if _SHARED is None or _SHARED._closed:
        _SHARED = DeviceSession(**kwargs)
    _SHARED.start()
    return _SHARED
