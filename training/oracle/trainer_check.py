#!/usr/bin/env python3
"""Cross-check the numpy oracle against the official trainer's PyTorch forward pass.

For every fixture (and, for slimmable fixtures, at slim ratio 0.25 too) the test input of
make_reference_renders.py is run through
  * nam_numpy (accurate tanh, reference prewarm, blocks of 64), and
  * the trainer's model (PyPI neural-amp-modeler 0.13.0, eval mode, float32, torch 1 thread):
      WaveNet: zeros prepended (>= receptive field) so the "valid" convolutions see the same
               silent history the prewarmed reference has; the last len(x) outputs are kept.
      LSTM:    the same number of prewarm zeros the oracle uses, then the input, in one pass
               starting from the file's h0/c0.
and the ESR between the two is reported. Results go to trainer_check.json (used by
make_reference_renders.py for the manifest) and are printed as a table.

How each fixture reaches the trainer (the trainer's own `nam.models.init_from_nam` loads only
lstm.nam as-is; see README.md):
  * legacy layer-array keys (head_size/head_bias, gated, single activation) are rewritten into
    the trainer's current keys (head{out_channels,kernel_size:1,bias}, gating_mode,
    per-layer activation lists) -- config only, the weight stream is untouched;
  * activations are then replaced by the trainer's own activation modules built with the
    file's parameters (its loader cannot build paired activations with parameters, and it never
    imports PReLU slopes, which live in the config, not in the weights);
  * condition_dsp is ignored by the trainer's loader, so it is built the same way and attached
    as the trainer WaveNet's `_condition_dsp`, with its own weights;
  * SlimmableContainer has no trainer loader: its submodels are loaded individually (the one the
    oracle selects for the ratio);
  * slimmable WaveNets use the trainer's set_slimming(ratio).

Usage: python trainer_check.py [--fixtures DIR]
"""

from __future__ import annotations

import argparse
import copy
import glob
import hashlib
import json
import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_reference_renders as mrr  # noqa: E402
import nam_numpy as nn  # noqa: E402

from nam.models import init_from_nam  # noqa: E402
from nam.models import _activations as tact  # noqa: E402
from nam.models._from_nam import _convert_nam_layer_array_config  # noqa: E402
from nam.models.wavenet._wavenet import WaveNet as TWaveNet  # noqa: E402

OUT_JSON = os.path.join(HERE, "trainer_check.json")


# ---------------------------------------------------------------------------------------------
# .nam -> trainer model
# ---------------------------------------------------------------------------------------------

def _per_layer(v, n):
    return list(v) if isinstance(v, list) else [v] * n


def normalize_layer_array(la: dict) -> dict:
    """Rewrite legacy keys into the trainer's current .nam keys (no change in meaning)."""
    la = copy.deepcopy(la)
    n = len(la["dilations"])
    if "head" not in la or not isinstance(la.get("head"), dict):
        la["head"] = {"out_channels": la.pop("head_size"), "kernel_size": 1,
                      "bias": bool(la.pop("head_bias", False))}
    else:
        la["head"] = {k: la["head"][k] for k in ("out_channels", "kernel_size", "bias")}
    if "kernel_size" in la:
        la["kernel_sizes"] = _per_layer(la.pop("kernel_size"), n)
    if "gating_mode" in la:
        gm = _per_layer(la.pop("gating_mode"), n)
    else:
        gm = ["gated" if la.get("gated", False) else "none"] * n
    la.pop("gated", None)
    la["gating_mode"] = gm
    acts = _per_layer(la.pop("activation"), n)
    secs = _per_layer(la.pop("secondary_activation", None), n)
    # placeholders with the right pairing (decides the conv width); replaced after construction
    la["activation"] = ["Tanh"] * n
    la["secondary_activation"] = ["Sigmoid" if g != "none" else None for g in gm]
    la["_real_activations"] = (acts, gm, [s if s not in (None, "") else "Sigmoid" for s in secs])
    return la


def trainer_activation(spec) -> torch.nn.Module:
    """Trainer activation module with the file's parameters."""
    if isinstance(spec, str):
        spec = {"type": spec}
    spec = dict(spec)
    name = spec.pop("type")
    if name == "LeakyHardTanh":
        name = "LeakyHardtanh"
    if name == "PReLU":
        slopes = spec.get("negative_slopes", [spec.get("negative_slope", 0.01)])
        mod = torch.nn.PReLU(num_parameters=len(slopes))
        mod.weight.data = torch.tensor(slopes, dtype=torch.float32)
        return mod
    if name == "Fasttanh":
        raise NotImplementedError("the trainer has no Fasttanh activation")
    return tact.get_activation({"name": name, **spec})


