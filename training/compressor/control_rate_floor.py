#!/usr/bin/env python3
"""How much a control-rate gain computer gives up by itself: the teacher's own gain, read at block ends and played
the way the engine plays the network's (train.py's gain_ramp), against the teacher.

    NEURALBOARD=target/release/neuralboard python training/compressor/control_rate_floor.py [D ...]

For each test split of the shipped manifest and each block size D (default 8, 16, 32): the teacher's gain per
sample is its output over its input (interpolated over the samples where the input is under 1e-5), G[k] is that
gain at the last sample of block k, and the output is the input times the gain
- "ramp": sample j of block k + 1 gets exp(ln G[k-1] + (ln G[k] - ln G[k-1]) (j + 1) / D), what the engine does
  with the network's outputs (the network has to anticipate by a block to do better);
- "hold": block k + 1 gets G[k];
- "ramp, a block ahead": the ramp with G[k + 1] in place of G[k], what a network that anticipates exactly gets.
Printed as the ESR against the teacher over the samples after the first 0.5 s, as the manifest's ESR.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402
from common import neuralboard_binary  # noqa: E402

MANIFEST = train.OUT_DIR / "opto.manifest.json"


def gains_played(log_g: np.ndarray, d: int, mode: str) -> np.ndarray:
    n = len(log_g)
    blocks = n // d
    g = log_g[d - 1::d][:blocks]  # ln G[k]: the gain at the end of block k
    if mode == "ramp, a block ahead":
        g = np.concatenate([g[1:], g[-1:]])
    out = np.zeros(n)
    f = np.arange(1, d + 1) / d
    for k in range(blocks - 1):
        at = slice((k + 1) * d, (k + 2) * d)
        if mode == "hold":
            out[at] = g[k]
        else:
            start = g[k - 1] if k > 0 else 0.0
            out[at] = start + (g[k] - start) * f
    return out


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [8, 16, 32]
    manifest = json.loads(MANIFEST.read_text())
    recipe = {"sample_rate": manifest["sample_rate"], "teacher": manifest["teacher"]}
    warm = int(manifest["esr_warmup_seconds"] * manifest["sample_rate"])
    nb = neuralboard_binary()
    modes = ["ramp", "hold", "ramp, a block ahead"]
    with tempfile.TemporaryDirectory() as tmp:
        for split, chunks in manifest["chunks"].items():
            data = [train.make_chunk(nb, Path(tmp), recipe, c) for c in chunks]
            for d in sizes:
                err = dict.fromkeys(modes, 0.0)
                ref = 0.0
                for x, y, _ in data:
                    x, y = x.astype(np.float64), y.astype(np.float64)
                    ok = np.abs(x) > 1e-5
                    idx = np.arange(len(x))
                    log_g = np.interp(idx, idx[ok], np.log(np.abs(y[ok]) / np.abs(x[ok]) + 1e-30))
                    for mode in modes:
                        err[mode] += float(np.sum((y[warm:] - x[warm:] * np.exp(gains_played(log_g, d, mode)[warm:])) ** 2))
                    ref += float(np.sum(y[warm:] ** 2))
                print(f"{split}, blocks of {d}: " + ", ".join(f"{m} {100 * e / ref:.4f} %" for m, e in err.items()),
                      flush=True)


if __name__ == "__main__":
    main()
