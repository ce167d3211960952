"""One-command, idempotent installer of the tt-metal + wolfpine environment tilegrid's tt-metal target runs on.

    tilegrid setup tt-metal          # install or verify (a warm run takes about a second)
    tilegrid setup tt-metal --print-env   # the variables a run needs, as shell exports

Why each step exists is recorded in docs/ttmetal_setup.md (and, measured, in the project's anchors): ttnn 0.81.1
from PyPI *is* tt-metal (libtt_metal.so, firmware and kernel-API sources, tt-llk), wolfpine 2.2 is a pure-Python
Wormhole simulator that tt-metal's UMD launches as its "simulation" chip, and the one missing piece, Tenstorrent's
`sfpi` RISC-V compiler, is stood in for by Debian's riscv64-unknown-elf GCC 12 plus our wrappers and headers
(tilegrid/targets/ttmetal/standin/).  Pure stdlib: it runs under tilegrid's own Python; everything ttnn-related
runs in a separate Python 3.12 venv (ttnn pins numpy<2, tilegrid needs numpy>=2, and ttnn has no 3.11 wheel).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TTNN_VERSION = "0.81.1"
WOLFPINE_VERSION = "2.2"
PIP_REQUIREMENTS = (f"ttnn=={TTNN_VERSION}", f"wolfpine=={WOLFPINE_VERSION}", "numpy<2")
APT_PACKAGES = ("gcc-riscv64-unknown-elf", "picolibc-riscv64-unknown-elf", "libstdc++-12-dev")
HOME_ENV = "TILEGRID_TTMETAL_HOME"
PYTHON_ENV = "TILEGRID_PYTHON312"
DEVICE_ENV = "TILEGRID_TTMETAL_DEVICE"  # "sim" (wolfpine, the default) or "hw" (a card and a real tt-metal install)
CARD_PYTHON_ENV = "TILEGRID_TTMETAL_PYTHON"  # with "hw": a Python that imports ttnn (TT_METAL_HOME: its tt-metal)
#: Bump when a step's output changes in a way the content hash of standin/ does not capture.
SETUP_REVISION = 1

STANDIN_DIR = Path(__file__).resolve().parent / "standin"
STAMP_NAME = "setup-stamp.json"
STANDIN_MARKER = ".tilegrid-standin"
LTO_MARKER = ".tilegrid-lto-rebuilt"
LD_MARK = "LONG(0); /* tilegrid: keep .data non-empty (GNU ld 2.40 places an empty one outside every segment) */"
ASSERT_FILES = ("core_local_mem.h", "scratchpad.h", "tensor/local_tensor_accessor.h")
ASSERT_OLD = "static_assert(false,"
ASSERT_NEW = "static_assert(address_type != address_type /* tilegrid: dependent, for GCC 12 */,"
# The hw-lib objects tt-metal links into every firmware/kernel ELF; the wheel's copies are GCC 15 LTO bytecode.
LTO_OBJECTS = {
    "substitutes.o": "tt_metal/hw/toolchain/substitutes.cpp",
    "tdma_xmov.o": "tt_metal/hw/firmware/src/tt-1xx/tdma_xmov.c",
    "noc.o": "tt_metal/hw/firmware/src/tt-1xx/wormhole/noc.c",
}
# The flags tt-metal's own build uses for those objects (tt_metal/hw/CMakeLists.txt), minus -Werror.
LTO_FLAGS = (
    "-mcpu=tt-wh -std=c++17 -flto=auto -ffast-math -fno-use-cxa-atexit -fno-exceptions -Wall "
    "-Wno-deprecated-declarations -Wno-unknown-pragmas -Wno-unused-variable -Wno-unused-function -Os "
    "-fno-tree-loop-distribute-patterns -DTENSIX_FIRMWARE"
).split()


class SetupError(RuntimeError):
    """Something the environment needs is missing and could not be installed; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Env:
    """Where the installed environment lives, and the variables a simulated tt-metal run needs."""

    root: Path  # the cache root (TILEGRID_TTMETAL_HOME or ~/.cache/tilegrid/ttmetal)
    venv: Path
    python: Path  # the venv's Python 3.12 (ttnn, wolfpine, numpy<2)
    tt_metal_root: Path  # site-packages/ttnn: tt-metal's runtime root
    wolfpine: Path  # the `wolfpine` launcher
    simulator_dir: Path  # wolfpine's Wormhole simulator directory (TT_METAL_SIMULATOR)
    tt_metal_cache: Path  # persistent TT_METAL_CACHE: firmware and kernels build once
    logs_dir: Path  # TT_METAL_LOGS_PATH (device-profiler output and the like)
    simulated: bool = True  # False: a card (card_env), no simulator variables

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for a process that drives the device: for the simulated Wormhole what `wolfpine run`
        sets, plus a persistent kernel cache; for a card tt-metal's own variables only. `base`: os.environ."""
        out = dict(os.environ if base is None else base)
        out.update(TT_METAL_RUNTIME_ROOT=str(self.tt_metal_root), TT_METAL_HOME=str(self.tt_metal_root),
                   TT_METAL_CACHE=str(self.tt_metal_cache), TT_METAL_LOGS_PATH=str(self.logs_dir))
        if not self.simulated:
            for name in ("TT_METAL_SIMULATOR", "TT_METAL_SLOW_DISPATCH_MODE", "WOLFPINE_PYTHON"):
                out.pop(name, None)
            out["TILEGRID_TTMETAL_SIMPROBE"] = "0"  # the probe reads wolfpine's counters: no simulator, no probe
            return out
        lib = str(self.tt_metal_root / "build" / "lib")
        ld = [p for p in out.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != lib]
        out.update(
            TT_METAL_SIMULATOR=str(self.simulator_dir),
            TT_METAL_SLOW_DISPATCH_MODE="1",
            LD_LIBRARY_PATH=os.pathsep.join([lib, *ld]),
            WOLFPINE_PYTHON=str(self.python),
        )
        return out


