"""FlashAttention on the simulated Wormhole (wolfpine) next to tilegrid's performance model.

For each configuration, `tilegrid.kernels.flash_attention(..., backend="tt-metal")` runs the generated tt-metal
kernels on wolfpine (its cost model on; the SFPU ops are tilegrid's raw routines), and the same call runs under
the performance model (`tilegrid.perf.session`, timing only).  The table gives, per configuration: the accuracy
(max |error| against float64, relative norm error, elements differing from tilegrid's functional simulator),
then the cycles: total (wolfpine: the longest core's span of its five RISC-Vs; the model: its predicted end), and
engine by engine on the busiest core (wolfpine's per-unit busy cycles; the model's busy fraction of each unit times
its total).

    python benchmarks/ttmetal_flash_attention.py            # the table (a few minutes: wolfpine is slow)
    python benchmarks/ttmetal_flash_attention.py --quick    # the two smallest configurations
    python benchmarks/ttmetal_flash_attention.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
from ml_dtypes import bfloat16

import tilegrid.kernels.attention as A
from tilegrid import perf
from tilegrid.errors import TilegridError


@dataclass(frozen=True)
class Config:
    grid: tuple[int, int]
    seq: int
    head_dim: int
    causal: bool
    heads: int = 1
    kv_heads: int = 1

    @property
    def label(self) -> str:
        gqa = f" GQA {self.heads}/{self.kv_heads}" if self.heads != self.kv_heads else (
            f" h{self.heads}" if self.heads > 1 else "")
        return (f"{self.grid[0]}x{self.grid[1]} s{self.seq} d{self.head_dim}"
                f"{' causal' if self.causal else ''}{gqa}")


CONFIGS = [
    Config((1, 1), 64, 64, False),
    Config((1, 1), 64, 64, True, 2, 1),
    Config((1, 2), 128, 64, False),
    Config((1, 1), 128, 128, True),
    Config((2, 2), 256, 64, True, 2, 2),
    Config((1, 4), 256, 128, False, 4, 2),
    Config((2, 2), 256, 128, True, 4, 1),
]
QUICK = CONFIGS[:2]
# wolfpine unit -> the performance model's unit
UNITS = {"MATRIX": "fpu", "SFPU": "sfpu", "UNPACKER": "unpack", "PACKER": "pack"}


class DeviceRuns:
    """Observer of a kernel call on the tt-metal target: the device runs, with wolfpine's unit counters."""

    engines = True

    def __init__(self) -> None:
        self.runs: list = []

    def on_device_run(self, run) -> None:
        self.runs.append(run)


def inputs(c: Config, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, c.heads, c.seq, c.head_dim)).astype(bfloat16)
    k = rng.standard_normal((1, c.kv_heads, c.seq, c.head_dim)).astype(bfloat16)
    v = rng.standard_normal((1, c.kv_heads, c.seq, c.head_dim)).astype(bfloat16)
    return q, k, v


def measure(c: Config, seed: int = 0) -> dict:
    """One configuration: device output vs float64 and the simulator, wolfpine's cycles and the model's."""
    q, k, v = inputs(c, seed)
    cfg = A.AttentionConfig(grid=c.grid)
    obs = DeviceRuns()
    t0 = time.perf_counter()
    dev = np.asarray(A.flash_attention(q, k, v, causal=c.causal, config=cfg, backend="tt-metal", observer=obs),
                     np.float64)
    wall = time.perf_counter() - t0
    sim = np.asarray(A.flash_attention(q, k, v, causal=c.causal, config=cfg), np.float64)
    ref = A.reference(*(x.astype(np.float64) for x in (q, k, v)), causal=c.causal)
    ref = ref[0] if isinstance(ref, tuple) else ref
    with perf.session("HiFi4", timing_only=True) as s:
        A.flash_attention(q, k, v, causal=c.causal, config=cfg)
    model = s.last
    (run,) = obs.runs
    cores = (run.engines or {}).get("cores", {})
    busiest = max((k for k in cores if "," in k and not k.startswith(("noc", "unified"))),
                  key=lambda k: cores[k].get("SFPU", {}).get("busy_cycles", 0), default=None)
    core = tuple(int(x) for x in busiest.split(","))[::-1] if busiest else (0, 0)  # "x,y" -> (row, col)
    engines = {}
    for unit, mine in UNITS.items():
        wolf = cores.get(busiest, {}).get(unit, {}).get("busy_cycles", 0) if busiest else 0
        pred = model.busy.get(core, {}).get(mine, 0.0) * model.cycles
        engines[mine] = {"wolfpine": int(wolf), "model": round(pred)}
    return {"config": c.label, "wall_s": round(wall, 1), "built": run.built,
            "max_err": float(np.abs(dev - ref).max()), "sim_max_err": float(np.abs(sim - ref).max()),
            "rel_err": float(np.linalg.norm(dev - ref) / np.linalg.norm(ref)),
            "sim_rel_err": float(np.linalg.norm(sim - ref) / np.linalg.norm(ref)),
            "differ_from_sim": int((dev != sim).sum()), "elements": int(dev.size),
            "max_diff_sim": float(np.abs(dev - sim).max()), "nan": int(np.isnan(dev).sum()),
            "wolfpine_cycles": run.max_span_cycles, "model_cycles": round(model.cycles), "engines": engines,
            "busiest_core": busiest}


def table(rows: list[dict]) -> str:
    head = ("| config | max err (sim) | rel err (sim) | differ from sim | wolfpine cycles | model cycles | ratio | "
            + " | ".join(f"{u} wolf / model" for u in UNITS.values()) + " |")
    out = [head, "|" + "---|" * (7 + len(UNITS))]
    for r in rows:
        eng = " | ".join(f"{r['engines'][u]['wolfpine']} / {r['engines'][u]['model']}" for u in UNITS.values())
        ratio = r["wolfpine_cycles"] / r["model_cycles"] if r["model_cycles"] else float("nan")
        out.append(f"| {r['config']} | {r['max_err']:.4f} ({r['sim_max_err']:.4f}) | {r['rel_err']:.2e} "
                   f"({r['sim_rel_err']:.2e}) | {r['differ_from_sim']} / {r['elements']} | {r['wolfpine_cycles']} | "
                   f"{r['model_cycles']} | {ratio:.2f} | {eng} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest configurations only")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--only", type=int, action="append", help="run only configuration number N (0-based)")
    args = ap.parse_args(argv)
    from tilegrid.targets.ttmetal.setup import find_env

    if find_env() is None:
        print("the tt-metal environment is not installed: run `tilegrid setup tt-metal`", file=sys.stderr)
        return 1
    rows, failed = [], []
    chosen = QUICK if args.quick else [CONFIGS[i] for i in args.only] if args.only else CONFIGS
    for c in chosen:
        try:
            rows.append(measure(c))
        except TilegridError as e:  # one configuration's failure does not hide the others' figures
            failed.append(f"{c.label}: {e.message.splitlines()[0][:300]}")
            print(f"{c.label}: FAILED {failed[-1]}", file=sys.stderr, flush=True)
            continue
        print(f"{c.label}: done ({rows[-1]['wall_s']} s on the device)", file=sys.stderr, flush=True)
    print(table(rows))
    for f in failed:
        print(f"failed: {f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
