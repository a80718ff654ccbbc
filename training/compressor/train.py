#!/usr/bin/env python3
"""Train Neuralboard's neural opto compressor: an S4D state-space model conditioned on the knobs (FiLM).

    python training/compressor/train.py RECIPE [--threads N] [--workdir DIR] [--max-minutes M] [--out-dir DIR]
                                               [--device cuda] [--override JSON]
    python training/compressor/train.py RECIPE --remeasure      # the shipped file: check and ESRs again

After Yin, Cheng, Steinmetz, Yuan, Stern & Dannenberg, "Modelling analog dynamic range compressors using deep
learning and state-space models" (arXiv 2403.16331), smaller. The knobs c = [peak_reduction / 100, limit] go
through an MLP 2 -> 16 -> 32 -> 32 (ReLU after every layer) to an embedding e. The audio x is expanded to H
channels (h = w x + b; with `level_floor_db`, h = w x + w_l l(x) + b, where l(x) = 1 + max(20 log10|x|, floor) /
-floor is the sample's level in decibels, 0 in silence: see level_feature), then DEPTH blocks of

    v = PReLU(W h + b)                      Linear(H, H) across channels, one shared PReLU slope
    s = S4D(v)                              per channel: N complex modes, zero-order hold, B = 1 absorbed in C
    s = BatchNorm(s)                        affine-free, running statistics at inference
    s = PReLU(gamma(e) * s + beta(e))       FiLM from the embedding (Linear(32, 2H)), one shared PReLU slope
    h = s + r * h                           per-channel residual

and y = tanh(w . h + b) (`output: tanh`), or with `output: gain` the network is a gain computer: y = x exp(-softplus(w
. h + b)), never louder than its input, and silent in silence. The teacher is a gain applied to its input, so the
gain form leaves the network only the envelope and the static curve to learn, and the level input makes that
curve (straight lines in decibels) a straight line of an input. With `block: D` (the shipped `opto`) the gain
computer runs at a control rate: once per block of D samples, on the block's RMS and its level (10 log10 of its
mean square, the quantity the teacher's detector reads) instead of the sample and its level, and the log-gain it
gives at the end of block k, L[k] = -softplus(o[k]), is ramped over block k + 1: sample j of block k gets
exp(L[k-2] + (L[k-1] - L[k-2]) (j + 1) / D) (gain_ramp). The gain changes over milliseconds (the teacher's RMS
detector is 3 ms, its attack 5-10 ms), so nothing is lost: the teacher's own gain, read at block ends and ramped
the same way one block late, is 0.005-0.011 % off the teacher at D = 16 and 0.02-0.04 % at D = 32 (ESR on the test
splits), and the network learns to anticipate by a block. It costs 1/D of the per-sample form, in the engine
and in training (a CPU trains it), so the network can be wider. With `envelopes: 2` it has two readouts, o = max(w1 .
h + b1, w2 . h + b2): the reduction is the larger of two envelopes, as the teacher's is the larger of its fast
envelope and its cell's slow memory, and the release turns from the one to the other at a corner that one smooth
readout rounds off (it dipped 0.12 dB under the teacher's there at peak reduction 40, which moved the release time
by three quarters).
With `envelope_weight`, the loss adds that weight times each readout's squared error (nepers, every sample after
the warm-up) against the teacher's envelopes (`neuralboard teacher --envelopes-out`), so that each readout learns
one of them; a one-readout file loaded into it gives both readouts its one (load_weights).

The S4D layer of channel c is the linear recurrence

    x_n[t] = exp(dt A_n) x_n[t-1] + (exp(dt A_n) - 1) / A_n * u[t],   y[t] = 2 Re(sum_n C_n x_n[t]) + D u[t]

(S4D-Lin: A_n = -exp(log_a_real_n) + i a_imag_n, initialised -0.5 + i pi n). A mode's time constant is
1 / (|Re A| dt) steps, so `log_dt` is initialised log-uniform over the recipe's `dt_range` ([1e-5, 1e-1]: 20
samples to 4.2 s at 48 kHz, Re A = -0.5; for the control rate of blocks of 32, [2e-4, 1]: 2 blocks, 1.3 ms, to
10,000 blocks, 6.7 s). The original's [1e-3, 1e-1] reaches only 42 ms, far short of the teacher's slow release
(0.5-5 s) and its memory.

The recurrence is a causal convolution with the kernel K[l] = 2 Re(sum_n C_n B_n A_n^l). Training computes it in
chunks of `chunk` samples (within a chunk a lower-triangular Toeplitz matrix product, across chunks the mode
states, propagated by an FFT convolution over the chunk index): the same linear map as the full-length FFT
convolution, several times faster on a CPU. The full-length FFT convolution (`S4D.forward(u, "fft")`) computes
the reference output in the check file; tests compare both forms and the recurrence.

Data: each chunk is `neuralboard corpus --seed SEED --seconds S` times a piecewise-constant gain (one value per
second, drawn from the chunk's seed; some seconds silent: note-offs and gaps, after which the release shows),
through `neuralboard teacher opto` at one (peak_reduction, limit) with make-up gain 0 (the pedal applies the
make-up gain; the network does not learn it). The gains are listed in each chunk, so Rust regenerates the input
exactly (see INPUT_DEFINITION). A split with `tone_hz` holds a sine instead of the corpus (its own `input_level`:
levels held for seconds, the static curve and the release; with `alternate_dbfs`, loud and quiet in turn); every
split named train* trains.

Training: Adam (no weight decay; the S4D's dt and A at their own learning rate), windows of `warmup` +
`loss_samples` samples from the network's initial state, the loss computed after the warm-up; a share of the
windows start at a chunk's start, where the teacher too starts from rest (the way the manifest's ESR is measured).
The initial state (`initial_state`) is the zero state, or "settled": the state silence settles the network to,
which is where the pedal starts after a reset and `neuralboard eval` measures the dynamics from (the slow modes
hold seconds, so the two starts differ for seconds: for a model trained from zero, the static curve measured
after 3 s differed by up to 0.5 dB between them). Polarity is
flipped at random (the teacher is odd-symmetric). The loss (`split_esr`) is the squared error over the training
set's mean square, i.e. the training split's ESR, the figure the manifest reports; with `log_gain_weight`, plus
that weight times the squared error of the gain in nepers over the samples above `log_gain_floor_db` (see
log_gain_error: the ESR is dominated by loud passages, so alone it leaves the release, heard on the quiet notes
after a loud one, and the curve at low levels nearly untrained); with `change_weight` too, the held-tone chunks'
samples weighted in that error by 1 + change_weight exp(-t / change_seconds), t the time since the level last
changed (change_weights: the attacks and releases the timings measure against the held levels that outnumber
them). With `init: identity` the network starts at
y = tanh(x), or at unity gain (every block's branch zero); with `norm: running` BatchNorm normalises by its running
statistics in training too (set from the data before the first step, then moved by `norm_momentum` a batch: 0.1
unless the recipe says otherwise, 0 freezes them). A recipe with a top-level `init` fine-tunes another recipe's
model, given with --init (its SHA-256 is checked against the recipe's). The learning rate decays
exponentially to `lr_final_fraction` over the time limit. Validation every `validate_every_s` seconds on whole
chunks, the criterion the mean of the validation* splits' ESRs (plus the log-gain term as in the loss); with
`dynamics_validation`, plus `weight_per_db` times the mean of the dynamics' differences from the teacher in dB
(static curve, attack and release curves, measured as `neuralboard eval` measures them, on probe tones and
settings of their own: dynamics_probes); the best, the starting point included, is kept; training stops at the
time limit or once the criterion is under `stop_at_fraction_of_target` of the test target. With `--init` and a
recipe deeper than the file, the extra blocks start as identities (load_weights).

Export: `NAME.s4d.json` (format "neuralboard-s4d" version 1, or 2 with `envelopes: 2`; the weights the Rust engine
loads), `NAME.check.json`
(three short excerpts and this model's output for them in the FFT-convolution form, for the Rust recurrent form to
match; `recurrent.py` runs the recurrence and must agree) and `NAME.manifest.json` (chunks, ESRs per split,
targets). The manifest's ESRs are measured on the exported numbers, the model run from its initial state (recorded
as the manifest's `initial_state`) over each whole chunk and the first `WARMUP_S` seconds left out. The binary is
$NEURALBOARD if set, else `cargo build --release -p neuralboard`.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.io import wavfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (check_init, device_name, esr, init_record, log, merged, resolved, run, run_once,  # noqa: E402
                    start_run, trainer_arguments)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recurrent import CHECK_TOLERANCE, max_check_error  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RECIPES = HERE / "recipes.json"
OUT_DIR = REPO / "assets" / "models" / "compressor"
FORMAT = "neuralboard-s4d"
FORMAT_VERSION = 1
# Version 2 adds the second envelope's readout (`weights.memory`, `envelopes: 2`), which a version-1 reader would
# not know to apply; a file without it stays version 1.
FORMAT_VERSION_ENVELOPES = 2
MANIFEST_VERSION = 1
# The manifest's ESR leaves out the first half second of every chunk: the corpus's own silent lead-in, over which
# the model's states settle from zero (its biases reach the slow modes too).
WARMUP_S = 0.5
BN_EPS = 1e-5
CONTROLS = [{"name": "peak_reduction", "min": 0, "max": 100}, {"name": "limit", "min": 0, "max": 1}]
CHECK_SAMPLES = 4096

INPUT_DEFINITION = (
    "x[t] = f32(f64(corpus[t]) * 10^(gains_db[t / segment_samples] / 20)) for t = 0 .. seconds * 48000 - 1, where "
    "corpus = `neuralboard corpus --seed SEED --seconds SECONDS` (48 kHz, test signals included), t / "
    "segment_samples is integer division, and a null gain means silence (x[t] = 0). The teacher's output is "
    "`neuralboard teacher opto --param peak_reduction=P --param limit=L --param gain=0` over x, from rest."
)


# --------------------------------------------------------------------------------------------------------------
# Data


def read_float(path: Path, channels: int = 1) -> np.ndarray:
    """A float32 WAV's samples: (frames,) for one channel, else (frames, channels)."""
    _, data = wavfile.read(path)
    assert data.dtype == np.float32 and (data.ndim == 1 if channels == 1 else data.shape[1:] == (channels,)), (
        f"{path}: expected {channels}-channel float32")
    return data