def device_kind(environ: dict[str, str] | None = None) -> str:
    """Which device backend="tt-metal" runs on: $TILEGRID_TTMETAL_DEVICE, "sim" (wolfpine, default) or "hw"."""
    kind = (os.environ if environ is None else environ).get(DEVICE_ENV, "sim").strip() or "sim"
    if kind not in ("sim", "hw"):
        raise SetupError(f"{DEVICE_ENV}={kind!r}: it must be 'sim' (the simulated Wormhole) or 'hw' (a card)")
    return kind


def card_env(environ: dict[str, str] | None = None) -> Env:
    """The environment of a machine with a Tenstorrent card and tt-metal installed the usual way (its own sfpi,
    no stand-in, no simulator): $TILEGRID_TTMETAL_PYTHON, a Python that imports ttnn, and $TT_METAL_HOME, tt-metal's
    root. Kernels and logs are cached under $TILEGRID_TTMETAL_HOME (default ~/.cache/tilegrid/ttmetal)/card."""
    e = os.environ if environ is None else environ
    python, home = e.get(CARD_PYTHON_ENV), e.get("TT_METAL_HOME")
    if not python or not home:
        raise SetupError(f"{DEVICE_ENV}=hw needs {CARD_PYTHON_ENV} (a Python with ttnn installed) and TT_METAL_HOME "
                         f"(tt-metal's root); missing: {', '.join(n for n, v in ((CARD_PYTHON_ENV, python), ('TT_METAL_HOME', home)) if not v)}")
    root = (Path(e[HOME_ENV]).expanduser() if e.get(HOME_ENV) else Path.home() / ".cache" / "tilegrid" / "ttmetal") / "card"
    py = Path(python).expanduser()
    return Env(root=root, venv=py.parent.parent, python=py, tt_metal_root=Path(home).expanduser(), wolfpine=Path(),
               simulator_dir=Path(), tt_metal_cache=root / "tt-metal-cache", logs_dir=root / "logs", simulated=False)


