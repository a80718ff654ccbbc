#!/usr/bin/env python3
"""Which phase reconstruction the reverb uses, measured: noise shaping (what the engine does) against Griffin-Lim.

    python training/reverb/phase.py RECIPE [--workdir DIR] [--iterations 8 32] [--limit N]

The decoder gives a room's energy per band and frame (a grid D, see train.py); an impulse response needs a phase
too. Two ways, both from the same per-bin magnitudes M = 10^(interp D / 20) and the same framing (n_fft 1024,
hop 512, sqrt-Hann analysis and synthesis, frame t centred at sample t hop):

- noise: a random phase per bin and frame, one inverse FFT per frame, overlap-added (train.synthesize, the engine's
  RoomSynth);
- Griffin-Lim (Griffin & Lim 1984): start from the noise phases, then N times resynthesise, analyse again and keep
  the new phases with the target magnitudes, so the result's STFT is consistent with M as far as it can be.

On the held-out test IRs of the shipped model's manifest, for the true grids ("oracle": what the synthesis alone
loses) and the decoded ones ("model": what the pedal plays), it reports the median relative T30 and EDT error per
octave band against the simulated rooms, the share within the issue's targets (10 % and 15 %), and the time per
response on one thread. Griffin-Lim costs 2 N + 1 FFT passes where noise costs one.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import train  # noqa: E402
from rooms import load_recipe  # noqa: E402

def griffin_lim(mag: np.ndarray, rng: np.random.Generator, iterations: int) -> np.ndarray:
    """Starts from the engine's noise phases, then keeps the phases of the resynthesis' STFT N times."""
    spec = train.noise_spectrum(mag, rng)
    for _ in range(iterations):
        spec = mag * np.exp(1j * np.angle(train.stft(train.istft(spec), mag.shape[1])))
    y = train.istft(spec)
    return y / math.sqrt(np.sum(y * y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/reverb-work"))
    ap.add_argument("--iterations", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--limit", type=int, default=None, help="only the first N test IRs")
    ap.add_argument("--seed", type=int, default=20261126)
    args = ap.parse_args()

    recipe = load_recipe(args.recipe)
    edges = train.band_edges(recipe["features"]["bands"])
    member = train.band_membership(edges)
    interp = train.interp_matrix(edges)
    floor = recipe["features"]["db_floor"]
    data = train.load_corpus(args.workdir, recipe["rooms"]["count"], member, floor)
    manifest = json.loads((train.OUT_DIR / "rooms.manifest.json").read_text())
    model = json.loads((train.OUT_DIR / "rooms.reverb.json").read_text())
    layers = train.prepare_layers(model["decoder"])
    tests = manifest["test_irs"][:args.limit]
    index = {(int(r), int(p)): i for i, (r, p) in enumerate(zip(data["room"], data["pos"]))}

    methods = ["noise"] + [f"griffin_lim_{n}" for n in args.iterations]
    errors = {(g, m): {k: [[] for _ in train.OCTAVE_CENTRES] for k in train.TARGETS}
              for g in ("oracle", "model") for m in methods}
    seconds = {m: [] for m in methods}
    rng = np.random.default_rng(args.seed)
    train.log(f"{len(tests)} test IRs, methods {methods}")
    for n, t in enumerate(tests):
        grids = {"oracle": data["d"][index[(t["room"], t["position"])]].astype(np.float64),
                 "model": np.maximum(train.decode_layers(layers, t["z"]), floor)}
        for g, d in grids.items():
            mag = train.magnitudes(d, interp, floor)
            for m in methods:
                start = time.perf_counter()
                if m == "noise":
                    y = train.synthesize(d, interp, floor, rng)
                else:
                    y = griffin_lim(mag, rng, int(m.rsplit("_", 1)[1]))
                seconds[m].append(time.perf_counter() - start)
                times = train.decay_times(y)
                for k in train.TARGETS:
                    for b in range(len(train.OCTAVE_CENTRES)):
                        errors[(g, m)][k][b].append(train.rel_error(times[k][b], t["reference"][k][b]))
        if (n + 1) % 30 == 0:
            train.log(f"{n + 1} / {len(tests)}")

    report = {"test_irs": len(tests), "seed": args.seed, "bands_hz": train.OCTAVE_CENTRES,
              "seconds_per_response": {m: round(float(np.median(s)), 4) for m, s in seconds.items()},
              "metrics": {f"{g}/{m}": train.summarise(e) for (g, m), e in errors.items()}}
    print(json.dumps(report, indent=1))
    print("\nmedian relative error per band (250 Hz .. 8 kHz), share within target; time per response")
    for (g, m), e in errors.items():
        s = train.summarise(e)
        for k in train.TARGETS:
            cells = " ".join(f"{s[k][str(fc)]['median'] * 100:5.1f}%/{s[k][str(fc)]['within_target'] * 100:3.0f}%"
                             for fc in train.OCTAVE_CENTRES)
            print(f"{g:7} {m:15} {k:4} {cells}   {np.median(seconds[m]) * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