def level_gains(seed: int, seconds: float, corpus_peak: float, rule: dict) -> list:
    """Per-segment gains in dB (None = silent), drawn from the chunk's seed; the manifest lists the result.

    The corpus keeps a player's dynamics (a quiet passage peaks far below full scale), so the gains first bring
    the chunk's peak to `peak_dbfs`, then each segment is silent with `silence_probability`, else turned down by
    `min_db * u^shape` dB (u uniform in 0..1: mostly loud, down to `min_db`); or, with `alternate_dbfs`, each
    segment's peak drawn from the ranges in turn.
    """
    rng = np.random.default_rng([seed, 0x5344])
    base = rule["peak_dbfs"] - 20.0 * math.log10(corpus_peak)
    # With `alternate_dbfs` ([[lo, hi], ...] peak levels in dBFS), segment k's peak is uniform in range k mod the
    # number of ranges instead: loud and quiet in turn, every step down a release.
    ranges = rule.get("alternate_dbfs")
    gains = []
    for k in range(math.ceil(seconds / rule["segment_seconds"])):
        silent, u = rng.random(), rng.random()
        if ranges:
            lo, hi = ranges[k % len(ranges)]
            level = -20.0 * math.log10(corpus_peak) + lo + (hi - lo) * u
        else:
            level = base + rule["min_db"] * u ** rule["shape"]
        gains.append(None if silent < rule["silence_probability"] else round(level, 1))
    return gains


def controls_of(recipe: dict, spec) -> list[tuple[float, int]]:
    """(peak_reduction, limit) pairs: a named set of the recipe or explicit lists."""
    c = recipe["controls"][spec] if isinstance(spec, str) else spec
    return [(float(p), int(lim)) for lim in c["limit"] for p in c["peak_reduction"]]


def corpus_file(nb: Path, tmp: Path, rate: int, seed: int, seconds: float) -> Path:
    path = tmp / f"corpus-{seed}-{seconds}.wav"
    run_once([nb, "corpus", "--seed", seed, "--seconds", seconds, "--rate", rate, path], path)
    return path


def expand_chunks(nb: Path, tmp: Path, recipe: dict, split: str) -> list[dict]:
    """The chunks of a split, in order: chunk i takes corpus seed `seed + i`. Rust's eval reads the manifest."""
    s = recipe["splits"][split]
    rule = merged(recipe["input_level"], s.get("input_level", {}))
    rate = recipe["sample_rate"]
    pairs = controls_of(recipe, s["controls"]) * s.get("repeat", 1)
    seg = int(round(rule["segment_seconds"] * rate))
    tones = s.get("tone_hz")
    chunks = []
    for i, (p, lim) in enumerate(pairs):
        seed = s["seed"] + i
        chunk = {"seed": seed, "seconds": s["seconds"], "segment_samples": seg}
        if tones:
            # A steady sine (peak 1 before the gains) instead of the corpus: held levels, the static curve.
            chunk["tone_hz"] = tones[i % len(tones)]
            peak = 1.0
        else:
            peak = float(np.max(np.abs(read_float(corpus_file(nb, tmp, rate, seed, s["seconds"])))))
        chunks.append({**chunk, "gains_db": level_gains(seed, s["seconds"], peak, rule), "peak_reduction": p,
                       "limit": lim})
    return chunks


def tone(hz: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate)), dtype=np.float64)
    return np.sin(2.0 * np.pi * hz * t / rate).astype(np.float32)


def apply_gains(x: np.ndarray, chunk: dict) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.float32)
    seg = chunk["segment_samples"]
    for k, g in enumerate(chunk["gains_db"]):
        if g is not None:
            part = x[k * seg:(k + 1) * seg].astype(np.float64) * 10.0 ** (g / 20.0)
            out[k * seg:k * seg + len(part)] = part.astype(np.float32)
    return out


def run_teacher(nb: Path, recipe: dict, x: np.ndarray, peak_reduction: float, limit: int, stem: Path,
                envelopes: bool = False):
    """The teacher's output for x at one setting, from rest (through STEM-x.wav and STEM-y.wav); with `envelopes`,
    (output, its envelopes): the gain reductions in nepers, (len(x), 2) (the fast envelope and the slow memory,
    whose larger is the reduction applied; `neuralboard teacher --envelopes-out`)."""
    wavfile.write(f"{stem}-x.wav", recipe["sample_rate"], x)
    params = dict(recipe["teacher"]["params"], peak_reduction=peak_reduction, limit=limit)
    sides = ["--envelopes-out", f"{stem}-e.wav"] if envelopes else []
    run([nb, "teacher", recipe["teacher"]["kind"], *[a for k, v in params.items() for a in ("--param", f"{k}={v}")],
         *sides, f"{stem}-x.wav", f"{stem}-y.wav"])
    y = read_float(Path(f"{stem}-y.wav"))
    assert len(y) == len(x)
    if not envelopes:
        return y
    e = read_float(Path(f"{stem}-e.wav"), channels=2)
    assert len(e) == len(x)
    return y, (e * np.float32(math.log(10.0) / 20.0)).astype(np.float32)


def make_chunk(nb: Path, tmp: Path, recipe: dict, chunk: dict, envelopes: bool = False):
    """(input, teacher output, the teacher's envelopes or None) of one chunk: the envelopes with `envelopes`
    (run_teacher)."""
    rate = recipe["sample_rate"]
    stem = tmp / f"{chunk['seed']}-{chunk['peak_reduction']:g}-{chunk['limit']}"
    source = (tone(chunk["tone_hz"], chunk["seconds"], rate) if "tone_hz" in chunk else
              read_float(corpus_file(nb, tmp, rate, chunk["seed"], chunk["seconds"])))
    x = apply_gains(source, chunk)
    out = run_teacher(nb, recipe, x, chunk["peak_reduction"], chunk["limit"], stem, envelopes)
    return (x, *out) if envelopes else (x, out, None)


def control_vector(peak_reduction: float, limit: float) -> list[float]:
    """The network's control input: each knob mapped to 0..1 by its range (CONTROLS)."""
    return [(v - c["min"]) / (c["max"] - c["min"]) for v, c in zip((peak_reduction, limit), CONTROLS)]


# --------------------------------------------------------------------------------------------------------------
# Model


