#!/usr/bin/env python3
"""A two-envelope compressor model's readouts against the teacher's envelopes, on `neuralboard eval`'s step.

    NEURALBOARD=target/release/neuralboard python training/compressor/envelopes.py [MODEL.s4d.json]

The step is a 1 kHz tone at -30 dBFS for 1 s, -6 dBFS for 2 s and -30 dBFS for 3 s, the model run from the settled
state as the eval runs it. For peak reduction 40, 70, 100 and 70 limit it prints, at times around the two steps,
the teacher's fast envelope and slow memory (`neuralboard teacher opto --envelopes-out`), the model's two readouts
and the reduction each applies, in dB.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import train  # noqa: E402
from common import neuralboard_binary, resolved  # noqa: E402

RATE = 48000
DB_PER_NEPER = 20 / math.log(10)
TIMES_MS = [990, 1005, 1010, 1020, 1050, 2990, 3010, 3030, 3050, 3075, 3100, 3200, 3300, 3500, 4000, 5000, 5990]


def tone(dbfs: float, start: int, n: int) -> np.ndarray:
    i = np.arange(start, start + n)
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * 1000 * i / RATE)).astype(np.float32)


def main() -> None:
    import torch

    shipped = HERE.parent.parent / "assets/models/compressor/opto.s4d.json"
    model_path = Path(sys.argv[1]) if len(sys.argv) > 1 else shipped
    recipe = resolved(json.loads(train.RECIPES.read_text())["recipes"], "opto")
    net = train.build_model(torch, recipe["model"])
    train.load_weights(torch, net, json.loads(model_path.read_text())["weights"])
    net.eval()
    lead, hold, tail = RATE, 2 * RATE, 3 * RATE
    x = np.concatenate([tone(-30, 0, lead), tone(-6, lead, hold), tone(-30, lead + hold, tail)])
    with tempfile.TemporaryDirectory() as tmp:
        for pr, lim in [(40, 0), (70, 0), (100, 0), (70, 1)]:
            _, env = train.run_teacher(neuralboard_binary(), recipe, x, pr, lim, Path(tmp) / "step", envelopes=True)
            c = torch.tensor([train.control_vector(pr, lim)], dtype=torch.float32)
            with torch.no_grad():
                _, log_gain, heads = net(torch.from_numpy(x)[None], c, "chunked", recipe["learning"]["chunk"], True,
                                         "settled", True)
            env = env * DB_PER_NEPER
            heads, applied = -heads[0].numpy() * DB_PER_NEPER, -log_gain[0].numpy() * DB_PER_NEPER
            mode = " limit" if lim else ""
            print(f"peak reduction {pr}{mode}: teacher fast / slow (applied) | readouts (applied), dB")
            for ms in TIMES_MS:
                k = ms * RATE // 1000
                print(f"  {ms:5d} ms  {env[k, 0]:6.2f} / {env[k, 1]:6.2f} ({env[k].max():6.2f}) | "
                      f"{heads[0, k]:6.2f} / {heads[1, k]:6.2f} ({applied[k]:6.2f})")


if __name__ == "__main__":
    main()
