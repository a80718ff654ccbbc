#!/usr/bin/env python3
"""Train Neuralboard's latent-space reverb: an autoencoder of room impulse responses whose decoder the engine runs.

    python training/reverb/rooms.py RECIPE                      # the IR corpus (pyroomacoustics), ~20 min
    python training/reverb/train.py RECIPE [--threads N] [--workdir DIR] [--max-minutes M] [--out-dir DIR]
    python training/reverb/train.py RECIPE --evaluate            # export and measure the saved checkpoint again

After C. Steinmetz's NeuralReverberator (AES 2018): a spectrogram autoencoder with a tiny latent space, whose
decoder turns a point of an XY pad into a room. Here the decoder runs in the engine (format "neuralboard-reverb"
version 1) and the IR is synthesised from its output by noise shaping, so everything the engine does is below.

Features. An IR h (48 kHz, 147456 samples, starting 1 ms before its direct sound; see rooms.py) is scaled to unit
energy, sum h^2 = 1. Its STFT uses n_fft = 1024, hop = 512 and the periodic Hann window
w[n] = 1/2 - 1/2 cos(2 pi n / 1024); frame t = 0 .. 287 is centred at sample t hop (it covers t hop - 512 ..
t hop + 511, zeros outside the IR):

    X(k, t) = sum_n w[n] h[t hop - 512 + n] e^(-2 pi i k n / 1024),   k = 0 .. 512,   f_k = k 48000 / 1024.

B bands with edges e_0 = 0 < e_1 < ... < e_B = 24000 Hz (bin k is in band b when e_b <= f_k < e_(b+1); the Nyquist
bin is in the last band) are 1/6 octave wide, snapped to half-bin frequencies, so at the bottom, where 1/6 octave
is narrower than a bin, each band is one bin wide (see band_edges). The target is the band energy in dB,

    D[b][t] = max(10 log10(max(mean_(k in b) |X(k, t)|^2, 1e-30)), db_floor),

with the same floor (db_floor = -120 dB) in both directions: training targets and the engine's clamp of the
decoder's output. (The original min-max-normalised an 80 dB spectrogram and resynthesised it as 120 dB: its
decays came out 1.5 times too steep.)

Model. A variational autoencoder. The encoder (not shipped) sees the grid D (B channels x 288 frames, as
(D + 60) / 60), five stride-2 convolutions and two dense layers, and gives the mean mu and log-variance of a
Gaussian posterior over z (2 dimensions: the pad). The decoder maps z through dense layers to 64 channels x 9
frames, five stride-2 transposed convolutions up to 288 frames and a final convolution to B channels; its output
is D in dB (the affine 60 y - 60 is folded into the last layer at export). The loss per IR is

    L = sum_(b,t) w[b,t] e[b,t]^2 / sum w + beta KL(N(mu, sigma^2) || N(0, 1)),

    e = (D^ - D)            where D > floor,     e = max(D^ - floor, 0)   where D = floor,

(a prediction under the floor is clamped by the engine, so it is not an error where the target is the floor),
w = 1 within `near_db` of the band's peak level and `tail_weight` below it (the decay that T30/EDT see matters
more than the bottom of the tail). The KL term (weight beta, ramped up over the first `beta_warmup` of the time)
keeps neighbouring points of the pad decoding to neighbouring rooms. Adam, the learning rate decaying
exponentially to `lr_final_fraction` over the time limit, validation (reconstruction at z = mu) every
`validate_every_s`, the best kept.

Synthesis (what the engine does with a grid D, B x T): per frame t the band values are interpolated linearly in
dB over u = log2(max(f, 20 Hz)) between the band centres c_b = 2^((log2(max(e_b, 20)) + log2(e_(b+1))) / 2)
(held constant below c_0 and above c_(B-1)); the magnitude M = 10^(dB/20) gets a phase uniform in [0, 2 pi) per
bin and frame (DC and Nyquist: a random sign); each frame is irfft(M e^(i phi)) (1024 samples) times
sqrt(w), overlap-added centred at t hop; samples 0 .. T hop - 1 are kept and scaled to unit energy. No
Griffin-Lim: only the band energies over time are meant to be right.

Metrics (the engine's `neuralboard eval` implements the same): octave bands 250 Hz .. 8 kHz band-passed in the
frequency domain (rfft zero-padded to the next power of two >= 2 len, times the octave fc/sqrt2 .. fc sqrt2 with
sin^2 crossovers 1/6 octave wide centred on its edges: the "smooth" band of octave_filtered); the
Schroeder energy decay EDC(n) = sum_(m>=n) y(m)^2 in dB re EDC(0); T30 = -60 / slope of the least-squares line
of EDC (dB) over time from the first sample at or under -5 dB to (excluding) the first at or under -35 dB (null if
never); EDT the same from 0 dB to the first sample at or under -10 dB. Relative error |model - ref| / ref per test
IR and band, the reference being the simulated IR, the model the synthesis of decode(mu(D)), the oracle the
synthesis of D itself (what the synthesis alone loses). A brick-wall band-pass (bins fc/sqrt2 <= f < fc sqrt2, the
first definition) rings (sin(x)/x, energy falling as 1/t), which holds a low band's EDC up near -30 dB after a
strong direct sound and reads white noise decaying with T60 = 1 s as 1.7-2.1 s at 250/500 Hz, so the smooth band
is the metric and the manifest reports the brick-wall figures beside it.

Export: `rooms.reverb.json` (decoder, pad extent, room map), `rooms.check.json` (three latent points and the
decoder's output grid computed in float64 from the exported float32 weights) and `rooms.manifest.json` (recipe,
corpus, split, training record, metrics, and every test IR's room, z and reference T30/EDT for `neuralboard eval`).
"""