def build_trainer_wavenet(nam: dict, import_weights: bool = True) -> TWaveNet:
    cfg = nam["config"]
    norm = [normalize_layer_array(la) for la in cfg["layers"]]
    real = [la.pop("_real_activations") for la in norm]
    layer_cfgs = [_convert_nam_layer_array_config(la) for la in norm]
    net = TWaveNet.init_from_config({"layers_configs": layer_cfgs, "head": cfg.get("head"),
                                     "head_scale": cfg["head_scale"]})
    for arr, (acts, gm, secs) in zip(net._layer_arrays, real):
        for layer, a, g, s in zip(arr._layers, acts, gm, secs):
            prim = trainer_activation(a)
            if g == "none":
                layer._activation = prim
            else:
                pair = tact.PairMultiply if g == "gated" else tact.PairBlend
                layer._activation = pair(primary=prim, secondary=trainer_activation(s))
    if import_weights:
        n_used = net.import_weights(torch.tensor(nam["weights"], dtype=torch.float32), 0)
        if n_used != len(nam["weights"]):
            raise ValueError(f"trainer consumed {n_used} of {len(nam['weights'])} weights")
    if cfg.get("condition_dsp") is not None:
        inner = cfg["condition_dsp"]
        if inner["architecture"] != "WaveNet":
            raise NotImplementedError("trainer supports only WaveNet condition_dsp")
        net._condition_dsp = build_trainer_wavenet(inner, import_weights)
    net.eval()
    return net


def trainer_render_wavenet(net: TWaveNet, x: np.ndarray) -> np.ndarray:
    pad = net.receptive_field + 64
    xp = np.concatenate([np.zeros(pad, np.float32), x]).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(xp)[None, None, :])
    y = y[0, 0].numpy()
    assert len(y) >= len(x)
    return y[-len(x):].astype(np.float32)


def trainer_render_lstm(nam: dict, x: np.ndarray, prewarm: int) -> np.ndarray:
    model = init_from_nam(copy.deepcopy(nam))
    model.eval()
    xp = np.concatenate([np.zeros(prewarm, np.float32), x]).astype(np.float32)
    with torch.no_grad():
        y = model._forward(torch.from_numpy(xp)[None, :])
    return y[0].numpy()[-len(x):].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Per fixture
# ---------------------------------------------------------------------------------------------

def try_raw_init(nam):
    try:
        init_from_nam(copy.deepcopy(nam))
        return "loads as-is"
    except Exception as e:  # noqa: BLE001 - reported
        return f"init_from_nam fails as-is: {type(e).__name__}: {str(e)[:90]}"


def check_one(path, slim, x):
    nam = json.load(open(path))
    raw = try_raw_init(nam)
    oracle, y_ref, prewarm = mrr.oracle_render(path, slim, "accurate", x)
    notes = [raw]
    target = nam
    inner = oracle
    if isinstance(oracle, nn.SlimmableContainer):
        sub = nam["config"]["submodels"]
        sub = sorted(sub, key=lambda s: float(s["max_value"]))[oracle.active]
        target = sub["model"]
        inner = oracle.model
        notes.append(f"container: submodel {oracle.active} (max_value {sub['max_value']}, "
                     f"{target['architecture']}) loaded on its own")
    arch = target["architecture"]
    extra = {}
    if arch == "LSTM":
        y_tr = trainer_render_lstm(target, x, prewarm)
        notes.append(f"LSTM: {prewarm} prewarm zeros then input, from h0/c0")
    elif arch == "WaveNet":
        legacy = any("head_size" in la or "gated" in la for la in target["config"]["layers"])
        if legacy:
            notes.append("legacy keys normalized")
        if target["config"].get("condition_dsp") is not None:
            notes.append("condition_dsp attached by hand")
        net = build_trainer_wavenet(target)
        if isinstance(inner, nn.WaveNet) and inner.is_slimmable() and slim is not None:
            net.set_slimming(slim)
            notes.append(f"trainer set_slimming({slim})")
        y_tr = trainer_render_wavenet(net, x)
        uses_l1_post = any(nn._film_cfg(la.get("layer1x1_post_film")) is not None and
                           any(g != "blended" for g in _per_layer(la.get("gating_mode", "none"),
                                                                  len(la["dilations"])))
                           for la in _all_layer_arrays(target))
        if uses_l1_post:
            # The trainer applies layer1x1_post_film in every gating mode (= upstream PR #322);
            # compare that too, with the oracle switched to the same rule.
            saved = nn.LAYER1X1_POST_FILM_ONLY_BLENDED
            nn.LAYER1X1_POST_FILM_ONLY_BLENDED = False
            try:
                _, y_pr322, _ = mrr.oracle_render(path, slim, "accurate", x)
            finally:
                nn.LAYER1X1_POST_FILM_ONLY_BLENDED = saved
            extra["esr_vs_oracle_pr322_rule"] = nn.esr(y_pr322, y_tr)
            extra["esr_ac_vs_oracle_pr322_rule"] = mrr.esr_ac(y_pr322, y_tr)
            extra["esr_daae2d0_vs_pr322_oracle"] = nn.esr(y_pr322, y_ref)
            notes.append("trainer applies layer1x1_post_film in all gating modes (PR #322 rule); "
                         "the daae2d0 render differs from it by design")
    else:
        return {"esr": None, "note": f"{arch}: no trainer counterpart"}
    e = nn.esr(y_ref, y_tr)
    return {"esr": e, "esr_ac": mrr.esr_ac(y_ref, y_tr), "max_abs_diff": float(np.max(np.abs(y_ref - y_tr))),
            "note": "; ".join(notes), **extra}


