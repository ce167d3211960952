"""tilegrid's own SFPU routines (tilegrid/targets/ttmetal/sfpu.py): error distribution and cost per op.

Per routine and DST format (f32: fp32_dest_acc_en with f32 tensors; bf16): SFPU instructions per 32-lane vector;
the error against float64 over --n inputs spanning each op's domain (specials, normals, the whole exponent range,
denormals, the op's edges), executed by the instruction-level model — max and mean ulps of the format over normal
results, the fraction equal to the correctly rounded result, whether every special value is exact; the
differences from tilegrid's simulator (all, and those not explained by flushed denormals or NaN ordering); then,
on wolfpine's simulated Wormhole (cost model on): whether the device agrees with the model bit for bit on 2048 of
those inputs, and the cycles per 32x32 tile — the math thread's (TRISC1) span with the routine minus without it
(the same program with the call left out), and the SFPU's busy cycles and instruction count from wolfpine's
per-unit counters.
Run: python benchmarks/ttmetal_sfpu_accuracy.py [--n 200000] [--tiles 4] [--no-device] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tilegrid.targets.ttmetal import sfpu
from tilegrid.targets.ttmetal import sfpu_model as M
from tilegrid.targets.ttmetal import sfpu_reference as R

DEVICE_VALUES = 2048


def accuracy(name: str, fp32: bool, n: int, rng: np.random.Generator) -> dict:
    op, params = R.routine_params(name)
    prog = sfpu.RAW[op](fp32_dest=fp32, **params)
    xs = R.inputs(name, rng, n)
    y = M.execute(prog, [M.to_dst(x, fp32).view(np.float32) for x in xs], fp32)
    return {"instructions": prog.instructions, "per_tile": prog.per_tile(), **R.check(name, xs, y, fp32),
            "sim": R.versus_sim(name, xs, y, fp32)}


def device_runs(names: list[str], tiles: int, rng: np.random.Generator) -> dict:
    """(name, fp32) -> {"bit_exact", "cycles_per_tile", "sfpu_busy_per_tile", "sfpu_ops_per_tile"}."""
    from tilegrid.targets.ttmetal import sfpu_harness as H
    from tilegrid.targets.ttmetal.device import DeviceSession
    from tilegrid.targets.ttmetal.setup import find_env

    env = find_env()
    if env is None:
        print("(no tt-metal environment: python -m tilegrid.targets.ttmetal.setup; device columns left out)")
        return {}
    out: dict = {}
    with DeviceSession(env, sim_env={"TT_SIM_COST_MODEL": "1"}) as dev:
        for fp32 in (True, False):
            cases = []
            for name in names:
                op, params = R.routine_params(name)
                cases.append((name, sfpu.routine(op, "raw", fp32, **params), R.inputs(name, rng, DEVICE_VALUES)))
            outs, _ = H.run(dev, [(r, xs) for _, r, xs in cases], fp32)
            for (name, r, xs), y in zip(cases, outs):
                model = M.execute(r.program, [M.to_dst(x, fp32).view(np.float32) for x in xs], fp32)
                same = (y.view(np.uint32) == model.view(np.uint32)) | (np.isnan(y) & np.isnan(model))
                out[name, fp32] = {"bit_exact": bool(same.all())}
            # cost: each routine alone on `tiles` tiles (normal inputs: the SFPU's time does not depend on data),
            # against the same harness with no routine call
            base = None
            for name, r, xs in cases:
                inputs = [np.abs(rng.standard_normal(tiles * H.TILE)).astype(np.float32) for _ in xs]
                if base is None:
                    _, res = H.run(dev, [(r, inputs)], fp32, call="")
                    base = res.cycles["cores"][0]["trisc1"]["cycles"]
                t0 = time.perf_counter()
                _, res = H.run(dev, [(r, inputs)], fp32, engines=True)
                span = res.cycles["cores"][0]["trisc1"]["cycles"]
                units = res.reply["engines"]["cores"]["0,0"].get("SFPU", {})
                print(f"  {name} {'f32' if fp32 else 'bf16'}: trisc1 {span} cycles, baseline {base} "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
                out[name, fp32].update(cycles_per_tile=(span - base) / tiles,
                                       sfpu_busy_per_tile=units.get("busy_cycles", 0) / tiles,
                                       sfpu_ops_per_tile=units.get("ops", 0) / tiles)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000, help="inputs per op for the error distribution (model)")
    ap.add_argument("--tiles", type=int, default=4, help="tiles per cost measurement on the device")
    ap.add_argument("--no-device", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    names = list(R.SPECS)
    acc = {(name, fp32): accuracy(name, fp32, args.n, rng) for fp32 in (True, False) for name in names}
    dev = {} if args.no_device else device_runs(names, args.tiles, rng)

    print(f"\nSFPU routines, error vs float64 over {args.n} inputs each (model; device bit-exact on "
          f"{DEVICE_VALUES}); cycles per 32x32 tile on wolfpine (cost model), {args.tiles} tiles\n")
    print("| op | DST | instr / vector | max ulp | mean ulp | exact | specials | vs simulator: differ / "
          "unexplained (max ulp) | device = model | TRISC1 cycles / tile | SFPU busy / tile (instr) |")
    print("|---|---|--:|--:|--:|--:|:-:|---|:-:|--:|--:|")
    for fp32 in (True, False):
        for name in names:
            a, d = acc[name, fp32], dev.get((name, fp32), {})
            s = a["sim"]
            sim = f"{s['differ'] / s['n']:.2%} / {s['other'] / s['n']:.2%} ({s['other_max_ulp']:g})"
            dv = "" if not d else ("yes" if d["bit_exact"] else "**no**")
            cyc = "" if "cycles_per_tile" not in d else f"{d['cycles_per_tile']:.0f}"
            busy = "" if "sfpu_busy_per_tile" not in d else f"{d['sfpu_busy_per_tile']:.0f} ({d['sfpu_ops_per_tile']:.0f})"
            print(f"| {name} | {'f32' if fp32 else 'bf16'} | {a['instructions']} | {a['max_ulp']:.3f} | "
                  f"{a['mean_ulp']:.3f} | {a['exact']:.2%} | {'ok' if not a['specials_wrong'] else 'WRONG'} | "
                  f"{sim} | {dv} | {cyc} | {busy} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}/{'f32' if k[1] else 'bf16'}": {"accuracy": v, "device": dev.get(k, {})}
                       for k, v in acc.items()}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
