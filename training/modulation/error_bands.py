#!/usr/bin/env python3
"""Where a modulation model's held-out error lies in frequency.

    python training/modulation/error_bands.py RECIPE MODEL.nam [--workdir DIR] [--threads N]

Runs MODEL on the recipe's test splits as train.py scores them (the engine's prewarm, then the LFO pre-roll, not
scored) and prints, per chunk, its ESR and the share of its error's energy in each band; then each band's share of
the error of all the chunks together. The teacher's data is made as train.py makes it ($NEURALBOARD, or a release
build), in --workdir when given (the same folder a training run used serves).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import train  # noqa: E402
from common import neuralboard_binary, resolved  # noqa: E402

BANDS_HZ = [0, 1000, 3000, 6000, 10000, 24000]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("model", type=Path)
    ap.add_argument("--workdir", type=Path, help="where the data is made (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    recipe = resolved(json.loads(train.RECIPES.read_text())["recipes"], args.recipe)
    model = json.loads(args.model.read_text())
    net = train.net_class(torch, model["config"]["hidden_size"])()
    train.load_nam_weights(net, model, torch)
    nb = neuralboard_binary()
    data = args.workdir / "data" if args.workdir else Path(tempfile.mkdtemp(prefix="nb-bands-"))
    data.mkdir(parents=True, exist_ok=True)
    rate = recipe["sample_rate"]
    prewarm, pre_roll = int(train.PREWARM_S * rate), int(train.PRE_ROLL_S * rate)
    all_bands = np.zeros(len(BANDS_HZ) - 1)
    print(f"{'split':18s} {'rate':>7s}  {'ESR':>7s}  error share (%) by band " +
          " ".join(f"{a}-{b}" for a, b in zip(BANDS_HZ[:-1], BANDS_HZ[1:])) + " Hz")
    for split in recipe["splits"]:
        if not split.startswith("test"):
            continue
        for chunk in train.expand_chunks(recipe, split):
            x, lfo, y = train.make_chunk(nb, data, recipe, chunk, train.PRE_ROLL_S)
            inp = np.zeros((1, prewarm + len(x), 2), dtype=np.float32)
            inp[0, prewarm:, 0], inp[0, prewarm:, 1] = x, lfo
            with torch.no_grad():
                out = net(torch.from_numpy(inp))[0][0, prewarm:].numpy()
            err = (y - out)[pre_roll:].astype(np.float64)
            power = np.abs(np.fft.rfft(err)) ** 2
            freq = np.fft.rfftfreq(len(err), 1 / rate)
            bands = np.array([power[(freq >= a) & (freq < b)].sum() for a, b in zip(BANDS_HZ[:-1], BANDS_HZ[1:])])
            all_bands += bands / len(err)
            esr = np.sum(err**2) / np.sum(y[pre_roll:].astype(np.float64) ** 2)
            print(f"{split:18s} {chunk['rate']:5.2f} Hz {100 * esr:6.2f} %  " +
                  " ".join(f"{100 * b / bands.sum():5.1f}" for b in bands))
    print("all chunks' error by band (%): " + " ".join(f"{100 * b / all_bands.sum():.1f}" for b in all_bands))


if __name__ == "__main__":
    main()
