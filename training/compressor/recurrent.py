#!/usr/bin/env python3
"""The exported S4D compressor run the way the engine runs it: sample by sample, the recurrence from a zero state.

    python training/compressor/recurrent.py [MODEL.s4d.json [CHECK.json]]

A numpy reference for the Rust side, read from the exported file alone: the control MLP and FiLM once per
setting, then per sample the expand layer (the audio, and its level in decibels where the file has `level_floor_db`), the blocks
(Linear, PReLU, the S4D recurrence discretised by zero-order hold in double precision, BatchNorm with running
statistics, FiLM, PReLU, residual) and the output: tanh, or with `"output": "gain"` the input times
exp(-softplus(.)). With `"block": D` the network runs once per block of D samples on the block's RMS and level
(its mean square in decibels), and the gain is ramped over the next block (train.py's gain_ramp); a version-2 file
has a second readout (`weights.memory`) and the larger of the two outputs gives the gain. With a check file
it runs every case and prints the largest difference to the check's output (the training framework's
FFT-convolution form); train.py calls `max_check_error` after export and refuses a file over `CHECK_TOLERANCE`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The check's values have 7 significant digits; float32 weights, double-precision state.
CHECK_TOLERANCE = 1e-4


def prelu(x, a):
    return np.where(x >= 0, x, a * x)


def run(model: dict, x: np.ndarray, controls: dict) -> np.ndarray:
    """Model output for `x` (1-D) with `controls` {name: value}, from a zero state."""
    w = model["weights"]
    e = np.array([(controls[c["name"]] - c["min"]) / (c["max"] - c["min"]) for c in model["config"]["controls"]])
    for layer in w["mlp"]:
        e = np.maximum(np.array(layer["weight"]) @ e + np.array(layer["bias"]), 0.0)
    blocks = []
    for b in w["blocks"]:
        s = b["ssm"]
        dt = np.array(s["dt"])[:, None]
        a = np.array(s["a_re"]) + 1j * np.array(s["a_im"])
        abar = np.exp(dt * a)
        bbar = (abar - 1.0) / a
        film = np.array(b["film"]["weight"]) @ e + np.array(b["film"]["bias"])
        h = len(s["d"])
        inv = 1.0 / np.sqrt(np.array(b["norm"]["var"]) + b["norm"]["eps"])
        blocks.append({
            "w": np.array(b["linear"]["weight"]), "b": np.array(b["linear"]["bias"]), "p1": b["prelu1"],
            "abar": abar, "bbar": bbar, "c": np.array(s["c_re"]) + 1j * np.array(s["c_im"]), "d": np.array(s["d"]),
            # BatchNorm then FiLM, folded: s * alpha + beta.
            "alpha": film[:h] * inv, "beta": film[h:] - film[:h] * inv * np.array(b["norm"]["mean"]),
            "p2": b["prelu2"], "r": np.array(b["residual"]), "state": np.zeros_like(abar),
        })
    ew, eb = np.array(w["expand"]["weight"]), np.array(w["expand"]["bias"])
    floor = model["config"].get("level_floor_db")
    lw = np.array(w["expand"]["level_weight"]) if floor is not None else None
    # The readouts: one, or with "memory" (a model of two envelopes) two, whose larger output is the reduction's.
    heads = [(np.array(w[k]["weight"]), w[k]["bias"]) for k in ("contract", "memory") if k in w]
    gain = model.get("output", "tanh") == "gain"

    def step(audio_in: float, level_in: float) -> float:
        """One frame through the network: the expand layer's two inputs in, the contraction's output out."""
        h = ew * audio_in + eb
        if lw is not None:
            h = h + lw * level_in
        for b in blocks:
            v = prelu(b["w"] @ h + b["b"], b["p1"])
            b["state"] = b["abar"] * b["state"] + b["bbar"] * v[:, None]
            s = 2.0 * np.real(np.sum(b["c"] * b["state"], axis=1)) + b["d"] * v
            h = prelu(s * b["alpha"] + b["beta"], b["p2"]) + b["r"] * h
        return max(cw @ h + cb for cw, cb in heads)

    x64 = x.astype(np.float64)
    out = np.empty(len(x))
    d = model["config"].get("block")
    if d:
        # Control rate: the network steps once per block of d samples, on the block's RMS and level (from its mean
        # square), and block k's samples ramp the log-gain from L[k-2] to L[k-1] (0 before the first outputs).
        prev2 = prev1 = 0.0
        for k in range(0, len(x64), d):
            f = np.arange(1, d + 1)[:len(x64) - k] / d
            out[k:k + d] = x64[k:k + d] * np.exp(prev2 + (prev1 - prev2) * f)
            ms = float(np.mean(x64[k:k + d] ** 2)) if k + d <= len(x64) else None
            if ms is not None:
                with np.errstate(divide="ignore"):
                    level_in = 1.0 + max(10.0 * np.log10(ms), floor) / -floor
                prev2, prev1 = prev1, -np.logaddexp(0.0, step(np.sqrt(ms), level_in))
        return out
    for t, xt in enumerate(x64):
        with np.errstate(divide="ignore"):
            level_in = 1.0 + max(20.0 * np.log10(abs(xt)), floor) / -floor if lw is not None else 0.0
        o = step(xt, level_in)
        # gain: y = x exp(-softplus(o)), never louder than the input; tanh: the output itself.
        out[t] = xt * np.exp(-np.logaddexp(0.0, o)) if gain else np.tanh(o)
    return out


def max_check_error(model: dict, check: dict) -> float:
    worst = 0.0
    for case in check["cases"]:
        y = run(model, np.array(case["input"], dtype=np.float32), case["controls"])
        worst = max(worst, float(np.max(np.abs(y - np.array(case["output"])))))
    return worst


def main() -> None:
    model_path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "assets/models/compressor/opto.s4d.json"
    check_path = Path(sys.argv[2]) if len(sys.argv) > 2 else model_path.with_name(
        model_path.name.replace(".s4d.json", ".check.json"))
    err = max_check_error(json.loads(model_path.read_text()), json.loads(check_path.read_text()))
    print(f"{model_path.name}: recurrence vs {check_path.name}: max difference {err:.3g} "
          f"({'ok' if err <= CHECK_TOLERANCE else 'OVER'} {CHECK_TOLERANCE})")
    sys.exit(0 if err <= CHECK_TOLERANCE else 1)


if __name__ == "__main__":
    main()
