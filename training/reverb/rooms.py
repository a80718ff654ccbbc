#!/usr/bin/env python3
"""The reverb's room impulse-response corpus, simulated here with pyroomacoustics (no recorded IRs are used).

    python training/reverb/rooms.py RECIPE [--workdir DIR] [--first I] [--count N]

Room i of the recipe (i = 0 .. rooms.count - 1) is drawn from its own generator, numpy's
default_rng([rooms.seed, i]); pyroomacoustics' own generators (numpy's and libroom's, used by the ray tracer and
the ray-traced tail's Poisson noise) are seeded with pra.random.seed(rooms.seed * 100000 + i), so one room can be
simulated again alone and comes out the same on the same build. Each room is written to
WORKDIR/rooms/room_IIII.npz (irs: positions x IR_SAMPLES float32, and the room's parameters as JSON), so the
generation can be resumed and split across calls.

A room is a shoebox (pra.ShoeBox):
- volume V log-uniform over `volume_m3`; height V^(1/3) x U(height_ratio), clipped to `height_m`; length / width
  U(aspect).
- target mid-band reverberation time T log-uniform between lo(V) and hi(V) = `t60_lo` / `t60_hi` x (V / V0)^p,
  capped to `t60_s` (bigger rooms reverberate longer, but every size spans dry to live).
- absorption: the mean mid-band (500 Hz - 1 kHz) coefficient from Eyring, alpha = 1 - exp(-0.161 V / (S T)),
  then per octave band (125 Hz .. 8 kHz) alpha(f) = alpha_mid x (f / 1 kHz)^s_hi above 1 kHz (s_hi drawn from
  `hf_slope`: high frequencies are absorbed more, as by real materials) and x (f / 1 kHz)^(-s_lo) below it (s_lo
  from `lf_slope`: bass absorbed more or less); each of the six walls gets the same curve times its own factor
  exp(N(0, wall_spread)), normalised to an area-weighted mean of 1; clipped to `alpha_clip`. Air absorption
  (pyroomacoustics' 20 C / 50 % values) adds the high-frequency losses of a large hall. Scattering U(scattering).
- one source and `positions` microphones, uniformly inside with a margin to the walls, each microphone at least
  `min_distance_m` from the source.
- simulation (`simulator.method: hybrid`, the recipe's): pyroomacoustics' hybrid, image sources up to `ism_order`
  (3) for the early reflections, then ray tracing for the tail (receiver radius clip(rt_radius_per_m x V^(1/3)),
  rays enough for about `rt_target_hits` hits per histogram bin, clipped to `rt_rays`; rays followed down to
  `rt_energy_thres` or `rt_time_s`), 48 kHz, pyroomacoustics 0.10.1. (`method: ism` is image sources alone up to
  an order set by ism_order(); not used: at an affordable order, 45, the reflections of a mid-sized room with a
  low ceiling are complete only for its first 0.3 s, so its tail is cut short.)

Each IR is kept as simulated except the propagation delay: it starts `lead_samples` (1 ms) before its
direct-sound peak (the largest |h| within 4 ms of the geometric direct-path delay), and is cut or zero-padded to
IR_SAMPLES = 147456 (3.072 s). The reverb pedal's pre-delay knob makes the gap.
"""

from __future__ import annotations

import os

# numpy's BLAS on one thread: with the other core busy, its worker threads spin-wait (40x slower here)
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
from common import log  # noqa: E402

RECIPES = HERE / "recipes.json"
SAMPLE_RATE = 48000
IR_SAMPLES = 147456
OCTAVES = [125, 250, 500, 1000, 2000, 4000, 8000]
WALLS = ["east", "west", "north", "south", "floor", "ceiling"]


def load_recipe(name: str) -> dict:
    recipes = json.loads(RECIPES.read_text())["recipes"]
    if name not in recipes:
        sys.exit(f"unknown recipe {name!r}; known: {', '.join(recipes)}")
    return recipes[name]