# ---------------------------------------------------------------------------------------------
# Synthetic models: features no fixture has (weights = the trainer's own seeded random init,
# exported through its export_weights, then loaded by the oracle from the .nam dict)
# ---------------------------------------------------------------------------------------------

def _synthetic_models():
    post_head = {
        "version": "0.7.0", "architecture": "WaveNet", "sample_rate": 48000,
        "config": {"layers": [
            {"input_size": 1, "condition_size": 1, "head": {"out_channels": 3, "kernel_size": 1, "bias": False},
             "channels": 3, "kernel_sizes": [3, 3], "dilations": [1, 2], "activation": "Tanh",
             "gating_mode": "none"},
            {"input_size": 3, "condition_size": 1, "head": {"out_channels": 2, "kernel_size": 2, "bias": True},
             "channels": 3, "kernel_sizes": [2], "dilations": [4], "activation": "Hardtanh",
             "gating_mode": "none"}],
            "head": {"channels": 4, "activation": "Tanh", "out_channels": 1, "kernel_sizes": [3, 2]},
            "head_scale": 0.5},
        "weights": None}
    gated_slim = {
        "version": "0.7.0", "architecture": "WaveNet", "sample_rate": 48000,
        "config": {"layers": [
            {"input_size": 1, "condition_size": 1, "head": {"out_channels": 1, "kernel_size": 1, "bias": True},
             "channels": 4, "kernel_sizes": [3, 2, 3], "dilations": [1, 3, 7],
             "activation": ["Tanh", "ReLU", "Tanh"], "gating_mode": ["gated", "blended", "none"],
             "secondary_activation": ["Sigmoid", "Sigmoid", None],
             "slimmable": {"method": "slice_channels_uniform", "kwargs": {"allowed_channels": [1, 2, 4]}}}],
            "head": None, "head_scale": 0.3},
        "weights": None}
    return [("synthetic post-stack head (2 arrays, head K=2 rechannel, post head [3,2])", post_head, [None]),
            ("synthetic gated/blended slimmable array", gated_slim, [None, 0.25, 0.5])]


def synthetic_checks(x):
    out = []
    for i, (label, doc, ratios) in enumerate(_synthetic_models()):
        torch.manual_seed(1000 + i)
        net = build_trainer_wavenet(doc, import_weights=False)
        w = net.export_weights()
        # trainer init is small; make the nonlinearities work a bit harder
        w[:-1] *= 2.0
        doc = dict(doc, weights=[float(v) for v in w])
        net = build_trainer_wavenet(doc)
        for r in ratios:
            m = nn.load_nam(doc)
            if r is not None:
                m.set_slim(r)
                net.set_slimming(r)
            elif m.is_slimmable():
                net.set_slimming(1.0)
            y_ref, _ = nn.render(m, x, block_size=mrr.BLOCK_SIZE)
            y_tr = trainer_render_wavenet(net, x)
            e = nn.esr(y_ref, y_tr)
            out.append({"model": label, "slim_ratio": r, "esr": e, "esr_ac": mrr.esr_ac(y_ref, y_tr),
                        "output_rms": float(np.sqrt(np.mean(y_ref.astype(np.float64) ** 2)))})
            print(f"{label:75s} slim={str(r):5s} ESR = {e:.3e}")
    return out


def _all_layer_arrays(nam):
    out = list(nam["config"]["layers"])
    if nam["config"].get("condition_dsp") is not None:
        out += _all_layer_arrays(nam["config"]["condition_dsp"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=mrr.DEFAULT_FIXTURES)
    args = ap.parse_args(argv)
    x = mrr.make_test_input()
    import nam
    results = []
    for path, slim in mrr.render_jobs(args.fixtures):
        fx = os.path.basename(path)
        try:
            r = check_one(path, slim, x)
        except Exception as e:  # noqa: BLE001 - reported
            r = {"esr": None, "note": f"trainer could not run it: {type(e).__name__}: {e}"}
        r = {"fixture": fx, "slim_ratio": slim, **r}
        results.append(r)
        esr_s = "n/a" if r["esr"] is None else f"{r['esr']:.3e}"
        esr_ac = "" if r["esr"] is None else f"(AC {r['esr_ac']:.1e})"
        print(f"{fx:28s} slim={str(slim):5s} ESR(oracle accurate vs trainer) = {esr_s:10s} {esr_ac:11s} {r['note']}")
        for k in ("esr_vs_oracle_pr322_rule", "esr_ac_vs_oracle_pr322_rule", "esr_daae2d0_vs_pr322_oracle"):
            if k in r:
                print(f"{'':36s} {k} = {r[k]:.3e}")
    synthetic = synthetic_checks(x)
    out = {"trainer": f"neural-amp-modeler {nam.__version__}", "torch": torch.__version__,
           "numpy": np.__version__,
           "input_sha256": hashlib.sha256(x.astype("<f4").tobytes()).hexdigest(),
           "oracle_tanh_mode": "accurate", "block_size": mrr.BLOCK_SIZE, "results": results,
           "synthetic": synthetic}
    with open(OUT_JSON, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    main()