def build_model(torch, cfg: dict):
    nn = torch.nn
    H, N = cfg["channels"], cfg["modes"]
    assert cfg.get("envelopes", 1) in (1, 2), "one readout, or two envelopes"
    assert cfg.get("envelopes", 1) == 1 or (cfg.get("output") == "gain" and cfg.get("block")), (
        "two envelopes need the control-rate gain computer (`output: gain`, `block`), as the format's version 2 does")

    class S4D(nn.Module):
        """H independent diagonal state-space channels, N complex modes each (S4D-Lin, ZOH, B = 1)."""

        def __init__(self) -> None:
            super().__init__()
            lo, hi = (math.log(v) for v in cfg["dt_range"])
            self.log_dt = nn.Parameter(torch.rand(H) * (hi - lo) + lo)
            self.log_a_real = nn.Parameter(torch.full((H, N), math.log(0.5)))
            self.a_imag = nn.Parameter(math.pi * torch.arange(N, dtype=torch.float32).repeat(H, 1))
            self.c = nn.Parameter(torch.randn(H, N, 2) * math.sqrt(0.5))  # complex C ~ CN(0, 1), as (re, im)
            self.d = nn.Parameter(torch.randn(H))

        def discretised(self):
            """(dt A, Bbar, C): complex (H, N)."""
            dt = torch.exp(self.log_dt)[:, None]
            a = torch.complex(-torch.exp(self.log_a_real), self.a_imag)
            return a * dt, (torch.exp(a * dt) - 1) / a, torch.view_as_complex(self.c)

        def forward(self, u, form: str = "chunked", chunk: int = 64, u0=None):
            """u: (B, H, L) -> (B, H, L), from a zero state; with u0 (B, H, 1), from the state a constant input u0
            settles to. The recurrence is linear, so that is the zero state's response to u - u0 plus the
            steady response to u0 (the state's deviation from the fixed point x0 = Bbar u0 / (1 - Abar) obeys
            the recurrence driven by u - u0)."""
            if u0 is not None:
                return self(u - u0, form, chunk) + self.dc_gain()[:, None] * u0
            if form == "fft":
                return self.fft(u)
            return self.chunked(u, chunk)

        def dc_gain(self):
            """(H,): the response to a constant input, D + 2 Re sum_n C_n Bbar_n / (1 - Abar_n); with ZOH
            Bbar / (1 - Abar) = -1 / A, exactly, so the slowest modes need no small difference."""
            a = torch.complex(-torch.exp(self.log_a_real), self.a_imag)
            return self.d + 2 * torch.sum(torch.view_as_complex(self.c) * (-1 / a), dim=-1).real

        def fft(self, u):
            L = u.shape[-1]
            dta, bbar, c = self.discretised()
            lags = torch.arange(L, dtype=u.dtype, device=u.device)
            k = sum(2 * ((c * bbar)[:, n, None] * torch.exp(dta[:, n, None] * lags)).real for n in range(N))
            n = 2 * L
            y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
            return y + self.d[:, None] * u

        def chunked(self, u, T: int):
            B_, H_, L = u.shape
            pad = (-L) % T
            if pad:
                u = torch.nn.functional.pad(u, (0, pad))
            M = u.shape[-1] // T
            dta, bbar, c = self.discretised()
            j = torch.arange(T, dtype=u.dtype, device=u.device)
            p = torch.exp(dta[:, :, None] * j)  # a^j: (H, N, T)
            k = 2 * torch.einsum("hn,hnt->ht", c * bbar, p).real  # the kernel's first T taps
            lag = j[None, :] - j[:, None]  # [i, j] -> j - i
            zero = torch.zeros((), dtype=u.dtype, device=u.device)
            toeplitz = torch.where(lag >= 0, k[:, lag.clamp(min=0).long()], zero)
            U = u.reshape(B_, H_, M, T)
            y = torch.matmul(U, toeplitz)  # within each chunk
            wz = p.flip(-1) * bbar[:, :, None]  # a^(T-1-i) b: a chunk's own contribution to its end state
            z = torch.matmul(U, torch.cat([wz.real, wz.imag], 1).transpose(1, 2))  # (B, H, M, 2N)
            z = torch.complex(z[..., :N], z[..., N:]).transpose(2, 3)  # (B, H, N, M)
            g = torch.exp(dta[:, :, None] * (T * torch.arange(M, dtype=u.dtype, device=u.device)))  # (a^T)^m
            nf = 2 * M
            conv = torch.fft.ifft(torch.fft.fft(z, n=nf) * torch.fft.fft(g, n=nf), n=nf)[..., :M - 1]
            s = torch.nn.functional.pad(conv, (1, 0))  # state entering chunk m
            r = c[:, :, None] * p * torch.exp(dta)[:, :, None]  # C a^(j+1)
            y = y + 2 * torch.matmul(torch.cat([s.real, s.imag], 2).transpose(2, 3),
                                     torch.cat([r.real, -r.imag], 1))
            y = y.reshape(B_, H_, M * T)[..., :L]
            return y + self.d[:, None] * u[..., :L]

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(H, H)
            self.prelu1 = nn.PReLU()
            self.ssm = S4D()
            self.norm = nn.BatchNorm1d(H, affine=False, eps=BN_EPS)
            self.film = nn.Linear(cfg["embedding"], 2 * H)
            self.prelu2 = nn.PReLU()
            self.residual = nn.Parameter(torch.ones(H))

        def forward(self, h, e, form, chunk, h0=None):
            """h: (B, H, L). With h0 (B, H, 1), the block's input in silence, the S4D starts from the state
            silence settles it to; with form "steady", h is such a constant input and the result the block's
            settled output."""
            v = self.prelu1(torch.matmul(self.linear.weight, h) + self.linear.bias[:, None])
            if form == "steady":
                s = self.ssm.dc_gain()[:, None] * v
            else:
                v0 = None if h0 is None else self.prelu1(torch.matmul(self.linear.weight, h0) +
                                                         self.linear.bias[:, None])
                s = self.ssm(v, form, chunk, v0)
            if self.training and cfg.get("norm") == "running":
                # Normalise by the running statistics in training too (updated from each batch, without a
                # gradient): batch statistics of a few windows would normalise away the level of the batch,
                # which a compressor must see, and the engine runs on the running statistics. With momentum 0
                # (`norm_momentum`, for a fine-tune) they stay the parent's: a fixed affine.
                nm = self.norm
                if nm.momentum and form != "steady":
                    with torch.no_grad():
                        nm.running_mean.lerp_(s.mean(dim=(0, 2)), nm.momentum)
                        nm.running_var.lerp_(s.var(dim=(0, 2)), nm.momentum)
                        nm.num_batches_tracked += 1
                s = (s - self.norm.running_mean[:, None]) / torch.sqrt(self.norm.running_var[:, None] + BN_EPS)
            else:
                s = self.norm(s)
            g, b = self.film(e).chunk(2, dim=-1)
            s = self.prelu2(s * g[..., None] + b[..., None])
            return s + self.residual[:, None] * h

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = [len(CONTROLS), *cfg["mlp"]]
            assert sizes[-1] == cfg["embedding"]
            layers = []
            for a, b in zip(sizes, sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.mlp = nn.Sequential(*layers)
            # The audio, and with `level_floor_db` its level in decibels too (see level_feature).
            self.expand = nn.Linear(1 if cfg.get("level_floor_db") is None else 2, H)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg["depth"])])
            # With `envelopes: 2`, two readouts: the gain reduction is the larger of the two (heads), as the
            # teacher's is the larger of its fast envelope and its slow memory.
            self.contract = nn.Linear(H, cfg.get("envelopes", 1))

        def forward(self, x, c, form: str = "chunked", chunk: int = 64, with_log_gain: bool = False,
                    start: str = "zero", with_envelopes: bool = False):
            """x: (B, L) audio, c: (B, 2) controls (0..1) -> (B, L); with `with_log_gain` (the gain form only)
            also the gain applied, in nepers (B, L), for the log-gain loss; with `with_envelopes`, each head's too
            (forward_blocks). `start`: from the zero state, or
            "settled", from the state silence settles the network to (the control-rate form only)."""
            if cfg.get("block"):
                return self.forward_blocks(x, c, form, chunk, with_log_gain, start, with_envelopes)
            assert start == "zero", "a settled start needs the control-rate form (`block`)"
            e = self.mlp(c)
            h = x[:, None, :] * self.expand.weight[:, 0, None] + self.expand.bias[:, None]
            if cfg.get("level_floor_db") is not None:
                h = h + level_feature(torch, x, cfg["level_floor_db"])[:, None, :] * self.expand.weight[:, 1, None]
            for block in self.blocks:
                h = block(h, e, form, chunk)
            o = torch.einsum("h,bhl->bl", self.contract.weight[0], h) + self.contract.bias
            if cfg.get("output", "tanh") == "gain":
                log_gain = -torch.nn.functional.softplus(o)
                y = x * torch.exp(log_gain)
                return (y, log_gain) if with_log_gain else y
            assert not with_log_gain, "the log-gain loss needs `output: gain`"
            return torch.tanh(o)

        def heads(self, h):
            """The contraction's outputs o (B, heads, M), and o itself (B, M): their largest (the reduction is
            softplus(o), increasing in o, so the largest o is the largest reduction)."""
            o = torch.einsum("eh,bhm->bem", self.contract.weight, h) + self.contract.bias[None, :, None]
            return o, torch.amax(o, dim=1)

        def forward_blocks(self, x, c, form: str, chunk: int, with_log_gain: bool, start: str = "zero",
                           with_envelopes: bool = False):
            """The control-rate gain computer (`block`: D samples): the network runs once per block of D samples on
            the block's RMS and its level in dB (block_features) and gives the log-gain L[k]; sample j of block k
            gets exp of the ramp from L[k-2] to L[k-1] (gain_ramp). Causal: L[k-1] is known when block k starts.

            start "settled": every S4D starts from the state silence settles it to, and the ramp from silence's
            gain, as the engine's pedal does after a reset (S4dNetwork::settle). Silence's features are 0, so
            the first block's input is the expansion's bias; each block's settled output, the next one's.

            With `with_envelopes` (and `envelopes: 2`), also each head's log-gain, ramped the same way (B, 2, L),
            for the envelope loss."""
            assert start in ("zero", "settled"), start
            d = cfg["block"]
            length = x.shape[-1]
            xp = torch.nn.functional.pad(x, (0, (-length) % d))
            rms, lvl = block_features(torch, xp, d, cfg["level_floor_db"])
            h = (rms[:, None, :] * self.expand.weight[:, 0, None] + lvl[:, None, :] * self.expand.weight[:, 1, None]
                 + self.expand.bias[:, None])
            e = self.mlp(c)
            initial = None
            if start == "settled":
                h0 = self.expand.bias[None, :, None].expand(x.shape[0], -1, 1)
                for block in self.blocks:
                    h, h0 = block(h, e, form, chunk, h0), block(h0, e, "steady", chunk)
                heads0, o0 = self.heads(h0)
                initial = -torch.nn.functional.softplus(o0)
            else:
                for block in self.blocks:
                    h = block(h, e, form, chunk)
            heads, o = self.heads(h)
            log_gain = gain_ramp(torch, -torch.nn.functional.softplus(o), d, initial)[:, :length]
            y = x * torch.exp(log_gain)
            if with_envelopes:
                n = heads.shape[1]
                flat = -torch.nn.functional.softplus(heads).reshape(-1, heads.shape[-1])
                init = (None if start == "zero" else
                        -torch.nn.functional.softplus(heads0).reshape(-1, 1))
                envelopes = gain_ramp(torch, flat, d, init)[:, :length].reshape(x.shape[0], n, -1)
                return y, log_gain, envelopes
            return (y, log_gain) if with_log_gain else y

    net = Net()
    if cfg.get("init") == "identity" and cfg.get("output") == "gain":
        # Start at unity gain (a fraction of a decibel under): every block's branch zero (FiLM weights and biases
        # 0, as in ReZero) and the gain computer reading nothing yet (contraction weights 0, its bias
        # `gain_bias_init`: softplus(-4) = 0.018 neper, 0.16 dB). The first steps give the contraction its
        # weights, after which the blocks get gradients.
        with torch.no_grad():
            for block in net.blocks:
                block.film.weight.zero_()
                block.film.bias.zero_()
            net.expand.weight[:, 0].mul_(cfg.get("expand_gain", 1.0))
            net.expand.bias.zero_()
            net.contract.weight.zero_()
            net.contract.bias.fill_(cfg.get("gain_bias_init", -4.0))
    elif cfg.get("init") == "identity":
        # Start at y = tanh(x), what the teacher does at low settings: every block's branch zero (FiLM weights
        # and biases 0, so s = 0 until they learn, as in ReZero) and the contraction undoing the expansion
        # (c . w = 1, no biases). The expansion is scaled by `expand_gain` so that the residual stream is about
        # as large as a normalised branch (guitar at -25 dBFS RMS, times 10). Trained from a random network the
        # model first spends its short budget finding its way back to a transparent output.
        with torch.no_grad():
            for block in net.blocks:
                block.film.weight.zero_()
                block.film.bias.zero_()
            net.expand.weight.mul_(cfg.get("expand_gain", 1.0))
            w = net.expand.weight[:, 0]
            net.expand.bias.zero_()
            net.contract.weight[0] = w / torch.sum(w * w)
            net.contract.bias.zero_()
    return net