def default_root() -> Path:
    """The cache root: $TILEGRID_TTMETAL_HOME, else ~/.cache/tilegrid/ttmetal."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tilegrid" / "ttmetal"


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / "python3.12" / "site-packages"


def _make_env(root: Path) -> Env:
    venv = root / "venv"
    sp = _site_packages(venv)
    return Env(
        root=root,
        venv=venv,
        python=venv / "bin" / "python",
        tt_metal_root=sp / "ttnn",
        wolfpine=venv / "bin" / "wolfpine",
        simulator_dir=sp / "framework" / "sim" / "wormhole",
        tt_metal_cache=root / "tt-metal-cache",
        logs_dir=root / "logs",
    )


def standin_hash() -> str:
    """Content hash of our stand-in files and of this installer's revision: a change means reinstall them."""
    h = hashlib.sha256(f"rev{SETUP_REVISION}".encode())
    for p in sorted(STANDIN_DIR.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(STANDIN_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def find_env(root: Path | None = None) -> Env | None:
    """The installed environment, or None if setup has not completed (or its stand-in is out of date).

    Cheap: a stamp file and a few stat calls, no subprocess, no installs."""
    root = Path(root) if root is not None else default_root()
    try:
        stamp = json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    env = _make_env(root)
    if stamp.get("standin") != standin_hash() or stamp.get("ttnn") != TTNN_VERSION:
        return None
    needed = [env.python, env.tt_metal_root / "build" / "lib" / "libtt_metal.so", env.simulator_dir / "run.sh",
              env.tt_metal_root / "runtime" / "sfpi" / "compiler" / "bin" / "riscv-tt-elf-g++"]
    return env if all(p.exists() for p in needed) else None


# ----------------------------------------------------------------------------------------------- the steps


def _run(cmd: list[str], log: Callable[[str], None], env: dict[str, str] | None = None, quiet: bool = False) -> str:
    """Run a command; on failure raise SetupError with its output (the last 4000 characters)."""
    if not quiet:
        log("  $ " + " ".join(shlex.quote(c) for c in cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if p.returncode != 0:
        raise SetupError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-4000:]}")
    return p.stdout


def _python_version(exe: str) -> tuple[int, int] | None:
    try:
        p = subprocess.run([exe, "-c", "import sys, venv; print(*sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None  # e.g. a pyenv shim for a version that is installed but not selected
    try:
        major, minor = map(int, p.stdout.split())
    except ValueError:
        return None
    return major, minor


def find_python312() -> Path:
    """A working CPython 3.12 (ttnn 0.81.1 has wheels for 3.10 and 3.12 only): $TILEGRID_PYTHON312, `python3.12`
    on PATH (checked by running it: a pyenv shim may exist yet refuse), then pyenv's versions directory."""
    candidates: list[str] = []
    if os.environ.get(PYTHON_ENV):
        candidates.append(os.environ[PYTHON_ENV])
    on_path = shutil.which("python3.12")
    if on_path:
        candidates.append(on_path)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(pyenv_root / "versions" / "3.12*" / "bin" / "python3.12")), reverse=True)
    candidates += ["/usr/local/bin/python3.12", "/usr/bin/python3.12"]
    tried = []
    for c in dict.fromkeys(candidates):
        if Path(c).exists() and _python_version(c) == (3, 12):
            return Path(c)
        tried.append(c)
    raise SetupError(
        "no working Python 3.12 found (ttnn 0.81.1 ships wheels for CPython 3.10 and 3.12 only).\n"
        f"  tried: {', '.join(tried) or 'nothing'}\n"
        f"  fix: install it (`pyenv install 3.12`, or your distribution's python3.12 + python3.12-venv) "
        f"or point {PYTHON_ENV}=/path/to/python3.12 at one."
    )


def _dist_installed(sp: Path, name: str, version: str) -> bool:
    return (sp / f"{name}-{version}.dist-info").is_dir()


def step_venv(env: Env, log: Callable[[str], None]) -> bool:
    """The Python 3.12 venv with ttnn, wolfpine and numpy<2."""
    sp = _site_packages(env.venv)
    if env.python.exists() and _dist_installed(sp, "ttnn", TTNN_VERSION) and \
            _dist_installed(sp, "wolfpine", WOLFPINE_VERSION) and glob.glob(str(sp / "numpy-1.*.dist-info")):
        log(f"[skip] venv: ttnn {TTNN_VERSION}, wolfpine {WOLFPINE_VERSION} already in {env.venv}")
        return False
    if not env.python.exists():
        py = find_python312()
        log(f"[do]   venv: creating {env.venv} with {py}")
        env.venv.parent.mkdir(parents=True, exist_ok=True)
        _run([str(py), "-m", "venv", str(env.venv)], log)
    log(f"[do]   venv: pip install {' '.join(PIP_REQUIREMENTS)} (about 100 MB; a minute)")
    _run([str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *PIP_REQUIREMENTS], log)
    return True


def _toolchain_missing() -> list[str]:
    missing = []
    if not shutil.which("riscv64-unknown-elf-g++") or not shutil.which("riscv64-unknown-elf-ar"):
        missing.append("gcc-riscv64-unknown-elf")
    if not Path("/usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs").exists():
        missing.append("picolibc-riscv64-unknown-elf")
    if not Path("/usr/include/c++/12/type_traits").exists() or \
            not Path("/usr/include/x86_64-linux-gnu/c++/12/bits/c++config.h").exists():
        missing.append("libstdc++-12-dev")
    return missing


def step_apt(env: Env, log: Callable[[str], None]) -> bool:
    """Debian's RISC-V cross GCC 12, picolibc and the host libstdc++-12 headers (the sfpi stand-in's parts)."""
    missing = _toolchain_missing()
    if not missing:
        log("[skip] apt: riscv64-unknown-elf-g++, picolibc and libstdc++-12 headers present")
        return False
    cmd = ["apt-get", "install", "-y", *missing]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(f"missing Debian packages {', '.join(missing)}; install them as root:\n"
                         f"  sudo apt-get update && sudo {' '.join(cmd)}")
    log(f"[do]   apt: installing {', '.join(missing)}")
    aenv = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run(cmd, log, env=aenv)
    except SetupError:
        _run(["apt-get", "update"], log, env=aenv)  # a fresh machine has no package lists yet
        _run(cmd, log, env=aenv)
    still = _toolchain_missing()
    if still:
        raise SetupError(f"apt-get ran but {', '.join(still)} is still missing (this needs Debian 12 / bookworm)")
    return True


def _sfpi_dir(env: Env) -> Path:
    return env.tt_metal_root / "runtime" / "sfpi"


def _standin_files(env: Env) -> dict[Path, bytes]:
    """Target path -> bytes for every stand-in file (the `as` wrapper runs with the venv's Python)."""
    out = {}
    for src in sorted(STANDIN_DIR.rglob("*")):
        if not src.is_file() or "__pycache__" in src.parts:
            continue
        data = src.read_bytes()
        if data.startswith(b"#!/usr/bin/env python3"):
            data = b"#!" + str(env.python).encode() + data[len(b"#!/usr/bin/env python3"):]
        out[_sfpi_dir(env) / src.relative_to(STANDIN_DIR)] = data
    return out


def step_standin(env: Env, log: Callable[[str], None], digest: str) -> bool:
    """Our sfpi stand-in (compiler and assembler wrappers, headers, an empty libstdc++.a) at runtime/sfpi."""
    sfpi = _sfpi_dir(env)
    marker = sfpi / STANDIN_MARKER
    if sfpi.exists() and not marker.exists():
        raise SetupError(f"{sfpi} exists and is not tilegrid's stand-in (a real sfpi?); "
                         "remove it, or use that installation as it is (see docs/ttmetal_setup.md)")
    files = _standin_files(env)
    libstdcxx = sfpi / "compiler" / "lib" / "libstdc++.a"
    if marker.exists() and marker.read_text().strip() == digest and libstdcxx.exists() and \
            all(p.exists() and p.read_bytes() == b for p, b in files.items()):
        log(f"[skip] stand-in: sfpi stand-in {digest} in place at {sfpi}")
        return False
    log(f"[do]   stand-in: writing the sfpi stand-in ({len(files)} files) to {sfpi}")
    if sfpi.exists():
        shutil.rmtree(sfpi)
    for p, data in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if data.startswith(b"#!"):
            p.chmod(0o755)
    libstdcxx.parent.mkdir(parents=True, exist_ok=True)
    _run(["riscv64-unknown-elf-ar", "rc", str(libstdcxx)], log, quiet=True)  # an empty archive for -lstdc++
    marker.write_text(digest + "\n")
    return True


def step_lto_objects(env: Env, log: Callable[[str], None], digest: str) -> bool:
    """Rebuild runtime/hw/lib/wormhole/{noc,substitutes,tdma_xmov}.o from their sources in the wheel: the shipped
    ones are GCC 15 LTO bytecode that GCC 12 cannot read.  The originals are kept as *.o.sfpi-orig."""
    tt = env.tt_metal_root
    libdir = tt / "runtime" / "hw" / "lib" / "wormhole"
    marker = libdir / LTO_MARKER
    if marker.exists() and marker.read_text().strip() == digest and all((libdir / o).exists() for o in LTO_OBJECTS):
        log("[skip] lto: wormhole hw-lib objects already rebuilt with the stand-in")
        return False
    log(f"[do]   lto: rebuilding {', '.join(LTO_OBJECTS)} with the stand-in compiler")
    m = tt / "tt_metal"
    arch = m / "hw" / "inc" / "internal" / "tt-1xx" / "wormhole"
    incs = [tt, m, m / "api", m / "hw" / "inc", m / "hw" / "inc" / "debug", m / "hw" / "firmware" / "src" / "tt-1xx",
            arch, arch / "wormhole_b0_defines", arch / "noc", arch / "overlay",
            m / "hw" / "ckernels" / "wormhole_b0" / "metal" / "common",
            m / "hw" / "ckernels" / "wormhole_b0" / "metal" / "llk_io",
            m / "tt-llk" / "tt_llk_wormhole_b0" / "common" / "inc", m / "tt-llk" / "tt_llk_wormhole_b0" / "llk_lib"]
    gxx = _sfpi_dir(env) / "compiler" / "bin" / "riscv-tt-elf-g++"
    for obj, src in LTO_OBJECTS.items():
        out = libdir / obj
        orig = libdir / (obj + ".sfpi-orig")
        if out.exists() and not orig.exists():
            shutil.copy2(out, orig)
        _run([str(gxx), *LTO_FLAGS, *[f"-I{p}" for p in incs], "-c", "-o", str(out), str(tt / src)], log, quiet=True)
    marker.write_text(digest + "\n")
    return True


def step_linker_scripts(env: Env, log: Callable[[str], None]) -> bool:
    """Wormhole linker scripts: a word of data after `__ldm_data_start = .;`, so `.data` is never empty (GNU ld 2.40
    leaves an empty .data outside every loadable segment, and tt-metal's ELF loader rejects that)."""
    changed = 0
    for ld in sorted((env.tt_metal_root / "runtime" / "hw" / "toolchain" / "wormhole").glob("*.ld")):
        text = ld.read_text()
        if "__ldm_data_start = .;" not in text or LD_MARK in text:
            continue
        ld.write_text(text.replace("__ldm_data_start = .;", "__ldm_data_start = .;\n     " + LD_MARK, 1))
        changed += 1
    log(f"[do]   linker scripts: patched {changed} Wormhole scripts" if changed
        else "[skip] linker scripts: already patched")
    return changed > 0


def step_static_asserts(env: Env, log: Callable[[str], None]) -> bool:
    """`static_assert(false, ...)` in three never-instantiated templates must depend on a template parameter for
    GCC 12 (C++23's P2593 rule, which GCC 15 implements, allows the plain form)."""
    changed = 0
    for rel in ASSERT_FILES:
        p = env.tt_metal_root / "tt_metal" / "hw" / "inc" / "api" / rel
        text = p.read_text()
        if ASSERT_OLD in text:
            p.write_text(text.replace(ASSERT_OLD, ASSERT_NEW))
            changed += 1
    log(f"[do]   static_asserts: patched {changed} headers" if changed else "[skip] static_asserts: already patched")
    return changed > 0


SMOKE = r"""
import sys, time, ttnn
t0 = time.perf_counter()
dev = ttnn.open_device(device_id=0)
t1 = time.perf_counter()
ttnn.close_device(dev)
print("SMOKE_OK open=%.2f close=%.2f" % (t1 - t0, time.perf_counter() - t1))
"""


def smoke_test(env: Env, log: Callable[[str], None]) -> float:
    """Open and close the simulated device once: builds the firmware into TT_METAL_CACHE (cold: 10-20 s)."""
    log("[do]   smoke: opening the simulated Wormhole once (builds firmware into the cache)")
    t0 = time.perf_counter()
    p = subprocess.run([str(env.python), "-c", SMOKE], capture_output=True, text=True, env=env.env(), timeout=900)
    if p.returncode != 0 or "SMOKE_OK" not in p.stdout:
        raise SetupError(f"the smoke test (open_device on wolfpine) failed ({p.returncode}):\n"
                         f"{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    dt = time.perf_counter() - t0
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("SMOKE_OK"))
    log(f"       {line[len('SMOKE_OK '):]} s; whole process {dt:.1f} s")
    return dt


def setup(root: Path | None = None, log: Callable[[str], None] = print, smoke: bool | None = None) -> Env:
    """Install (or verify) everything; each step reports whether it did work or skipped.  `smoke`: open the device
    once at the end (default: only when something was installed, which also warms the firmware cache)."""
    t0 = time.perf_counter()
    root = Path(root) if root is not None else default_root()
    env = _make_env(root)
    digest = standin_hash()
    log(f"tilegrid tt-metal environment at {root} (ttnn {TTNN_VERSION}, wolfpine {WOLFPINE_VERSION}, "
        f"stand-in {digest})")
    root.mkdir(parents=True, exist_ok=True)
    stamp_path = root / STAMP_NAME
    try:
        old_stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        old_stamp = {}
    changed = False
    changed |= step_apt(env, log)
    changed |= step_venv(env, log)
    changed |= step_standin(env, log, digest)
    changed |= step_lto_objects(env, log, digest)
    changed |= step_linker_scripts(env, log)
    changed |= step_static_asserts(env, log)
    if old_stamp.get("standin") != digest and env.tt_metal_cache.exists():
        log(f"[do]   cache: the stand-in changed, clearing {env.tt_metal_cache} (firmware rebuilds once)")
        shutil.rmtree(env.tt_metal_cache)
    env.tt_metal_cache.mkdir(parents=True, exist_ok=True)
    env.logs_dir.mkdir(parents=True, exist_ok=True)
    if smoke or (smoke is None and (changed or old_stamp.get("standin") != digest)):
        smoke_test(env, log)
    stamp = {"ttnn": TTNN_VERSION, "wolfpine": WOLFPINE_VERSION, "standin": digest,
             "python": str(env.python), "installed_at": old_stamp.get("installed_at") or time.time()}
    if stamp != old_stamp:
        stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    log(f"done in {time.perf_counter() - t0:.1f} s: {'installed/updated' if changed else 'verified, nothing to do'}")
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tilegrid setup tt-metal", description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None, help=f"cache root (default ${HOME_ENV} or ~/.cache/...)")
    ap.add_argument("--smoke", action="store_true", help="open the simulated device once even if nothing changed")
    ap.add_argument("--print-env", action="store_true", help="print the run environment as shell exports and exit")
    args = ap.parse_args(argv)
    try:
        if args.print_env:
            env = find_env(args.root)
            if env is None:
                print("not installed (or out of date): run tilegrid setup tt-metal", file=sys.stderr)
                return 1
            full = env.env({})
            for k in sorted(full):
                print(f"export {k}={shlex.quote(full[k])}")
            return 0
        setup(args.root, smoke=True if args.smoke else None)
    except SetupError as e:
        print(f"tilegrid ttmetal setup: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