from __future__ import annotations

import os

# numpy's BLAS on one thread: with the other core busy, its worker threads spin-wait (40x slower here)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import copy
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from common import git_commit, log  # noqa: E402
from rooms import IR_SAMPLES, SAMPLE_RATE, load_recipe, load_room, room_path  # noqa: E402

REPO = HERE.parent.parent
OUT_DIR = REPO / "assets" / "models" / "reverb"
FORMAT = "neuralboard-reverb"
FORMAT_VERSION = 1
MANIFEST_VERSION = 1
N_FFT = 1024
HOP = 512
FRAMES = IR_SAMPLES // HOP  # 288
N_BINS = N_FFT // 2 + 1
OCTAVE_CENTRES = [250, 500, 1000, 2000, 4000, 8000]
TARGETS = {"t30": 0.10, "edt": 0.15}
SMOOTH_OCTAVES = 1.0 / 6.0
OUT_SCALE, OUT_SHIFT = 60.0, -60.0  # D = 60 y - 60 (folded into the last layer at export)


# --------------------------------------------------------------------------------------------------------------
# Features and synthesis (numpy, float64)


def band_edges(cfg: dict) -> list[float]:
    """1/`octave_fraction` octave edges down from 24 kHz to `lowest_edge_hz`, each snapped to the nearest half-bin
    frequency (k + 1/2) fs / n_fft, duplicates dropped, then 0 first: every band holds at least one bin, and where
    the log spacing is finer than a bin the bands are one bin wide (linear)."""
    df = SAMPLE_RATE / N_FFT
    nyq = SAMPLE_RATE / 2
    edges = set()
    f = nyq
    while True:
        f /= 2.0 ** (1.0 / cfg["octave_fraction"])
        if f < cfg["lowest_edge_hz"]:
            break
        k = max(0, round(f / df - 0.5))
        edges.add((k + 0.5) * df)
    return [0.0, *sorted(edges), nyq]


def band_membership(edges: list[float]) -> np.ndarray:
    """(N_BINS, B): 1 / (bins in band) where bin k is in band b, else 0."""
    f = np.arange(N_BINS) * SAMPLE_RATE / N_FFT
    b_of = np.searchsorted(np.array(edges), f, side="right") - 1
    b_of = np.minimum(b_of, len(edges) - 2)  # Nyquist bin in the last band
    a = np.zeros((N_BINS, len(edges) - 1))
    a[np.arange(N_BINS), b_of] = 1.0
    counts = a.sum(axis=0)
    assert np.all(counts >= 1), "a band without bins"
    return a / counts


def band_centres(edges: list[float]) -> np.ndarray:
    e = np.array(edges)
    return 2.0 ** ((np.log2(np.maximum(e[:-1], 20.0)) + np.log2(e[1:])) / 2.0)


def interp_matrix(edges: list[float]) -> np.ndarray:
    """(N_BINS, B): per-bin dB = this @ band dB, linear in u = log2(max(f, 20)) between band centres, constant
    outside (np.interp's rule)."""
    uc = np.log2(band_centres(edges))
    f = np.arange(N_BINS) * SAMPLE_RATE / N_FFT
    u = np.log2(np.maximum(f, 20.0))
    eye = np.eye(len(uc))
    return np.stack([np.interp(u, uc, eye[b]) for b in range(len(uc))], axis=1)


def hann(n: int = N_FFT) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def features(h: np.ndarray, member: np.ndarray, floor: float) -> np.ndarray:
    """D (B x FRAMES) of one IR, as defined in the module docstring."""
    h = np.asarray(h, np.float64)
    h = h / math.sqrt(np.sum(h * h))
    x = np.zeros(HOP + IR_SAMPLES + HOP)
    x[HOP:HOP + len(h)] = h[:IR_SAMPLES]
    idx = np.arange(FRAMES)[:, None] * HOP + np.arange(N_FFT)[None, :]
    spec = np.fft.rfft(x[idx] * hann()[None, :], axis=1)
    p = (spec.real**2 + spec.imag**2) @ member  # (FRAMES, B)
    d = 10.0 * np.log10(np.maximum(p, 1e-30))
    return np.maximum(d, floor).T