def level_feature(torch, x, floor_db: float):
    """The level input: 1 + max(20 log10|x|, floor) / -floor, 0 at (and under) the floor, 1 at full scale.

    Per sample, without smoothing (the state-space layers learn the detector): the mean of log|x| over a cycle is
    the level in decibels plus a constant of the waveform, so a compressor's static curve, straight lines in
    decibels, is a straight line of this input. Silence gives 0, so the zero state is the state of silence.
    """
    return 1.0 + torch.clamp(20.0 * torch.log10(torch.abs(x)), min=floor_db) / -floor_db


def block_features(torch, x, d: int, floor_db: float):
    """Per block of `d` samples (x: (B, M d)): the RMS, and the level 1 + max(10 log10(mean square), floor) / -floor
    (0 at and under the floor and in silence, 1 at full scale): (B, M) each. The teacher's detector reads the mean
    square, which the blocks keep; within a block the gain computer needs no finer time (its attack is 5-10 ms)."""
    ms = torch.mean(x.reshape(x.shape[0], -1, d) ** 2, dim=-1)
    return torch.sqrt(ms), 1.0 + torch.clamp(10.0 * torch.log10(ms), min=floor_db) / -floor_db


def gain_ramp(torch, log_gain, d: int, initial=None):
    """Per-block log-gains L (B, M) to per-sample ones (B, M d): sample j of block k gets
    L[k-2] + (L[k-1] - L[k-2]) (j + 1) / d, with L[-1] = L[-2] = 0 (unity gain, a zero state's), or `initial`
    (B, 1), the gain of a settled start."""
    if initial is None:
        padded = torch.nn.functional.pad(log_gain, (2, 0))
    else:
        padded = torch.cat([initial, initial, log_gain], dim=-1)
    start, end = padded[:, :-2], padded[:, 1:-1]
    f = torch.arange(1, d + 1, dtype=log_gain.dtype, device=log_gain.device) / d
    return (start[..., None] + (end - start)[..., None] * f).reshape(log_gain.shape[0], -1)