def log_uniform(rng, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_room(cfg: dict, i: int) -> dict:
    """The parameters of room i, from default_rng([seed, i]) alone."""
    rng = np.random.default_rng([cfg["seed"], i])
    v = log_uniform(rng, *cfg["volume_m3"])
    h = float(np.clip(v ** (1 / 3) * rng.uniform(*cfg["height_ratio"]), *cfg["height_m"]))
    aspect = rng.uniform(*cfg["aspect"])
    w = math.sqrt(v / h / aspect)
    length = aspect * w
    dims = [round(length, 3), round(w, 3), round(h, 3)]
    v = dims[0] * dims[1] * dims[2]
    s_area = 2 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    v0, p_lo, p_hi = cfg["t60_v0_m3"], cfg["t60_lo"][1], cfg["t60_hi"][1]
    lo = max(cfg["t60_s"][0], cfg["t60_lo"][0] * (v / v0) ** p_lo)
    hi = min(cfg["t60_s"][1], cfg["t60_hi"][0] * (v / v0) ** p_hi)
    t60 = log_uniform(rng, lo, max(hi, lo * 1.01))
    alpha_mid = 1.0 - math.exp(-0.161 * v / (s_area * t60))
    s_hi = rng.uniform(*cfg["hf_slope"])
    s_lo = rng.uniform(*cfg["lf_slope"])
    curve = [alpha_mid * ((f / 1000) ** s_hi if f >= 1000 else (f / 1000) ** (-s_lo)) for f in OCTAVES]
    wall_area = {"east": dims[1] * dims[2], "west": dims[1] * dims[2], "north": dims[0] * dims[2],
                 "south": dims[0] * dims[2], "floor": dims[0] * dims[1], "ceiling": dims[0] * dims[1]}
    factors = np.exp(rng.normal(0.0, cfg["wall_spread"], len(WALLS)))
    factors /= sum(factors[j] * wall_area[wl] for j, wl in enumerate(WALLS)) / s_area
    lo_a, hi_a = cfg["alpha_clip"]
    walls = {wl: [round(float(np.clip(c * factors[j], lo_a, hi_a)), 4) for c in curve] for j, wl in enumerate(WALLS)}
    scattering = round(rng.uniform(*cfg["scattering"]), 3)
    margin = min(cfg["margin_m"], 0.25 * min(dims))
    lo_p, hi_p = np.full(3, margin), np.array(dims) - margin
    hi_p[2] = min(hi_p[2], max(cfg["max_height_m"], lo_p[2] + 0.1))
    source = rng.uniform(lo_p, hi_p)
    mics = []
    while len(mics) < cfg["positions"]:
        m = rng.uniform(lo_p, hi_p)
        if np.linalg.norm(m - source) >= min(cfg["min_distance_m"], 0.3 * max(dims)):
            mics.append(m)
    return {"id": i, "dims_m": dims, "volume_m3": round(v, 2), "surface_m2": round(s_area, 2),
            "t60_design_s": round(t60, 4), "alpha_mid": round(alpha_mid, 4), "hf_slope": round(float(s_hi), 4),
            "lf_slope": round(float(s_lo), 4), "absorption": walls, "scattering": scattering,
            "source_m": [round(float(x), 3) for x in source],
            "mics_m": [[round(float(x), 3) for x in m] for m in mics]}


def simulate(cfg: dict, room: dict) -> np.ndarray:
    """The room's IRs (positions x IR_SAMPLES, float32), each starting lead_samples before its direct sound."""
    import pyroomacoustics as pra

    pra.random.seed(cfg["seed"] * 100000 + room["id"])
    mats = {wl: pra.Material({"description": wl, "coeffs": room["absorption"][wl], "center_freqs": OCTAVES},
                             room["scattering"]) for wl in WALLS}
    v = room["volume_m3"]
    sim = cfg["simulator"]
    order = ism_order(sim, room)
    hybrid = sim["method"] == "hybrid"
    r = pra.ShoeBox(room["dims_m"], fs=SAMPLE_RATE, materials=mats, max_order=order,
                    air_absorption=sim["air_absorption"], ray_tracing=hybrid, use_rand_ism=False)
    room["ism_order"] = order
    if hybrid:
        radius = float(np.clip(sim["rt_radius_per_m"] * v ** (1 / 3), *sim["rt_radius_m"]))
        k1 = v / (math.pi * radius**2 * r.c * sim["rt_hist_bin_s"])
        n_rays = int(np.clip(sim["rt_target_hits"] * k1, *sim["rt_rays"]))
        r.set_ray_tracing(n_rays=n_rays, receiver_radius=radius, energy_thres=sim["rt_energy_thres"],
                          time_thres=sim["rt_time_s"], hist_bin_size=sim["rt_hist_bin_s"])
        room["rt_radius_m"], room["rt_rays"] = round(radius, 3), n_rays
    r.add_source(room["source_m"])
    r.add_microphone_array(np.array(room["mics_m"]).T)
    r.compute_rir()
    out = np.zeros((len(room["mics_m"]), IR_SAMPLES), np.float32)
    lead = cfg["lead_samples"]
    fdl = pra.constants.get("frac_delay_length")
    for j, mic in enumerate(room["mics_m"]):
        h = np.asarray(r.rir[j][0], np.float64)
        dist = float(np.linalg.norm(np.array(mic) - np.array(room["source_m"])))
        expect = int(round(dist / r.c * SAMPLE_RATE)) + fdl // 2
        w = int(0.004 * SAMPLE_RATE)
        a, b = max(0, expect - w), min(len(h), expect + w)
        peak = a + int(np.argmax(np.abs(h[a:b])))
        start = peak - lead
        seg = h[max(start, 0):start + IR_SAMPLES]
        pad = max(0, -start)
        out[j, pad:pad + len(seg)] = seg[:IR_SAMPLES - pad]
    return out


def ism_order(sim: dict, room: dict) -> int:
    """The image-source order: with `method: ism`, enough for the reflections to be complete up to
    `complete_fraction` x the design T60 (capped at the IR's length): an image of order N lies at least
    N / (1/Lx + 1/Ly + 1/Lz) away, so every image arriving before t has order <= t c (1/Lx + 1/Ly + 1/Lz); clipped
    to `ism_order` (a cost cap)."""
    if sim["method"] == "hybrid":
        return int(sim["ism_order"])
    t = sim["complete_fraction"] * min(room["t60_design_s"], IR_SAMPLES / SAMPLE_RATE)
    n = math.ceil(t * 343.0 * sum(1.0 / x for x in room["dims_m"]))
    return int(np.clip(n, sim["ism_order_min"], sim["ism_order"]))


def room_path(workdir: Path, i: int) -> Path:
    return workdir / "rooms" / f"room_{i:04d}.npz"


def load_room(workdir: Path, i: int) -> tuple[np.ndarray, dict]:
    with np.load(room_path(workdir, i)) as z:
        return z["irs"], json.loads(str(z["params"]))


def generate(cfg: dict, workdir: Path, first: int, count: int, deadline: float | None = None) -> None:
    (workdir / "rooms").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = 0
    for i in range(first, min(first + count, cfg["count"])):
        path = room_path(workdir, i)
        if path.exists():
            continue
        if deadline and time.time() > deadline:
            log(f"deadline reached before room {i}")
            break
        t = time.time()
        room = draw_room(cfg, i)
        irs = simulate(cfg, room)
        room["seconds"] = round(time.time() - t, 2)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, irs=irs, params=json.dumps(room))
        tmp.rename(path)
        done += 1
        if done % 10 == 0 or done <= 3:
            log(f"room {i}: V {room['volume_m3']:.0f} m3, T60 design {room['t60_design_s']:.2f} s, "
                f"{room['seconds']:.1f} s; {done} rooms in {(time.time() - t0) / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/reverb-work"))
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=10**9)
    ap.add_argument("--minutes", type=float, default=None, help="stop starting rooms after this long")
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore", message="The number of rays")
    cfg = load_recipe(args.recipe)["rooms"]
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    generate(cfg, args.workdir, args.first, args.count, deadline)


if __name__ == "__main__":
    main()