def noise_spectrum(mag: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Magnitudes (N_BINS x T) with a phase uniform in [0, 2 pi) per bin and frame (DC and Nyquist: a random sign)."""
    phi = rng.uniform(0.0, 2.0 * np.pi, mag.shape)
    spec = mag * np.exp(1j * phi)
    spec[0] = mag[0] * rng.choice([-1.0, 1.0], mag.shape[1])
    spec[-1] = mag[-1] * rng.choice([-1.0, 1.0], mag.shape[1])
    return spec


def istft(spec: np.ndarray) -> np.ndarray:
    """Frames (N_BINS x T) to samples 0 .. T hop - 1: each frame's irfft times sqrt(w), overlap-added centred at
    t hop."""
    t_frames = spec.shape[1]
    frames = np.fft.irfft(spec.T, n=N_FFT, axis=1) * np.sqrt(hann())[None, :]  # (T, N_FFT)
    out = np.zeros((t_frames + 1) * HOP)
    out[:t_frames * HOP] += frames[:, :HOP].ravel()
    out[HOP:] += frames[:, HOP:].ravel()
    return out[HOP:HOP + t_frames * HOP]  # frame t's centre (its sample 512) lands on t hop


def stft(y: np.ndarray, t_frames: int) -> np.ndarray:
    """The analysis matching istft (N_BINS x T): frame t centred at sample t hop, sqrt(w) window."""
    x = np.zeros((t_frames + 2) * HOP)
    x[HOP:HOP + len(y)] = y
    idx = np.arange(t_frames)[:, None] * HOP + np.arange(N_FFT)[None, :]
    return np.fft.rfft(x[idx] * np.sqrt(hann())[None, :], axis=1).T


def magnitudes(d: np.ndarray, interp: np.ndarray, floor: float) -> np.ndarray:
    """Per-bin magnitudes (N_BINS x T) of a grid D (B x T): dB interpolated over the band centres."""
    return 10.0 ** ((interp @ np.maximum(np.asarray(d, np.float64), floor)) / 20.0)


def synthesize(d: np.ndarray, interp: np.ndarray, floor: float, rng: np.random.Generator) -> np.ndarray:
    """The IR the engine makes of a grid D (B x T): random-phase noise shaped per bin and frame, overlap-added
    with sqrt(Hann), unit energy."""
    y = istft(noise_spectrum(magnitudes(d, interp, floor), rng))
    return y / math.sqrt(np.sum(y * y))


# --------------------------------------------------------------------------------------------------------------
# Metrics


def octave_filtered(ir: np.ndarray, centres=OCTAVE_CENTRES, shape: str = "smooth") -> list[np.ndarray]:
    """Octave bands by frequency-domain masking of the rfft zero-padded to the next power of two >= 2 len.

    "smooth" (the metric, the engine's `eval::decay`): the band fc/sqrt2 .. fc sqrt2 with sin^2 crossovers
    SMOOTH_OCTAVES wide (in log frequency) centred on the edges, complementary between adjacent bands.
    "brickwall": keep fc/sqrt2 <= f < fc sqrt2, reported beside it. The brick wall's impulse response rings as sin(x)/x, whose energy falls only as 1/t: after the direct
    sound it holds the EDC of a narrow low band up near -30 dB, so T30 and EDT of the 250 Hz and 500 Hz bands of a
    short decay measure the filter more than the room (white noise decaying with T60 = 1 s reads T30 = 1.7-2.1 s
    at 250/500 Hz). The smooth variant reads the same noise within 2 % and is reported beside it.
    """
    n = len(ir)
    size = 1 << math.ceil(math.log2(2 * n))
    spec = np.fft.rfft(np.asarray(ir, np.float64), size)
    f = np.arange(len(spec)) * SAMPLE_RATE / size
    out = []
    for fc in centres:
        if shape == "brickwall":
            w = ((f >= fc / math.sqrt(2)) & (f < fc * math.sqrt(2))).astype(np.float64)
        else:
            u = np.log2(np.maximum(f, 1e-9) / fc)
            w = np.sin(0.5 * np.pi * np.clip((0.5 - np.abs(u)) / SMOOTH_OCTAVES + 0.5, 0.0, 1.0)) ** 2
        out.append(np.fft.irfft(spec * w, size)[:n])
    return out


def edc_db(y: np.ndarray) -> np.ndarray:
    e = np.cumsum((y * y)[::-1])[::-1]
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(e / e[0])


def fit_decay(edc: np.ndarray, start: int, stop: int) -> float | None:
    """-60 / slope (dB/s) of the least-squares line of edc[start:stop] over time."""
    if stop - start < 2:
        return None
    t = np.arange(start, stop) / SAMPLE_RATE
    y = edc[start:stop]
    tm = t.mean()
    slope = float(np.sum((t - tm) * (y - y.mean())) / np.sum((t - tm) ** 2))
    return -60.0 / slope if slope < 0 else None


def first_at_or_below(edc: np.ndarray, level: float) -> int | None:
    idx = np.flatnonzero(edc <= level)
    return int(idx[0]) if len(idx) else None


def decay_times(ir: np.ndarray, centres=OCTAVE_CENTRES, shape: str = "smooth") -> dict:
    """{"t30": [...], "edt": [...]} per octave band (None where undefined)."""
    t30, edt = [], []
    for y in octave_filtered(ir, centres, shape):
        e = edc_db(y)
        i5, i35, i10 = first_at_or_below(e, -5.0), first_at_or_below(e, -35.0), first_at_or_below(e, -10.0)
        t30.append(fit_decay(e, i5, i35) if i35 is not None else None)
        edt.append(fit_decay(e, 0, i10) if i10 is not None else None)
    return {"t30": t30, "edt": edt}


def rel_error(model, ref) -> float | None:
    if ref is None:
        return None
    return math.inf if model is None else abs(model - ref) / ref


def summarise(errors: dict) -> dict:
    """errors[metric][band] = list of relative errors (None = no reference) -> per-band and overall statistics."""
    out = {}
    for metric, per_band in errors.items():
        rows, pooled = {}, []
        for fc, errs in zip(OCTAVE_CENTRES, per_band):
            e = np.array([x for x in errs if x is not None], np.float64)
            pooled.extend(e.tolist())
            rows[str(fc)] = stat_row(e, TARGETS[metric])
        rows["overall"] = stat_row(np.array(pooled), TARGETS[metric])
        out[metric] = rows
    return out


def stat_row(e: np.ndarray, target: float) -> dict:
    finite = e[np.isfinite(e)]
    return {"n": int(len(e)), "undefined": int(np.sum(~np.isfinite(e))),
            "median": round(float(np.median(e)), 4) if len(e) else None,
            "mean": round(float(np.mean(finite)), 4) if len(finite) else None,
            "within_target": round(float(np.mean(e <= target)), 4) if len(e) else None,
            "target": target}


# --------------------------------------------------------------------------------------------------------------
# Corpus and split


def split_rooms(cfg: dict, count: int) -> dict:
    """A seeded permutation of the room ids: the first test_fraction are test, the next validation_fraction
    validation, the rest train (whole rooms: all of a room's IRs are in one split)."""
    perm = np.random.default_rng(cfg["seed"]).permutation(count)
    n_test = round(cfg["test_fraction"] * count)
    n_val = round(cfg["validation_fraction"] * count)
    return {"test": sorted(perm[:n_test].tolist()), "validation": sorted(perm[n_test:n_test + n_val].tolist()),
            "train": sorted(perm[n_test + n_val:].tolist())}


def load_corpus(workdir: Path, count: int, member: np.ndarray, floor: float) -> dict:
    """Features of every IR (cached in WORKDIR/features.npz), plus room ids and parameters."""
    cache = workdir / "features.npz"
    rooms = []
    for i in range(count):
        if not room_path(workdir, i).exists():
            sys.exit(f"room {i} missing: run rooms.py first")
    if cache.exists():
        z = np.load(cache)
        if z["d"].shape[1] == member.shape[1] and int(z["count"]) == count and float(z["floor"]) == floor:
            rooms = json.loads(str(z["rooms"]))
            return {"d": z["d"], "room": z["room"], "pos": z["pos"], "rooms": rooms}
    log(f"features of {count} rooms")
    ds, room_of, pos = [], [], []
    for i in range(count):
        irs, params = load_room(workdir, i)
        rooms.append(params)
        for j, h in enumerate(irs):
            ds.append(features(h, member, floor).astype(np.float32))
            room_of.append(i)
            pos.append(j)
    d, room_of, pos = np.stack(ds), np.array(room_of), np.array(pos)
    np.savez(cache, d=d, room=room_of, pos=pos, rooms=json.dumps(rooms), count=count, floor=floor)
    return {"d": d, "room": room_of, "pos": pos, "rooms": rooms}


# --------------------------------------------------------------------------------------------------------------
# Model


def build_model(torch, cfg: dict, n_bands: int):
    nn = torch.nn
    ch, dims, slope = cfg["channels"], cfg["latent_dims"], cfg["leaky_slope"]
    enc_ch = cfg["encoder_channels"]

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers, c_in = [], n_bands
            for c in enc_ch:
                layers += [nn.Conv1d(c_in, c, 5, stride=2, padding=2), nn.LeakyReLU(slope)]
                c_in = c
            self.conv = nn.Sequential(*layers)
            length = FRAMES // 2 ** len(enc_ch)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, cfg["encoder_dense"]),
                                      nn.LeakyReLU(slope), nn.Linear(cfg["encoder_dense"], 2 * dims))

        def forward(self, d):
            o = self.head(self.conv((d - OUT_SHIFT) / OUT_SCALE))
            return o[:, :dims], o[:, dims:]

    n_up = cfg["upsamplings"]
    start = FRAMES // 2**n_up
    layers = []
    c_in = dims
    for width in cfg["decoder_dense"]:
        layers += [nn.Linear(c_in, width), nn.LeakyReLU(slope)]
        c_in = width
    layers += [nn.Linear(c_in, ch * start), nn.LeakyReLU(slope), nn.Unflatten(1, (ch, start))]
    for _ in range(n_up):
        layers += [nn.ConvTranspose1d(ch, ch, 4, stride=2, padding=1), nn.LeakyReLU(slope)]
    layers += [nn.Conv1d(ch, n_bands, cfg["final_kernel"], padding=cfg["final_kernel"] // 2)]

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(*layers)

        def forward(self, z):
            return OUT_SCALE * self.net(z) + OUT_SHIFT

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()
            self.decoder = Decoder()

    return VAE()


def grid_loss(torch, pred, target, floor: float, near_db: float, tail_weight: float):
    """Per-IR weighted squared error in dB^2 (see the module docstring)."""
    at_floor = target <= floor + 1e-6
    err = torch.where(at_floor, torch.relu(pred - floor), pred - target)
    peak = target.amax(dim=2, keepdim=True)
    w = torch.where(target >= peak - near_db, 1.0, tail_weight)
    return (w * err * err).sum(dim=(1, 2)) / w.sum(dim=(1, 2))


# --------------------------------------------------------------------------------------------------------------
# Export and the numpy decoder (the engine's arithmetic, float64)


def f32(v) -> float:
    """A float32 value as the shortest decimal that reads back to it."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))


def to_list(a: np.ndarray):
    a = np.asarray(a, np.float32)
    return [f32(v) for v in a] if a.ndim == 1 else [to_list(r) for r in a]


def export_decoder(torch, decoder) -> list[dict]:
    nn = torch.nn
    mods = list(decoder.net)
    layers = []
    for i, m in enumerate(mods):
        last = i == len(mods) - 1
        w = m.weight.detach().double().numpy() if hasattr(m, "weight") else None
        b = m.bias.detach().double().numpy() if hasattr(m, "bias") else None
        if last:  # fold D = 60 y - 60
            w, b = OUT_SCALE * w, OUT_SCALE * b + OUT_SHIFT
        if isinstance(m, nn.Linear):
            layers.append({"type": "dense", "weight": to_list(w), "bias": to_list(b)})
        elif isinstance(m, nn.LeakyReLU):
            layers.append({"type": "leaky_relu", "slope": m.negative_slope})
        elif isinstance(m, nn.Unflatten):
            layers.append({"type": "reshape", "channels": m.unflattened_size[0], "frames": m.unflattened_size[1]})
        elif isinstance(m, nn.ConvTranspose1d):
            assert m.output_padding == (0,) and m.dilation == (1,) and m.groups == 1
            layers.append({"type": "conv_transpose1d", "weight": to_list(w), "bias": to_list(b),
                           "stride": m.stride[0], "padding": m.padding[0]})
        elif isinstance(m, nn.Conv1d):
            assert m.stride == (1,) and m.dilation == (1,) and m.groups == 1
            layers.append({"type": "conv1d", "weight": to_list(w), "bias": to_list(b), "padding": m.padding[0]})
        else:
            raise TypeError(f"layer {m} has no counterpart in the format")
    return layers


def prepare_layers(layers: list[dict]) -> list[dict]:
    """The layers with their weights and biases as float64 arrays (decode_layers is then fast)."""
    return [{k: (np.asarray(v, np.float64) if k in ("weight", "bias") else v) for k, v in lay.items()}
            for lay in layers]


def decode_layers(layers: list[dict], z) -> np.ndarray:
    """The decoder of a model file, in float64: z (dims) -> D (B x frames), unclamped. `layers` as read from the
    file or from prepare_layers."""
    x = np.asarray(z, np.float64)
    for lay in layers:
        t = lay["type"]
        if t == "dense":
            x = np.asarray(lay["weight"], np.float64) @ x.reshape(-1) + np.asarray(lay["bias"], np.float64)
        elif t == "reshape":
            x = x.reshape(lay["channels"], lay["frames"])
        elif t == "conv_transpose1d":
            w = np.asarray(lay["weight"], np.float64)  # (in, out, k)
            s, p = lay["stride"], lay["padding"]
            c_in, c_out, k = w.shape
            n = x.shape[1]
            n_out = (n - 1) * s - 2 * p + k
            full = np.zeros((c_out, (n - 1) * s + k))
            for j in range(k):
                full[:, j:j + (n - 1) * s + 1:s] += w[:, :, j].T @ x
            x = full[:, p:p + n_out] + np.asarray(lay["bias"], np.float64)[:, None]
        elif t == "conv1d":
            w = np.asarray(lay["weight"], np.float64)  # (out, in, k)
            p = lay["padding"]
            c_out, c_in, k = w.shape
            xp = np.pad(x, ((0, 0), (p, p)))
            n_out = xp.shape[1] - k + 1
            y = np.zeros((c_out, n_out)) + np.asarray(lay["bias"], np.float64)[:, None]
            for j in range(k):
                y += w[:, :, j] @ xp[:, j:j + n_out]
            x = y
        elif t == "leaky_relu":
            x = np.where(x >= 0, x, lay["slope"] * x)
        elif t == "relu":
            x = np.maximum(x, 0.0)
        elif t == "tanh":
            x = np.tanh(x)
        elif t == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
        elif t == "elu":
            x = np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
        else:
            raise ValueError(t)
    return x


# --------------------------------------------------------------------------------------------------------------
# Training


def train(torch, recipe: dict, data: dict, split: dict, n_bands: int, max_minutes: float, ckpt: Path) -> dict:
    cfg, lc = recipe["model"], recipe["learning"]
    floor = recipe["features"]["db_floor"]
    torch.manual_seed(lc["seed"])
    rng = np.random.default_rng(lc["seed"])
    net = build_model(torch, cfg, n_bands)
    in_split = {s: np.isin(data["room"], split[s]) for s in split}
    d_all = torch.tensor(data["d"], dtype=torch.float32)
    x_tr, x_va = d_all[in_split["train"]], d_all[in_split["validation"]]
    log(f"train {len(x_tr)} IRs, validation {len(x_va)}; decoder {n_params(net.decoder)} parameters, "
        f"encoder {n_params(net.encoder)}")
    opt = torch.optim.Adam(net.parameters(), lr=lc["lr"])
    limit = 60.0 * max_minutes
    t0 = time.time()
    history, best, step, epoch = [], (math.inf, None, 0), 0, 0
    next_val = lc["validate_every_s"]
    near, tail = lc["near_db"], lc["tail_weight"]

    def validate() -> float:
        net.eval()
        with torch.no_grad():
            mu, _ = net.encoder(x_va)
            loss = grid_loss(torch, net.decoder(mu), x_va, floor, near, tail).mean().item()
        net.train()
        return loss

    done = False
    while not done:
        epoch += 1
        order = rng.permutation(len(x_tr))
        batch = min(lc["batch"], len(order))
        for i in range(0, len(order) - batch + 1, batch):
            el = time.time() - t0
            if el >= limit:
                done = True
                break
            frac = el / limit
            for g in opt.param_groups:
                g["lr"] = lc["lr"] * lc["lr_final_fraction"] ** frac
            beta = lc["beta"] * min(1.0, frac / lc["beta_warmup"])
            x = x_tr[order[i:i + batch]]
            mu, logvar = net.encoder(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = grid_loss(torch, net.decoder(z), x, floor, near, tail).mean()
            kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()
            loss = rec + beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if el >= next_val:
                next_val += lc["validate_every_s"]
                v = validate()
                history.append({"minutes": round(el / 60, 2), "step": step, "epoch": epoch,
                                "train_rec_db2": round(rec.item(), 3), "kl": round(kl.item(), 3),
                                "beta": round(beta, 4), "validation_db2": round(v, 3)})
                mark = ""
                if v < best[0]:
                    best = (v, copy.deepcopy(net.state_dict()), step)
                    torch.save({"state": best[1], "step": step, "validation": v}, ckpt)
                    mark = " *"
                log(f"{el / 60:.1f} min, step {step}, epoch {epoch}: train {rec.item():.2f} dB^2, KL {kl.item():.2f}, "
                    f"validation {v:.2f} dB^2{mark}")
    v = validate()
    history.append({"minutes": round((time.time() - t0) / 60, 2), "step": step, "epoch": epoch,
                    "validation_db2": round(v, 3)})
    if v < best[0]:
        best = (v, copy.deepcopy(net.state_dict()), step)
        torch.save({"state": best[1], "step": step, "validation": v}, ckpt)
    record = {"minutes": round((time.time() - t0) / 60, 2), "steps": step, "epochs": epoch,
              "best_validation_db2": round(best[0], 3), "best_step": best[2], "history": history}
    (ckpt.parent / "training.json").write_text(json.dumps(record, indent=1))
    return record


def n_params(m) -> int:
    return int(sum(p.numel() for p in m.parameters()))


# --------------------------------------------------------------------------------------------------------------
# Evaluation, map, export


def rms_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def evaluate_and_export(torch, name: str, recipe: dict, data: dict, split: dict, edges: list[float],
                        record: dict, workdir: Path, run_dir: Path, out_dir: Path, write: bool) -> dict:
    cfg, floor = recipe["model"], recipe["features"]["db_floor"]
    n_bands = len(edges) - 1
    interp = interp_matrix(edges)
    net = build_model(torch, cfg, n_bands)
    state = torch.load(run_dir / "checkpoint.pt")
    net.load_state_dict(state["state"])
    net.eval()
    layers = export_decoder(torch, net.decoder)
    fast = prepare_layers(layers)
    with torch.no_grad():
        mu_all = net.encoder(torch.tensor(data["d"], dtype=torch.float32))[0].double().numpy()
        # the export against torch, float32 both
        probe = torch.tensor(mu_all[:4], dtype=torch.float32)
        d_torch = net.decoder(probe).double().numpy()
    d_np = np.stack([decode_layers(fast, z) for z in mu_all[:4]])
    export_err = float(np.max(np.abs(d_np - d_torch)))
    log(f"exported decoder vs torch: max {export_err:.2e} dB")
    split_of = {}
    for s, ids in split.items():
        for i in ids:
            split_of[i] = s
    rooms = data["rooms"]
    tr = np.isin(data["room"], split["train"])
    lo, hi = mu_all[tr].min(axis=0), mu_all[tr].max(axis=0)
    margin = recipe["map"]["margin"] * (hi - lo)
    zmin, zmax = lo - margin, hi + margin

    # reference decay times of every IR (the room map's T30 and the test IRs' references)
    ref_path = run_dir / "reference_decay_v2.json"
    if ref_path.exists() and json.loads(ref_path.read_text())["n"] == len(data["room"]):
        ref = json.loads(ref_path.read_text())["ref"]
    else:
        log("reference T30/EDT of every IR")
        ref = []
        test_rooms = set(split["test"])
        for i in range(len(rooms)):
            irs, _ = load_room(workdir, i)
            for h in irs:
                if i in test_rooms:
                    ref.append(decay_times(h.astype(np.float64))
                               | {"brickwall": decay_times(h.astype(np.float64), shape="brickwall")})
                else:  # the map needs only the mid bands
                    mid_bands = decay_times(h.astype(np.float64), [500, 1000])
                    ref.append({m: [None, *v, None, None, None] for m, v in mid_bands.items()})
        ref_path.write_text(json.dumps({"n": len(ref), "ref": ref}))

    # test metrics: oracle (synthesis of the true D) and model (synthesis of decode(mu))
    rng = np.random.default_rng(recipe["evaluation"]["seed"])
    kinds = ("oracle", "model", "oracle_brickwall", "model_brickwall")
    errors = {k: {m: [[] for _ in OCTAVE_CENTRES] for m in TARGETS} for k in kinds}
    test_irs = []
    test_idx = np.flatnonzero(np.isin(data["room"], split["test"]))
    log(f"evaluating {len(test_idx)} test IRs")
    grid_err = []
    for n, i in enumerate(test_idx):
        d_true = data["d"][i].astype(np.float64)
        d_model = np.maximum(decode_layers(fast, mu_all[i]), floor)
        grid_err.append(rms_db(d_model, d_true))
        y_oracle = synthesize(d_true, interp, floor, rng)
        y_model = synthesize(d_model, interp, floor, rng)
        res = {"oracle": decay_times(y_oracle), "model": decay_times(y_model),
               "oracle_brickwall": decay_times(y_oracle, shape="brickwall"),
               "model_brickwall": decay_times(y_model, shape="brickwall")}
        for k in res:
            r_k = ref[i]["brickwall"] if k.endswith("brickwall") else ref[i]
            for m in TARGETS:
                for b in range(len(OCTAVE_CENTRES)):
                    errors[k][m][b].append(rel_error(res[k][m][b], r_k[m][b]))
        r = rooms[int(data["room"][i])]
        test_irs.append({"room": int(data["room"][i]), "position": int(data["pos"][i]),
                         "z": [float(v) for v in mu_all[i]],
                         "reference": {m: [None if v is None else round(v, 5) for v in ref[i][m]] for m in TARGETS},
                         "model_python": {m: [None if v is None else round(v, 5) for v in res["model"][m]]
                                          for m in TARGETS},
                         "room_parameters": {k: r[k] for k in ("dims_m", "volume_m3", "t60_design_s", "absorption",
                                                               "scattering", "source_m")}
                         | {"mic_m": r["mics_m"][int(data["pos"][i])]}})
    metrics = {k: summarise(errors[k]) for k in errors}
    metrics["grid_rms_db_test"] = {"mean": round(float(np.mean(grid_err)), 3),
                                   "median": round(float(np.median(grid_err)), 3)}

    # smoothness along two lines across the pad
    def line(a, b, n=64):
        zs = [a + (b - a) * s for s in np.linspace(0, 1, n)]
        g = [np.maximum(decode_layers(fast, z), floor) for z in zs]
        steps = [rms_db(g[j + 1], g[j]) for j in range(n - 1)]
        return {"from": [round(float(v), 4) for v in a], "to": [round(float(v), 4) for v in b],
                "mean_step_rms_db": round(float(np.mean(steps)), 4), "max_step_rms_db": round(float(np.max(steps)), 4),
                "end_to_end_rms_db": round(rms_db(g[0], g[-1]), 3)}

    mid = (lo + hi) / 2
    a2, b2 = mid.copy(), mid.copy()
    a2[0], b2[0] = lo[0], hi[0]
    prng = np.random.default_rng(1)
    train_rooms = np.array(split["train"])
    first_ir = {int(r): int(np.flatnonzero(data["room"] == r)[0]) for r in train_rooms}
    pairs = [prng.choice(train_rooms, 2, replace=False) for _ in range(1000)]
    pair_d = [rms_db(data["d"][first_ir[int(p)]].astype(np.float64), data["d"][first_ir[int(q)]].astype(np.float64))
              for p, q in pairs]
    smooth = {"diagonal": line(lo, hi), "middle_x": line(a2, b2),
              "random_train_room_pairs_rms_db": round(float(np.mean(pair_d)), 3)}
    log(f"smoothness: {json.dumps(smooth)}")

    # room map
    room_z = {}
    for i in range(len(rooms)):
        room_z[i] = mu_all[data["room"] == i].mean(axis=0)
    room_t30 = {}
    for i in range(len(rooms)):
        vals = [np.mean([ref[j]["t30"][1], ref[j]["t30"][2]]) for j in np.flatnonzero(data["room"] == i)
                if ref[j]["t30"][1] is not None and ref[j]["t30"][2] is not None]
        room_t30[i] = float(np.mean(vals)) if vals else None
    nx, ny = recipe["map"]["nx"], recipe["map"]["ny"]
    gx, gy = np.linspace(zmin[0], zmax[0], nx), np.linspace(zmin[1], zmax[1], ny)
    tz = np.array([room_z[i] for i in split["train"]])
    tv = np.array([rooms[i]["volume_m3"] for i in split["train"]])
    map_t30, map_vol = [], []
    mrng = np.random.default_rng(recipe["evaluation"]["seed"] + 1)
    for yv in gy:
        row_t, row_v = [], []
        for xv in gx:
            z = np.array([xv, yv] + ([] if cfg["latent_dims"] == 2 else [0.0] * (cfg["latent_dims"] - 2)))
            g = decode_layers(fast, z)
            dt = decay_times(synthesize(g, interp, floor, mrng), [500, 1000])["t30"]
            row_t.append(round(float(np.mean(dt)), 3) if None not in dt else None)
            dist = np.linalg.norm(tz[:, :2] - z[:2], axis=1)
            k = np.argsort(dist)[:recipe["map"]["idw_neighbours"]]
            wts = 1.0 / np.maximum(dist[k], 1e-9) ** 2
            row_v.append(round(float(np.sum(wts * tv[k]) / np.sum(wts)), 1))
        map_t30.append(row_t)
        map_vol.append(row_v)

    # default room: the training room whose mid-band T30 is nearest the recipe's
    want = recipe["map"]["default_t30_s"]
    cand = [i for i in split["train"] if room_t30[i] is not None]
    default_room = min(cand, key=lambda i: abs(room_t30[i] - want))
    default_z = room_z[default_room]

    model = {
        "format": FORMAT, "version": FORMAT_VERSION, "sample_rate": SAMPLE_RATE,
        "grid": {"n_fft": N_FFT, "hop": HOP, "frames": FRAMES, "band_edges_hz": [float(e) for e in edges]},
        "db_floor": float(floor),
        "latent": {"dims": cfg["latent_dims"], "min": [f32(v) for v in zmin], "max": [f32(v) for v in zmax],
                   "default": [f32(v) for v in default_z]},
        "decoder": layers,
        "map": {
            "rooms": [{"z": [f32(v) for v in room_z[i]],
                       "t30_mid_s": None if room_t30[i] is None else round(room_t30[i], 3),
                       "volume_m3": rooms[i]["volume_m3"], "split": split_of[i]} for i in range(len(rooms))],
            "grid": {"x": [f32(v) for v in gx], "y": [f32(v) for v in gy], "t30_mid_s": map_t30, "volume_m3": map_vol},
        },
        "metadata": {**recipe["metadata"], "date": datetime.date.today().isoformat(),
                     "default_room": default_room},
    }
    check_points = [default_z, zmin + 0.25 * (zmax - zmin), np.concatenate([zmax[:1], zmin[1:]])]
    check = {"format": FORMAT, "model": f"{name}.reverb.json", "tolerance_db": 1e-3,
             "note": "d_db is the decoder's output computed in float64 from the file's float32 weights, before the "
                     "engine's clamp to db_floor; d_db[b][t].",
             "points": [{"z": [f32(v) for v in z], "d_db": decode_layers(fast, np.array([f32(v) for v in z])).tolist()}
                        for z in check_points]}
    manifest = {
        "manifest_version": MANIFEST_VERSION, "name": recipe["metadata"]["name"], "file": f"{name}.reverb.json",
        "check_file": f"{name}.check.json", "recipe_name": name, "architecture": recipe["architecture"],
        "recipe": recipe,
        "commit": git_commit(["training/reverb"]), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} ({platform.system()}), torch {torch.__version__}, "
                   f"{torch.get_num_threads()} thread(s)",
        "pyroomacoustics": __import__("pyroomacoustics").__version__,
        "corpus": {"rooms": len(rooms), "irs": int(len(data["room"])), "ir_samples": IR_SAMPLES,
                   "sample_rate": SAMPLE_RATE, "parameters": recipe["rooms"],
                   "minutes": round(sum(r["seconds"] for r in rooms) / 60, 1),
                   "t30_mid_s_range": [round(min(v for v in room_t30.values() if v), 3),
                                       round(max(v for v in room_t30.values() if v), 3)],
                   "volume_m3_range": [min(r["volume_m3"] for r in rooms), max(r["volume_m3"] for r in rooms)]},
        "features": {"n_fft": N_FFT, "hop": HOP, "frames": FRAMES, "window": "periodic hann", "bands": n_bands,
                     "band_edges_hz": edges, "db_floor": floor},
        "split": {s: {"rooms": ids, "irs": int(np.sum(np.isin(data["room"], ids)))} for s, ids in split.items()},
        "training": {k: v for k, v in record.items()},
        "parameters": {"decoder": n_params(net.decoder), "encoder": n_params(net.encoder)},
        "export_vs_torch_max_db": export_err,
        "metrics": metrics,
        "smoothness": smooth,
        "targets": {"t30_relative": TARGETS["t30"], "edt_relative": TARGETS["edt"]},
        "evaluation": {"octave_centres_hz": OCTAVE_CENTRES, "synthesis_seed": recipe["evaluation"]["seed"],
                       "note": "model = synthesis (random phase, numpy's generator) of decode(z) clamped at db_floor; "
                               "oracle = synthesis of the true grid; relative error |x - ref| / ref; an undefined "
                               "model value (EDC never reaching the level) counts as a miss (infinite error)."},
        "test_irs": test_irs,
    }
    missed = [f"{m} {k}" for m in TARGETS for k, row in metrics["model"][m].items()
              if row["median"] is not None and row["median"] > TARGETS[m]]
    manifest["targets_missed_by_median"] = missed
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.reverb.json").write_text(json.dumps(model, separators=(",", ":")))
        (out_dir / f"{name}.check.json").write_text(json.dumps(check, separators=(",", ":")))
        (out_dir / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=1))
        log(f"wrote {out_dir}/{name}.reverb.json ({(out_dir / f'{name}.reverb.json').stat().st_size / 1e6:.2f} MB), "
            f"check and manifest")
    print(json.dumps({"metrics": metrics, "smoothness": smooth}, indent=1))
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/reverb-work"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    ap.add_argument("--evaluate", action="store_true", help="export and measure the saved checkpoint, no training")
    ap.add_argument("--experiment", action="store_true", help="train and measure, write nothing to --out-dir")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    edges = band_edges(recipe["features"]["bands"])
    member = band_membership(edges)
    floor = recipe["features"]["db_floor"]
    count = recipe["rooms"]["count"]
    data = load_corpus(args.workdir, count, member, floor)
    split = split_rooms(recipe["split"], count)
    log(f"{len(edges) - 1} bands, {len(data['room'])} IRs of {count} rooms; split (rooms): "
        + ", ".join(f"{k} {len(v)}" for k, v in split.items()))
    run_dir = args.workdir / f"run-{args.recipe}"
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pt"
    if args.evaluate:
        record = json.loads((run_dir / "training.json").read_text())
    else:
        record = train(torch, recipe, data, split, len(edges) - 1,
                       args.max_minutes or recipe["max_minutes"], ckpt)
        record["threads"] = args.threads
        (run_dir / "training.json").write_text(json.dumps(record, indent=1))
    evaluate_and_export(torch, args.recipe, recipe, data, split, edges, record, args.workdir, run_dir, args.out_dir,
                        write=not args.experiment)


if __name__ == "__main__":
    main()