def f32(v) -> float:
    """A float32 value as the shortest decimal that reads back to it."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))


def export_weights(net) -> dict:
    def arr(t):
        a = t.detach().cpu().numpy().astype(np.float32)
        return [f32(v) for v in a] if a.ndim == 1 else [arr(row) for row in t]

    import torch

    blocks = []
    for b in net.blocks:
        ssm = b.ssm
        blocks.append({
            "linear": {"weight": arr(b.linear.weight), "bias": arr(b.linear.bias)},
            "prelu1": f32(b.prelu1.weight.item()),
            "ssm": {"dt": arr(torch.exp(ssm.log_dt)), "a_re": arr(-torch.exp(ssm.log_a_real)),
                    "a_im": arr(ssm.a_imag), "c_re": arr(ssm.c[..., 0]), "c_im": arr(ssm.c[..., 1]),
                    "d": arr(ssm.d)},
            "norm": {"mean": arr(b.norm.running_mean), "var": arr(b.norm.running_var), "eps": BN_EPS},
            "film": {"weight": arr(b.film.weight), "bias": arr(b.film.bias)},
            "prelu2": f32(b.prelu2.weight.item()),
            "residual": arr(b.residual),
        })
    mlp = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
    return {
        "mlp": [{"weight": arr(m.weight), "bias": arr(m.bias)} for m in mlp],
        "expand": {"weight": arr(net.expand.weight[:, 0]), "bias": arr(net.expand.bias),
                   **({"level_weight": arr(net.expand.weight[:, 1])} if net.expand.weight.shape[1] == 2 else {})},
        "blocks": blocks,
        "contract": {"weight": arr(net.contract.weight[0]), "bias": f32(net.contract.bias[0].item())},
        # The second envelope's readout (`envelopes: 2`): the gain reduction is the larger of the two.
        **({"memory": {"weight": arr(net.contract.weight[1]), "bias": f32(net.contract.bias[1].item())}}
           if net.contract.weight.shape[0] == 2 else {}),
    }


def load_weights(torch, net, w: dict, grow: bool = False) -> None:
    """The inverse of export_weights (log_dt = log(dt), log_a_real = log(-a_re)), in the net's dtype.

    With `grow`, a net deeper than the file (a fine-tune that adds blocks) keeps its extra blocks at the end with
    their branches zero (FiLM weights and biases 0: each passes its input through, as in ReZero), so it starts as
    the file's network and the new blocks learn from there."""
    def t(v, like):
        return torch.tensor(v, dtype=like.dtype).reshape(like.shape)

    blocks = list(net.blocks)
    if grow and len(blocks) > len(w["blocks"]):
        with torch.no_grad():
            for b in blocks[len(w["blocks"]):]:
                b.film.weight.zero_()
                b.film.bias.zero_()
        blocks = blocks[:len(w["blocks"])]

    with torch.no_grad():
        mlp = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
        for m, wm in zip(mlp, w["mlp"], strict=True):
            m.weight.copy_(t(wm["weight"], m.weight))
            m.bias.copy_(t(wm["bias"], m.bias))
        net.expand.weight[:, 0].copy_(torch.tensor(w["expand"]["weight"], dtype=net.expand.weight.dtype))
        if "level_weight" in w["expand"]:
            net.expand.weight[:, 1].copy_(torch.tensor(w["expand"]["level_weight"], dtype=net.expand.weight.dtype))
        net.expand.bias.copy_(t(w["expand"]["bias"], net.expand.bias))
        for b, wb in zip(blocks, w["blocks"], strict=True):
            b.linear.weight.copy_(t(wb["linear"]["weight"], b.linear.weight))
            b.linear.bias.copy_(t(wb["linear"]["bias"], b.linear.bias))
            b.prelu1.weight.fill_(wb["prelu1"])
            s = wb["ssm"]
            b.ssm.log_dt.copy_(torch.log(t(s["dt"], b.ssm.log_dt)))
            b.ssm.log_a_real.copy_(torch.log(-t(s["a_re"], b.ssm.log_a_real)))
            b.ssm.a_imag.copy_(t(s["a_im"], b.ssm.a_imag))
            b.ssm.c.copy_(torch.stack([torch.tensor(s["c_re"]), torch.tensor(s["c_im"])], -1))
            b.ssm.d.copy_(t(s["d"], b.ssm.d))
            b.norm.running_mean.copy_(t(wb["norm"]["mean"], b.norm.running_mean))
            b.norm.running_var.copy_(t(wb["norm"]["var"], b.norm.running_var))
            b.film.weight.copy_(t(wb["film"]["weight"], b.film.weight))
            b.film.bias.copy_(t(wb["film"]["bias"], b.film.bias))
            b.prelu2.weight.fill_(wb["prelu2"])
            b.residual.copy_(t(wb["residual"], b.residual))
        # A file with one readout, loaded into a net with two (`envelopes: 2`), gives both the one it has: the
        # net starts as the file's, and the envelope loss pulls the two apart.
        assert "memory" not in w or net.contract.weight.shape[0] == 2, "a file of two envelopes needs `envelopes: 2`"
        for row in range(net.contract.weight.shape[0]):
            head = w["memory"] if row == 1 and "memory" in w else w["contract"]
            net.contract.weight[row].copy_(torch.tensor(head["weight"], dtype=net.contract.weight.dtype))
            net.contract.bias[row] = head["bias"]


# --------------------------------------------------------------------------------------------------------------
# Losses


def make_loss(torch, learning: dict, train_mean_square: float):
    kind = learning["loss"]
    coef = learning.get("pre_emphasis", 0.85)

    def esr_t(a, b):
        return torch.sum((a - b) ** 2) / (torch.sum(b**2) + 1e-10)

    def pre(s):
        return s[:, 1:] - coef * s[:, :-1]

    def stft_mag(s, n_fft, hop, win):
        window = torch.hann_window(win, dtype=s.dtype, device=s.device)
        spec = torch.stft(s, n_fft, hop, win, window=window, return_complex=True)
        return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=1e-8))

    def mrstft(a, b):
        """auraloss's MultiResolutionSTFTLoss defaults: spectral convergence + log-magnitude L1, three sizes."""
        total = 0.0
        for n_fft, hop, win in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)):
            ma, mb = stft_mag(a, n_fft, hop, win), stft_mag(b, n_fft, hop, win)
            total = total + torch.linalg.norm(mb - ma) / torch.linalg.norm(mb) + torch.mean(torch.abs(
                torch.log(mb) - torch.log(ma)))
        return total / 3

    if kind == "esr":
        return esr_t
    if kind == "split_esr":
        # The squared error over the training set's mean square: the split's ESR, which the manifest reports,
        # estimated without the spikes of a batch's own (sometimes near-silent) target energy.
        return lambda a, b: torch.mean((a - b) ** 2) / train_mean_square
    if kind == "esr+pre_esr":
        return lambda a, b: esr_t(a, b) + esr_t(pre(a), pre(b))
    if kind == "mae+mrstft":
        return lambda a, b: torch.mean(torch.abs(a - b)) + mrstft(a, b)
    raise ValueError(f"unknown loss '{kind}' (esr, split_esr, esr+pre_esr, mae+mrstft)")


def log_gain_error(torch, log_gain, x, y, floor_db: float, weights=None):
    """Mean squared error of the gain in nepers, over the samples where the input is above `floor_db`: the teacher
    is a gain applied to its input, so its gain is y / x there. Unlike the ESR this weighs every level alike: the
    release, heard on quiet notes after a loud one, and the static curve at low levels count as much as loud
    passages do (an error of 1 dB is 0.0133 here, about the ESR it gives at any level). With `weights` (like x),
    the weighted mean (see change_weights)."""
    floor = 10.0 ** (floor_db / 20.0)
    mask = (torch.abs(x) > floor) & (torch.abs(y) > 1e-9)
    safe_x = torch.where(mask, x, torch.ones_like(x))
    safe_y = torch.where(mask, y, torch.ones_like(y))
    teacher = torch.log(torch.abs(safe_y) / torch.abs(safe_x))
    w = mask.to(x.dtype) if weights is None else torch.where(mask, weights, torch.zeros_like(x))
    return torch.sum(torch.where(mask, w * (log_gain - teacher) ** 2, torch.zeros_like(x))) / torch.clamp(
        torch.sum(w), min=1)


def change_weights(chunk: dict, length: int, rate: int, weight: float, seconds: float) -> np.ndarray:
    """Per-sample weights of a held-tone chunk's log-gain error: 1 + weight exp(-t / seconds), t the time since
    the level last changed (a segment's gain other than the one before, silence included). The attack and the
    early release, which the timings measure, then count as much as the held level after them, whose samples
    outnumber them; a corpus chunk's level moves within its segments, so its weights are 1."""
    w = np.ones(length, dtype=np.float32)
    if "tone_hz" not in chunk:
        return w
    seg = chunk["segment_samples"]
    bump = (weight * np.exp(-np.arange(seg) / (seconds * rate))).astype(np.float32)
    gains = chunk["gains_db"]
    for k in range(1, len(gains)):
        if gains[k] != gains[k - 1] and k * seg < length:
            n = min(seg, length - k * seg)
            w[k * seg:k * seg + n] += bump[:n]
    return w


def log_gain_mse(torch, x: np.ndarray, y: np.ndarray, out: np.ndarray, floor_db: float) -> float:
    """log_gain_error on a whole chunk in double precision, the model's gain read from its output: out / x (where
    the input is under the floor, and the ratio means nothing, log_gain_error leaves it out)."""
    x, y, out = (torch.from_numpy(a.astype(np.float64)) for a in (x, y, out))
    log_gain = torch.log(torch.clamp(torch.abs(out), min=1e-30) / torch.clamp(torch.abs(x), min=1e-30))
    return float(log_gain_error(torch, log_gain, x, y, floor_db))


# --------------------------------------------------------------------------------------------------------------
# Dynamics in validation


def reduction_windows(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """The gain reduction in dB (input over output, mean squares) in consecutive windows of `window` samples."""
    n = len(x) // window * window
    xs = np.mean(x[:n].astype(np.float64).reshape(-1, window) ** 2, axis=1)
    ys = np.mean(y[:n].astype(np.float64).reshape(-1, window) ** 2, axis=1)
    return 10.0 * np.log10(np.maximum(xs, 1e-30) / np.maximum(ys, 1e-30))


def dynamics_probes(nb: Path, tmp: Path, recipe: dict) -> list[dict]:
    """The probes of `dynamics_validation`, measured like `neuralboard eval`'s dynamics (engine/src/eval/dynamics.rs)
    but with their own tone, levels and settings: per setting, steady tones at `static_dbfs` (each from the initial
    state, measured over the last `measure_s` after `settle_s`) and a step `step_dbfs` (quiet for `lead_s`, loud for
    `hold_s`, quiet for `tail_s`). Each probe: its settings, input, and the teacher's output (from rest)."""
    spec, rate = recipe["dynamics_validation"], recipe["sample_rate"]
    hz = spec["tone_hz"]

    def sine(dbfs: float, start: int, n: int) -> np.ndarray:
        t = np.arange(start, start + n, dtype=np.float64)
        return (10.0 ** (dbfs / 20.0) * np.sin(2.0 * np.pi * hz * t / rate)).astype(np.float32)

    def teacher(x: np.ndarray, p: float, lim: int, name: str) -> np.ndarray:
        return run_teacher(nb, recipe, x, p, lim, tmp / f"dyn-{name}-{p:g}-{lim}")

    settle, measure = int(spec["settle_s"] * rate), int(spec["measure_s"] * rate)
    lead, hold, tail = (int(spec[k] * rate) for k in ("lead_s", "hold_s", "tail_s"))
    quiet, loud = spec["step_dbfs"]
    step = np.concatenate([sine(quiet, 0, lead), sine(loud, lead, hold), sine(quiet, lead + hold, tail)])
    probes = []
    for p, lim in spec["settings"]:
        tones = np.stack([sine(level, 0, settle + measure) for level in spec["static_dbfs"]])
        probes.append({
            "settings": (float(p), int(lim)), "static_x": tones,
            "static_y": np.stack([teacher(x, p, lim, f"static{level:g}")
                                  for x, level in zip(tones, spec["static_dbfs"])]),
            "step_x": step, "step_y": teacher(step, p, lim, "step"), "settle": settle, "lead": lead, "hold": hold})
    return probes


def dynamics_errors(probe: dict, static_out: np.ndarray, step_out: np.ndarray, rate: int) -> tuple[float, ...]:
    """(static curve, attack curve, release curve) differences in dB for one setting, as `neuralboard eval`
    measures them: the largest difference of the steady tones' gain reductions, and of the step's in 10 ms windows
    over the first 200 ms after the step up and over the whole tail after the step down."""
    s = probe["settle"]

    def reduction(x: np.ndarray, y: np.ndarray) -> float:
        return float(reduction_windows(x[s:], y[s:], len(x) - s)[0])

    static = max(abs(reduction(x, y) - reduction(x, o))
                 for x, y, o in zip(probe["static_x"], probe["static_y"], static_out))
    window = rate // 100
    teacher = reduction_windows(probe["step_x"], probe["step_y"], window)
    model = reduction_windows(probe["step_x"], step_out, window)
    up, down = probe["lead"] // window, (probe["lead"] + probe["hold"]) // window
    attack = float(np.max(np.abs(teacher - model)[up:up + 20]))
    release = float(np.max(np.abs(teacher - model)[down:]))
    return static, attack, release


# --------------------------------------------------------------------------------------------------------------


def main() -> None:
    recipes = json.loads(RECIPES.read_text())["recipes"]
    ap = trainer_arguments(__doc__, recipes, OUT_DIR, threads=1, out_help="where the model, check and manifest go",
                           gpu=True)
    ap.add_argument("--loss", help="override the recipe's loss (esr, split_esr, esr+pre_esr, mae+mrstft)")
    ap.add_argument("--lr", type=float, help="override the recipe's learning rate (not the S4D's)")
    ap.add_argument("--remeasure", action="store_true",
                    help="measure the shipped model file again (check, ESRs, manifest) instead of training")
    ap.add_argument("--init", type=Path,
                    help="start from these weights (an .s4d.json of the recipe's shape) instead of the initialisation: "
                         "fine-tuning; the manifest records the file's SHA-256")
    ap.add_argument("--experiment", action="store_true",
                    help="train and report the validation ESR only: no export, nothing written")
    args = ap.parse_args()
    recipe = merged(resolved(recipes, args.recipe), args.override)
    learning = dict(recipe["learning"])
    if args.loss:
        learning["loss"] = args.loss
    if args.lr:
        learning["lr"] = args.lr
    cfg = recipe["model"]
    check_init(args.recipe, recipe, args.init, args.remeasure)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(learning["seed"])
    device = torch.device(args.device)
    started = start_run(args.recipe, args.workdir, ["engine", "app", "training"])
    commit, nb, work, tmp = started.commit, started.binary, started.work, started.data
    rate = recipe["sample_rate"]
    warm_eval = int(WARMUP_S * rate)

    # 1. Data.
    log(f"making data in {tmp}")
    chunks = {split: expand_chunks(nb, tmp, recipe, split) for split in recipe["splits"]}
    seeds = [c["seed"] for cs in chunks.values() for c in cs]
    assert len(set(seeds)) == len(seeds), "corpus seeds must be disjoint across chunks and splits"
    # With `envelope_weight`, the teacher's envelopes of the training chunks too (the envelope loss).
    env_weight = learning.get("envelope_weight", 0.0)
    assert not env_weight or cfg.get("envelopes") == 2, "the envelope loss needs `envelopes: 2`"
    data, envs = {}, {}
    for split, cs in chunks.items():
        made = [make_chunk(nb, tmp, recipe, c, bool(env_weight) and split.startswith("train")) for c in cs]
        data[split] = [(x, y) for x, y, _ in made]
        envs[split] = [e for _, _, e in made]
    ctrl = {split: [control_vector(c["peak_reduction"], c["limit"]) for c in cs] for split, cs in chunks.items()}

    chunk_t = learning["chunk"]
    # Where every window, validation chunk and manifest chunk starts: the zero state, or the state silence settles
    # the network to (the pedal's after a reset, and where `neuralboard eval` measures the dynamics from).
    initial_state = learning.get("initial_state", "zero")

    def run_model(model, x: np.ndarray, c: list[float], form: str, dtype=torch.float32,
                  initial: str | None = None) -> np.ndarray:
        """The model over x from `initial` (the recipe's initial state unless given)."""
        dev = next(model.parameters()).device
        with torch.no_grad():
            out = model(torch.from_numpy(x).to(dev, dtype)[None], torch.tensor([c], dtype=dtype, device=dev), form,
                        chunk_t, start=initial or initial_state)
        return out[0].double().cpu().numpy()

    lg_weight = learning.get("log_gain_weight", 0.0)
    lg_floor = learning.get("log_gain_floor_db", -60.0)

    def evaluate(model, split: str, form: str = "chunked", dtype=torch.float32) -> tuple[float, list[float], float]:
        """ESR over a split's chunks after WARMUP_S, the model from its initial state (`initial_state`) over each whole
        chunk; the ESR
        per chunk; and the mean over the chunks of the log-gain error (log_gain_mse, nepers squared)."""
        was_training = model.training
        model.eval()
        err = ref = 0.0
        per, lg = [], []
        for (x, y), c in zip(data[split], ctrl[split]):
            out = run_model(model, x, c, form, dtype)
            y64 = y[warm_eval:].astype(np.float64)
            e = float(np.sum((y64 - out[warm_eval:]) ** 2))
            err, ref = err + e, ref + float(np.sum(y64**2))
            per.append(esr(y[warm_eval:], out[warm_eval:]))
            lg.append(log_gain_mse(torch, x[warm_eval:], y[warm_eval:], out[warm_eval:], lg_floor))
        model.train(was_training)
        return err / ref, per, float(np.mean(lg))

    probes = dynamics_probes(nb, tmp, recipe) if "dynamics_validation" in recipe else []

    def dynamics(model) -> list[tuple[float, ...]]:
        """Per probe setting, (static, attack, release) curve differences in dB (dynamics_errors)."""
        was_training = model.training
        model.eval()
        errors = []
        dev = next(model.parameters()).device
        for pr in probes:
            c = torch.tensor([control_vector(*pr["settings"])], dtype=torch.float32, device=dev)
            with torch.no_grad():
                static = model(torch.from_numpy(pr["static_x"]).to(dev), c.expand(len(pr["static_x"]), -1),
                               "chunked", chunk_t, start=initial_state).double().cpu().numpy()
                step = model(torch.from_numpy(pr["step_x"]).to(dev)[None], c, "chunked", chunk_t,
                             start=initial_state)[0].double().cpu().numpy()
            errors.append(dynamics_errors(pr, static, step, rate))
        model.train(was_training)
        return errors

    def validate(model) -> tuple[float, dict]:
        """The criterion: the mean over the validation* splits (the corpus, and held tones where the recipe has
        them) of the ESR, plus `log_gain_weight` times the log-gain error where the loss has that term; with
        `dynamics_validation`, plus its `weight_per_db` times the mean of its curve differences (dB). Returns the
        criterion and its parts."""
        scores = []
        for sp in chunks:
            if sp.startswith("validation"):
                total, _, lg = evaluate(model, sp)
                scores.append(total + lg_weight * lg)
        parts = {"esr": float(np.mean(scores))}
        if probes:
            errors = np.array(dynamics(model))
            parts["dynamics_db"] = float(np.mean(errors))
            parts["static_attack_release_db"] = [round(float(v), 3) for v in errors.mean(axis=0)]
            return parts["esr"] + recipe["dynamics_validation"]["weight_per_db"] * parts["dynamics_db"], parts
        return parts["esr"], parts

    # 2. Model and training (or, with --remeasure, the shipped file).
    def fit() -> tuple[dict, dict] | None:
        """Trains; returns the exported weights and what the manifest records about the training."""
        net = build_model(torch, cfg)
        if args.init:
            load_weights(torch, net, json.loads(args.init.read_text())["weights"], grow=True)
            log(f"starting from {args.init}")
        net = net.to(device)
        n_params = sum(p.numel() for p in net.parameters())
        ssm_params = [p for n, p in net.named_parameters() if ".ssm." in n and not n.endswith(".c") and
                      not n.endswith(".d")]
        other = [p for p in net.parameters() if all(p is not q for q in ssm_params)]
        opt = torch.optim.Adam([{"params": other, "lr": learning["lr"]},
                                {"params": ssm_params, "lr": learning["lr_ssm"]}])
        base_lr = [learning["lr"], learning["lr_ssm"]]
        # Every split named train* trains (the corpus, and held tones where the recipe has them).
        train_splits = [sp for sp in chunks if sp.startswith("train")]
        train = [d for sp in train_splits for d in data[sp]]
        train_env = [e for sp in train_splits for e in envs[sp]]
        train_ctrl = [c for sp in train_splits for c in ctrl[sp]]
        # The log-gain error's weights (all 1 without `change_weight`).
        train_w = [change_weights(c, len(d[0]), rate, learning.get("change_weight", 0.0),
                                  learning.get("change_seconds", 0.25))
                   for sp in train_splits for c, d in zip(chunks[sp], data[sp])]
        train_ms = float(np.mean(np.concatenate([y for _, y in train]).astype(np.float64) ** 2))
        loss_fn = make_loss(torch, learning, train_ms)
        loss_name = learning["loss"] + (f" + {lg_weight} x log-gain error (input above {lg_floor} dBFS)"
                                        if lg_weight else "") + (
            f" + {env_weight} x envelope error (each head's log-gain against the teacher's fast envelope and slow "
            "memory, nepers squared)" if env_weight else "")

        lengths = np.array([len(y) for _, y in train], dtype=np.float64)
        rng = np.random.default_rng(learning["seed"])
        warm, span, batch = learning["warmup"], learning["loss_samples"], learning["batch"]
        window = warm + span
        assert lengths.min() >= window, "training chunks must be longer than a window"
        max_minutes = args.max_minutes if args.max_minutes is not None else recipe["max_minutes"]
        stop_below = recipe["target_esr"]["test"] * recipe["stop_at_fraction_of_target"]
        log(f"training {args.recipe}: S4D {cfg['channels']} channels x {cfg['modes']} modes x {cfg['depth']} blocks, "
            f"{n_params} parameters, loss {loss_name}, {lengths.sum() / rate:.0f} s of training audio in "
            f"{len(train)} chunks, at most {max_minutes} min on {args.device} ({args.threads} CPU threads)")

        def sample_batch(n: int):
            which = rng.choice(len(train), size=n, p=lengths / lengths.sum())
            inp = np.empty((n, window), dtype=np.float32)
            tgt = np.empty((n, window), dtype=np.float32)
            wts = np.empty((n, window), dtype=np.float32)
            env = np.zeros((n, 2, window) if env_weight else (n, 0, 0), dtype=np.float32)
            for b, ci in enumerate(which):
                x, y = train[ci]
                start = 0 if rng.random() < learning["start_at_zero"] else rng.integers(0, len(y) - window + 1)
                sign = 1.0 if rng.random() < 0.5 else -1.0
                inp[b], tgt[b] = sign * x[start:start + window], sign * y[start:start + window]
                wts[b] = train_w[ci][start:start + window]
                if env_weight:
                    env[b] = train_env[ci][start:start + window].T
            c_t = torch.tensor([train_ctrl[ci] for ci in which], dtype=torch.float32)
            return (torch.from_numpy(inp).to(device), c_t.to(device), torch.from_numpy(tgt).to(device),
                    torch.from_numpy(wts).to(device), torch.from_numpy(env).to(device))

        # Set the normalisation statistics from the data before the first step (one pass, each block's statistics
        # from this batch): otherwise they start at mean 0, variance 1 and, catching up, rescale every branch. A
        # model fine-tuned (--init) keeps its own. Then each batch moves them by `norm_momentum` (0.1; 0 freezes
        # them, which keeps a fine-tune's validation from following the last few batches' statistics).
        norms = [b.norm for b in net.blocks]
        if not args.init:
            with torch.no_grad():
                for nm in norms:
                    nm.momentum = 1.0
                inp, c_t, _, _, _ = sample_batch(learning["batch"])
                net(inp, c_t, "chunked", chunk_t)
        for nm in norms:
            nm.momentum = learning.get("norm_momentum", 0.1)
        val, parts = validate(net)
        log(f"validation criterion at the start: {val:.5f} {parts}")

        # torch.compile fuses the element-wise work (about twice as fast on a CPU; the first step compiles, a few
        # minutes, inside the time limit). Evaluation runs the plain module, which shares the parameters.
        step_net = torch.compile(net) if learning.get("compile") else net
        t0 = time.time()
        # The starting point is a candidate too: a fine-tune that never beats its parent returns the parent.
        best = (val, copy.deepcopy(net.state_dict()), 0)
        last_val = t0
        steps = 0
        history = []
        recent = []
        recent_env = []
        while True:
            elapsed = time.time() - t0
            if elapsed > max_minutes * 60:
                break
            for g, lr in zip(opt.param_groups, base_lr):
                g["lr"] = lr * learning["lr_final_fraction"] ** (elapsed / (max_minutes * 60))
            inp, c_t, tgt, wts, env = sample_batch(batch)
            if lg_weight:
                if env_weight:
                    out, log_gain, heads = step_net(inp, c_t, "chunked", chunk_t, True, initial_state, True)
                else:
                    out, log_gain = step_net(inp, c_t, "chunked", chunk_t, True, initial_state)
                loss = loss_fn(out[:, warm:], tgt[:, warm:]) + lg_weight * log_gain_error(
                    torch, log_gain[:, warm:], inp[:, warm:], tgt[:, warm:], lg_floor,
                    wts[:, warm:] if learning.get("change_weight") else None)
                if env_weight:
                    # Each head's log-gain is minus its reduction: head + teacher's envelope is the error.
                    env_loss = torch.mean((heads[..., warm:] + env[..., warm:]) ** 2)
                    recent_env.append(env_loss.item())
                    loss = loss + env_weight * env_loss
            else:
                out = step_net(inp, c_t, "chunked", chunk_t, False, initial_state)
                loss = loss_fn(out[:, warm:], tgt[:, warm:])
            recent.append(loss.item())
            opt.zero_grad()
            loss.backward()
            if learning.get("clip_grad"):
                torch.nn.utils.clip_grad_norm_(net.parameters(), learning["clip_grad"])
            opt.step()
            steps += 1
            if steps % 10 == 0:
                log(f"{(time.time() - t0) / 60:5.1f} min, step {steps}, loss (mean of 10) {np.mean(recent[-10:]):.5f}"
                    + (f", of which envelopes {env_weight} x {np.mean(recent_env[-10:]):.5f}" if recent_env else ""))
            if time.time() - last_val > learning["validate_every_s"]:
                val, parts = validate(net)
                if val < best[0]:
                    best = (val, copy.deepcopy(net.state_dict()), steps)
                history.append({"minutes": round((time.time() - t0) / 60, 2), "step": steps, "validation_esr": val,
                                **({"parts": parts} if probes else {})})
                log(f"{(time.time() - t0) / 60:5.1f} min, step {steps}, validation criterion {val:.5f} {parts} "
                    f"(best {best[0]:.5f})")
                last_val = time.time()
                if val < stop_below:
                    log(f"validation ESR under {stop_below}: stopping")
                    break
        minutes = (time.time() - t0) / 60
        val, _ = validate(net)
        if val < best[0]:
            best = (val, copy.deepcopy(net.state_dict()), steps)
        net.load_state_dict(best[1])
        net.cpu()  # the export and every ESR below on the CPU
        log(f"best validation ESR {best[0]:.5f} at step {best[2]} of {steps}, {minutes:.1f} min")
        if args.experiment:
            _, per, _ = evaluate(net, "validation")
            log("validation per chunk: " + ", ".join(f"{c['peak_reduction']:g}/{c['limit']}: {e:.4f}"
                                                     for c, e in zip(chunks["validation"], per)))
            torch.save(net.state_dict(), work / "experiment.pt")
            return None
        return export_weights(net), {
            "recipe": f"python training/compressor/train.py {args.recipe}",
            "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "framework": f"torch {torch.__version__}",
            "machine": f"{platform.machine()}, {device_name(torch, device)}, {args.threads} torch threads",
            "minutes": round(minutes, 1),
            "steps": steps,
            "best_at_step": best[2],
            "best_validation_esr": best[0],
            "loss": loss_name,
            "overrides": args.override,
            **init_record(args.init),
            "validation_history": history,
            "train_chunks": [c for sp in train_splits for c in chunks[sp]],
            "validation_chunks": [c for sp in chunks if sp.startswith("validation") for c in chunks[sp]],
        }

    model_out = args.out_dir / f"{args.recipe}.s4d.json"
    manifest_path = args.out_dir / f"{args.recipe}.manifest.json"
    if args.remeasure:
        # The shipped weights, measured again (after a change to the data, the evaluation or the check); the
        # manifest keeps the training record and says when and at which commit it was re-measured.
        weights = json.loads(model_out.read_text())["weights"]
        training = json.loads(manifest_path.read_text())["training"]
        training["remeasured"] = {
            "commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    else:
        fitted = fit()
        if fitted is None:
            return
        weights, training = fitted

    # 3. Export, check, manifest. Everything below runs the exported numbers: the check in double precision and
    # the full-length FFT convolution, the ESRs in single precision and the chunked form (the same linear map,
    # several times faster; the two are compared below).
    ref = build_model(torch, cfg).double()
    load_weights(torch, ref, weights)
    ref.eval()
    exported = build_model(torch, cfg)
    load_weights(torch, exported, weights)
    exported.eval()
    model_doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION_ENVELOPES if "memory" in weights else FORMAT_VERSION,
        "sample_rate": rate,
        "config": {"channels": cfg["channels"], "modes": cfg["modes"], "depth": cfg["depth"],
                   "embedding": cfg["embedding"], "controls": CONTROLS,
                   **({"level_floor_db": cfg["level_floor_db"]} if cfg.get("level_floor_db") is not None else {}),
                   **({"block": cfg["block"]} if cfg.get("block") else {})},
        "weights": weights,
        "output": cfg.get("output", "tanh"),
        "metadata": recipe["metadata"],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.remeasure:
        tmp_out = model_out.with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(model_doc, separators=(",", ":")) + "\n")
        os.replace(tmp_out, model_out)

    # The check: loud then 20 dB quieter, from a held-out corpus seed, in the FFT-convolution form.
    check_spec = recipe["check"]
    check_corpus = tmp / "check.wav"
    run([nb, "corpus", "--seed", check_spec["seed"], "--seconds", check_spec["seconds"], "--rate", rate,
         check_corpus])
    cx = read_float(check_corpus)
    half = CHECK_SAMPLES // 2
    energy = np.convolve(cx.astype(np.float64) ** 2, np.ones(half), "valid")
    at = int(np.argmax(energy[:len(energy) - CHECK_SAMPLES]))
    excerpt = np.concatenate([cx[at:at + half], cx[at + half:at + CHECK_SAMPLES] * 0.1])
    excerpt = excerpt * (0.89 / np.max(np.abs(excerpt)))  # the loud half peaks at -1 dBFS
    excerpt = np.array([float(f"{v:.7g}") for v in excerpt], dtype=np.float32)
    cases = []
    for p, lim in check_spec["controls"]:
        # From the zero state, as the check file says and recurrent.py and the engine's test run it.
        out = run_model(ref, excerpt, control_vector(p, lim), "fft", torch.float64, "zero")
        cases.append({"controls": {"peak_reduction": float(p), "limit": float(lim)},
                      "input": [float(f"{v:.7g}") for v in excerpt],
                      "output": [float(f"{v:.7g}") for v in out]})
    check_out = args.out_dir / f"{args.recipe}.check.json"
    check_out.write_text(json.dumps({
        "description": "The model's output (float64, full-length FFT convolution, eval mode, from a zero state) "
                       f"for {CHECK_SAMPLES} samples: corpus seed {check_spec['seed']} from sample {at}, "
                       f"scaled to peak at -1 dBFS, the second half 20 dB down. Values to 7 significant digits.",
        "cases": cases}, separators=(",", ":")) + "\n")
    check_err = max_check_error(model_doc, json.loads(check_out.read_text()))
    log(f"check: the recurrence (recurrent.py) against the FFT form: max difference {check_err:.3g}")
    if check_err > CHECK_TOLERANCE:
        raise SystemExit(f"{check_out}: the recurrent form is {check_err:.3g} off the FFT form "
                         f"(tolerance {CHECK_TOLERANCE}): the export is wrong")

    results = {}
    for split in chunks:
        total, per, lg = evaluate(exported, split)
        gain_db = 20.0 / math.log(10.0) * math.sqrt(lg)
        results[split] = {"esr": total, "per_chunk": [round(e, 6) for e in per],
                          "gain_error_db_rms": round(gain_db, 4)}
        log(f"{split}: ESR {total:.5f}, gain error {gain_db:.3f} dB RMS; per chunk {[f'{e:.4f}' for e in per]}")
    # What the ESRs ran (single precision, chunked) against the double-precision full-length FFT convolution.
    x0 = data["test"][-1][0][:2 * rate]
    drift = float(np.max(np.abs(run_model(exported, x0, ctrl["test"][-1], "chunked") -
                                run_model(ref, x0, ctrl["test"][-1], "fft", torch.float64))))
    log(f"float32 chunked vs float64 FFT form, first 2 s of the last test chunk: max difference {drift:.2e}")

    missed = [split for split, target in recipe["target_esr"].items() if results[split]["esr"] > target]
    if missed:
        log(f"targets missed: {missed}")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": args.recipe,
        "file": model_out.name,
        "check_file": check_out.name,
        "architecture": recipe["architecture"],
        "parameters": sum(p.numel() for p in exported.parameters()),
        "sample_rate": rate,
        "teacher": recipe["teacher"],
        "input_definition": INPUT_DEFINITION,
        "chunks": {split: cs for split, cs in chunks.items() if split.startswith("test")},
        "results": results,
        "target_esr": recipe["target_esr"],
        "targets_missed": missed,
        "esr_definition": f"sum((teacher - model)^2) / sum(teacher^2) over all chunks of a split, samples "
                          f"t >= {warm_eval} ({WARMUP_S} s) of each chunk; the model runs from "
                          + ("a zero state (all SSM states 0)" if initial_state == "zero" else
                             "the state silence settles it to (initial_state)")
                          + " over the whole chunk with the chunk's controls, and the teacher "
                          "from rest over the same input. Measured on the exported weights in single precision "
                          "(the convolution computed in chunks: the same linear map as the recurrence)",
        "esr_warmup_seconds": WARMUP_S,
        "initial_state": initial_state,
        "gain_error_definition": f"the model's gain against the teacher's (output / input, both), in dB: the root "
                                 f"of the mean over a split's chunks of the mean square of the difference over the "
                                 f"samples t >= {warm_eval} with the input above {lg_floor} dBFS",
        "forms_max_difference": drift,
        "training": training,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {model_out}, {check_out} and {manifest_path}")


if __name__ == "__main__":
    sys.exit(main())
