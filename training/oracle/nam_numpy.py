#!/usr/bin/env python3
"""Independent numpy oracle for Neural Amp Modeler (.nam) models.

Written from /work/shared/NAM_FORMAT.md (which describes NeuralAmpModelerCore @ daae2d0) only.
All arithmetic is float32: every array is float32 and every constant is a np.float32, so each
intermediate is rounded to float32 exactly like the reference's float math (up to summation order
inside matrix products, which the reference leaves to Eigen).

Public API
----------
    model = load_nam(path_or_dict, tanh_mode="accurate" | "fast")
    model.set_slim(ratio)                  # SlimmableContainer / slimmable WaveNet arrays
    n = model.reset(block_size=64)         # zero state + reference prewarm; returns prewarm samples
    y = model.process(x)                   # x: 1-D float32 block -> 1-D float32 block (state carries)
    y = render(model, x, block_size=64)    # reset (with prewarm) then process x in blocks

Everything is causal, so processing in blocks gives the same result as one long pass (the only
block-position dependence the spec describes is PReLU with a slope count that differs from the
row count, see PReLU below; no fixture uses that).

Run `python nam_numpy.py --selftest` for hand-computed checks.
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np

F32 = np.float32

# ---------------------------------------------------------------------------------------------
# Reference quirks, kept as named constants
# ---------------------------------------------------------------------------------------------

# At NeuralAmpModelerCore daae2d0 the `layer1x1_post_film` FiLM is applied to layer1x1(z) ONLY in
# layers whose gating mode is "blended"; for "none" and "gated" layers its weights are still read
# from the weight stream (so the count matches) but the FiLM is not applied. Open upstream PR #322
# (36f9e2b) applies it for every gating mode. Of the fixtures only wavenet_a2_max.nam is affected.
# Set to False to emulate PR #322.
LAYER1X1_POST_FILM_ONLY_BLENDED = True

# Supported file versions (NAM/version.h 0.5.5): 0.5.0 <= v <= 0.7.0 fully, 0.7.x (x >= 1)
# "partial" (warning, still loads); < 0.5.0, major >= 1 or minor >= 8 rejected.
VERSION_MIN = (0, 5, 0)
VERSION_FULL_MAX = (0, 7, 0)

# LSTM prewarm: int(0.5 * sample_rate) samples; 1 when the sample rate is unknown.
LSTM_PREWARM_SECONDS = 0.5


class NamError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# Version
# ---------------------------------------------------------------------------------------------

def check_version(v) -> str:
    """Returns "full" or "partial"; raises NamError for rejected versions."""
    if not isinstance(v, str):
        raise NamError(f"version must be a string, got {v!r}")
    parts = v.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise NamError(f"version {v!r} is not MAJOR.MINOR.PATCH")
    t = tuple(int(p) for p in parts)
    if t[0] >= 1 or t[1] >= 8 or t < VERSION_MIN:
        raise NamError(f"unsupported version {v}")
    if t > VERSION_FULL_MAX:
        warnings.warn(f"model version {v} is newer than {'.'.join(map(str, VERSION_FULL_MAX))}: partial support")
        return "partial"
    return "full"


# ---------------------------------------------------------------------------------------------
# Weight stream
# ---------------------------------------------------------------------------------------------

class WeightReader:
    def __init__(self, weights):
        # JSON numbers are doubles; the reference casts each to float.
        self.w = np.asarray(weights, dtype=np.float64).astype(F32)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > len(self.w):
            raise NamError(f"weight stream too short: need {self.pos + n}, have {len(self.w)}")
        out = self.w[self.pos:self.pos + n].copy()
        self.pos += n
        return out

    def remaining(self) -> int:
        return len(self.w) - self.pos


# ---------------------------------------------------------------------------------------------
# Activations (spec §2) and fast tanh (§6)
# ---------------------------------------------------------------------------------------------

_FT_A = F32(2.45550750702956)
_FT_B = F32(0.893229853513558)
_FT_C = F32(0.821226666969744)
_FT_D = F32(2.44506634652299)
_FT_E = F32(0.814642734961073)


def fast_tanh(x: np.ndarray) -> np.ndarray:
    """§6: x*(a + a|x| + (b + c|x|)x^2) / (d + (d + x^2)*|x + e*x*|x||), evaluated in float32."""
    x = np.asarray(x, dtype=F32)
    ax = np.abs(x)
    x2 = x * x
    num = x * (_FT_A + _FT_A * ax + (_FT_B + _FT_C * ax) * x2)
    den = _FT_D + (_FT_D + x2) * np.abs(x + _FT_E * x * ax)
    return (num / den).astype(F32)


def fast_sigmoid(x: np.ndarray) -> np.ndarray:
    """0.5 * (fast_tanh(x / 2) + 1)."""
    x = np.asarray(x, dtype=F32)
    return (F32(0.5) * (fast_tanh(x * F32(0.5)) + F32(1.0))).astype(F32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    return (F32(1.0) / (F32(1.0) + np.exp(-x))).astype(F32)


def accurate_tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(np.asarray(x, dtype=F32)).astype(F32)


class Activation:
    """Elementwise activation applied to a (channels x frames) float32 block."""

    def __init__(self, name, fn, slopes=None):
        self.name = name
        self._fn = fn
        self.slopes = slopes  # PReLU only

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self._fn(x)
        assert y.dtype == F32, (self.name, y.dtype)
        return y

    def __repr__(self):
        return f"Activation({self.name})"


def _prelu_fn(slopes: np.ndarray):
    n = len(slopes)

    def fn(x):
        rows, frames = x.shape
        if n == rows:
            s = slopes[:, None]
        else:
            # Spec: slope index = flat index mod n over the column-major (channels x frames)
            # block being processed, i.e. (t*rows + r) mod n with t relative to the block start.
            flat = np.arange(frames)[None, :] * rows + np.arange(rows)[:, None]
            s = slopes[flat % n]
        return np.where(x > 0, x, x * s).astype(F32)

    return fn


def make_activation(spec, tanh_mode: str = "accurate") -> Activation:
    """spec: a name string or {"type": name, params...}. tanh_mode "fast" swaps only "Tanh"."""
    if isinstance(spec, dict):
        name = spec.get("type")
        params = spec
    else:
        name = spec
        params = {}
    if not isinstance(name, str) or name == "":
        raise NamError(f"bad activation {spec!r}")

    if name == "Tanh":
        return Activation("Tanh(fast)" if tanh_mode == "fast" else "Tanh",
                          fast_tanh if tanh_mode == "fast" else accurate_tanh)
    if name == "Fasttanh":
        return Activation("Fasttanh", fast_tanh)
    if name == "Hardtanh":
        return Activation(name, lambda x: np.clip(x, F32(-1.0), F32(1.0)).astype(F32))
    if name == "ReLU":
        return Activation(name, lambda x: np.maximum(x, F32(0.0)).astype(F32))
    if name == "LeakyReLU":
        slope = F32(params.get("negative_slope", 0.01))
        return Activation(f"LeakyReLU({slope})", lambda x: np.where(x > 0, x, x * slope).astype(F32))
    if name == "PReLU":
        if "negative_slopes" in params:
            slopes = np.asarray(params["negative_slopes"], dtype=np.float64).astype(F32)
        else:
            slopes = np.asarray([params.get("negative_slope", 0.01)], dtype=np.float64).astype(F32)
        return Activation(f"PReLU({list(slopes)})", _prelu_fn(slopes), slopes)
    if name == "Sigmoid":
        return Activation(name, sigmoid)
    if name == "SiLU":
        return Activation(name, lambda x: (x * sigmoid(x)).astype(F32))
    if name == "Hardswish":
        return Activation(name, lambda x: (x * np.clip(x + F32(3.0), F32(0.0), F32(6.0)) / F32(6.0)).astype(F32))
    if name in ("LeakyHardtanh", "LeakyHardTanh"):
        lo = F32(params.get("min_val", -1.0))
        hi = F32(params.get("max_val", 1.0))
        slo = F32(params.get("min_slope", 0.01))
        shi = F32(params.get("max_slope", 0.01))

        def lht(x):
            y = np.where(x < lo, (x - lo) * slo + lo, x)
            y = np.where(x > hi, (x - hi) * shi + hi, y)
            return y.astype(F32)

        return Activation(f"LeakyHardtanh({lo},{hi},{slo},{shi})", lht)
    if name == "Softsign":
        return Activation(name, lambda x: (x / (F32(1.0) + np.abs(x))).astype(F32))
    raise NamError(f"unknown activation {name!r}")


# ---------------------------------------------------------------------------------------------
# Building blocks (spec §2)
# ---------------------------------------------------------------------------------------------

class Conv1x1:
    """y[:, t] = W x[:, t] (+ b). W is block-diagonal for groups > 1 (stored dense with zeros)."""

    def __init__(self, cin, cout, bias, groups, wr: WeightReader):
        groups = int(groups)
        if groups < 1 or cin % groups or cout % groups:
            raise NamError(f"Conv1x1 {cin}->{cout}: groups {groups} must divide both")
        self.cin, self.cout, self.groups, self.has_bias = cin, cout, groups, bool(bias)
        ig, og = cin // groups, cout // groups
        W = np.zeros((cout, cin), dtype=F32)
        for g in range(groups):
            for i in range(og):
                for j in range(ig):
                    W[g * og + i, g * ig + j] = wr.take(1)[0]
        self.W = W
        self.b = wr.take(cout) if bias else None

    def __call__(self, x):
        assert x.dtype == F32 and x.shape[0] == self.cin, (x.dtype, x.shape, self.cin)
        y = self.W @ x
        if self.b is not None:
            y = y + self.b[:, None]
        return y.astype(F32)


class Conv1D:
    """Causal dilated conv: y[:, t] = b + sum_k W_k x[:, t - d*(K-1-k)]; tap K-1 = current sample.

    Keeps the last d*(K-1) input frames as state (zero-filled on reset)."""

    def __init__(self, cin, cout, K, bias, dilation, groups, wr: WeightReader):
        groups = int(groups)
        if groups < 1 or cin % groups or cout % groups:
            raise NamError(f"Conv1D {cin}->{cout}: groups {groups} must divide both")
        if K < 1 or dilation < 1:
            raise NamError(f"Conv1D bad kernel {K} / dilation {dilation}")
        self.cin, self.cout, self.K, self.d, self.groups = cin, cout, int(K), int(dilation), groups
        ig, og = cin // groups, cout // groups
        W = np.zeros((self.K, cout, cin), dtype=F32)  # W[k] is the matrix of tap k
        for g in range(groups):
            for i in range(og):
                for j in range(ig):
                    W[:, g * og + i, g * ig + j] = wr.take(self.K)
        self.W = W
        self.b = wr.take(cout) if bias else None
        self.hist_len = self.d * (self.K - 1)
        self.reset()

    def reset(self):
        self.hist = np.zeros((self.cin, self.hist_len), dtype=F32)

    def __call__(self, x):
        assert x.dtype == F32 and x.shape[0] == self.cin, (x.dtype, x.shape, self.cin)
        T = x.shape[1]
        xx = np.concatenate([self.hist, x], axis=1)
        H = self.hist_len
        y = np.zeros((self.cout, T), dtype=F32)
        for k in range(self.K):
            off = H - self.d * (self.K - 1 - k)
            y = y + self.W[k] @ xx[:, off:off + T]
        if self.b is not None:
            y = y + self.b[:, None]
        if H > 0:
            self.hist = xx[:, xx.shape[1] - H:].copy()
        return y.astype(F32)


class FiLM:
    """FiLM(cond_dim, dim, shift, groups): Conv1x1(cond -> (shift?2:1)*dim, bias) on the condition;
    out = x * scale (+ shift)."""

    def __init__(self, cond_dim, dim, shift, groups, wr):
        self.dim, self.shift = dim, bool(shift)
        self.conv = Conv1x1(cond_dim, (2 if shift else 1) * dim, True, groups, wr)

    def __call__(self, x, c):
        assert x.shape[0] == self.dim
        ss = self.conv(c)
        y = x * ss[:self.dim]
        if self.shift:
            y = y + ss[self.dim:]
        return y.astype(F32)


# ---------------------------------------------------------------------------------------------
# DSP base
# ---------------------------------------------------------------------------------------------

class DSP:
    in_channels = 1
    out_channels = 1
    sample_rate = None  # None = unknown (-1 in the reference)

    def prewarm_samples(self) -> int:
        return 0

    def reset_state(self):
        raise NotImplementedError

    def process_block(self, x: np.ndarray) -> np.ndarray:
        """x: (in_channels, T) float32 -> (out_channels, T) float32."""
        raise NotImplementedError

    def set_slim(self, ratio: float):
        raise NamError(f"{type(self).__name__} is not slimmable")

    def is_slimmable(self) -> bool:
        return False

    # -- reference Reset(): zero state, then prewarm by processing zeros in whole blocks until
    #    at least prewarm_samples() have been processed.
    def reset(self, block_size: int = 64, prewarm: bool = True) -> int:
        self.reset_state()
        if not prewarm:
            return 0
        P = self.prewarm_samples()
        done = 0
        zeros = np.zeros((self.in_channels, block_size), dtype=F32)
        while done < P:
            self.process_block(zeros)
            done += block_size
        return done

    def process(self, x) -> np.ndarray:
        """1-D mono convenience wrapper around process_block."""
        x = np.asarray(x, dtype=F32)
        y = self.process_block(x[None, :])
        return y[0].copy()


# ---------------------------------------------------------------------------------------------
# WaveNet (spec §3)
# ---------------------------------------------------------------------------------------------

GATING_MODES = ("none", "gated", "blended")
FILM_SLOTS = ("conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
              "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film")


def _per_layer(value, n, what):
    if isinstance(value, list):
        if len(value) != n:
            raise NamError(f"{what}: list of {len(value)} for {n} layers")
        return list(value)
    return [value] * n


def _film_cfg(v):
    """False/absent/null -> None; True -> defaults; dict -> {"active","shift","groups"}."""
    if v is None or v is False:
        return None
    if v is True:
        v = {}
    if not isinstance(v, dict):
        raise NamError(f"bad FiLM config {v!r}")
    if not v.get("active", True):
        return None
    return {"shift": bool(v.get("shift", True)), "groups": int(v.get("groups", 1))}


class LayerArrayConfig:
    def __init__(self, cfg: dict, tanh_mode: str):
        self.raw = cfg
        self.input_size = int(cfg["input_size"])
        self.condition_size = int(cfg["condition_size"])
        self.channels = int(cfg["channels"])
        self.bottleneck = int(cfg.get("bottleneck", self.channels))
        self.dilations = [int(d) for d in cfg["dilations"]]
        n = self.n_layers = len(self.dilations)
        if n < 1:
            raise NamError("layer array without layers")
        if ("kernel_size" in cfg) == ("kernel_sizes" in cfg):
            raise NamError("layer array needs exactly one of kernel_size / kernel_sizes")
        self.kernel_sizes = [int(k) for k in _per_layer(cfg.get("kernel_size", cfg.get("kernel_sizes")), n,
                                                          "kernel_sizes")]
        self.activation_specs = _per_layer(cfg["activation"], n, "activation")
        if "gating_mode" in cfg:
            gm = _per_layer(cfg["gating_mode"], n, "gating_mode")
        else:
            gm = ["gated" if cfg.get("gated", False) else "none"] * n
        for g in gm:
            if g not in GATING_MODES:
                raise NamError(f"bad gating_mode {g!r}")
        self.gating = gm
        sec = _per_layer(cfg.get("secondary_activation"), n, "secondary_activation")
        # default secondary activation (used only by gated/blended layers): Sigmoid
        self.secondary_specs = [s if (s is not None and s != "") else "Sigmoid" for s in sec]
        self.activations = [make_activation(a, tanh_mode) for a in self.activation_specs]
        self.secondaries = [make_activation(s, tanh_mode) if g != "none" else None
                            for s, g in zip(self.secondary_specs, gm)]
        # head (new dict form or legacy head_size/head_bias with kernel 1)
        head = cfg.get("head")
        if isinstance(head, dict):
            self.head_size = int(head["out_channels"])
            self.head_kernel = int(head.get("kernel_size", 1))
            self.head_bias = bool(head.get("bias", False))
            self.head_dilation = int(head.get("head_dilation", 1))
        else:
            self.head_size = int(cfg["head_size"])
            self.head_kernel = 1
            self.head_bias = bool(cfg.get("head_bias", False))
            self.head_dilation = 1
        l1 = cfg.get("layer1x1") or {}
        self.layer1x1_active = bool(l1.get("active", True))
        self.layer1x1_groups = int(l1.get("groups", 1))
        h1 = cfg.get("head1x1") or {}
        self.head1x1_active = bool(h1.get("active", False))
        self.head1x1_out = int(h1.get("out_channels", self.bottleneck)) if self.head1x1_active else None
        self.head1x1_groups = int(h1.get("groups", 1))
        self.groups_input = int(cfg.get("groups_input", 1))
        self.groups_input_mixin = int(cfg.get("groups_input_mixin", 1))
        self.films = {slot: _film_cfg(cfg.get(slot)) for slot in FILM_SLOTS}
        if self.films["head1x1_post_film"] is not None and not self.head1x1_active:
            raise NamError("head1x1_post_film requires an active head1x1")
        if not self.layer1x1_active and self.bottleneck != self.channels:
            raise NamError("layer1x1 inactive requires bottleneck == channels")
        self.slimmable = cfg.get("slimmable")
        if self.slimmable is not None:
            if self.slimmable.get("method") != "slice_channels_uniform":
                raise NamError(f"unknown slimmable method {self.slimmable.get('method')!r}")
            self.allowed_channels = [int(c) for c in self.slimmable["kwargs"]["allowed_channels"]]

    @property
    def H(self):
        return self.head1x1_out if self.head1x1_active else self.bottleneck

    def receptive(self):
        return sum(d * (k - 1) for d, k in zip(self.dilations, self.kernel_sizes)) + \
            self.head_dilation * (self.head_kernel - 1)


class Layer:
    def __init__(self, ac: LayerArrayConfig, l: int, wr: WeightReader):
        self.gating = ac.gating[l]
        B, C, cs = ac.bottleneck, ac.channels, ac.condition_size
        Z = 2 * B if self.gating != "none" else B
        self.B, self.C, self.Z = B, C, Z
        self.act = ac.activations[l]
        self.act2 = ac.secondaries[l]
        self.conv = Conv1D(C, Z, ac.kernel_sizes[l], True, ac.dilations[l], ac.groups_input, wr)
        self.input_mixin = Conv1x1(cs, Z, False, ac.groups_input_mixin, wr)
        self.layer1x1 = Conv1x1(B, C, True, ac.layer1x1_groups, wr) if ac.layer1x1_active else None
        self.head1x1 = Conv1x1(B, ac.head1x1_out, True, ac.head1x1_groups, wr) if ac.head1x1_active else None
        dims = {"conv_pre_film": C, "conv_post_film": Z, "input_mixin_pre_film": cs,
                "input_mixin_post_film": Z, "activation_pre_film": Z, "activation_post_film": B,
                "layer1x1_post_film": C, "head1x1_post_film": ac.head1x1_out}
        self.films = {}
        for slot in FILM_SLOTS:  # weight order = FILM_SLOTS order
            fc = ac.films[slot]
            self.films[slot] = FiLM(cs, dims[slot], fc["shift"], fc["groups"], wr) if fc else None

    def reset(self):
        self.conv.reset()

    def __call__(self, r, c, head_acc):
        f = self.films
        a = f["conv_pre_film"](r, c) if f["conv_pre_film"] else r
        u = self.conv(a)
        if f["conv_post_film"]:
            u = f["conv_post_film"](u, c)
        cm = f["input_mixin_pre_film"](c, c) if f["input_mixin_pre_film"] else c
        m = self.input_mixin(cm)
        if f["input_mixin_post_film"]:
            m = f["input_mixin_post_film"](m, c)
        z = (u + m).astype(F32)
        if f["activation_pre_film"]:
            z = f["activation_pre_film"](z, c)
        B = self.B
        if self.gating == "none":
            z = self.act(z)
        elif self.gating == "gated":
            z = (self.act(z[:B]) * self.act2(z[B:2 * B])).astype(F32)
        else:  # blended
            z0 = z[:B]
            alpha = self.act2(z[B:2 * B])
            z = (alpha * self.act(z0) + (F32(1.0) - alpha) * z0).astype(F32)
        if f["activation_post_film"]:
            z = f["activation_post_film"](z, c)
        if self.head1x1 is not None:
            s = self.head1x1(z)
            if f["head1x1_post_film"]:
                s = f["head1x1_post_film"](s, c)
        else:
            s = z
        head_acc = (head_acc + s).astype(F32)
        if self.layer1x1 is not None:
            l1 = self.layer1x1(z)
            if f["layer1x1_post_film"] and (self.gating == "blended" or not LAYER1X1_POST_FILM_ONLY_BLENDED):
                l1 = f["layer1x1_post_film"](l1, c)
            r = (r + l1).astype(F32)
        # else: residual passes through unchanged (spec §3.3)
        return r, head_acc


class LayerArray:
    def __init__(self, ac: LayerArrayConfig, wr: WeightReader):
        self.cfg = ac
        self.rechannel = Conv1x1(ac.input_size, ac.channels, False, 1, wr)
        self.layers = [Layer(ac, l, wr) for l in range(ac.n_layers)]
        self.head_rechannel = Conv1D(ac.H, ac.head_size, ac.head_kernel, ac.head_bias, ac.head_dilation, 1, wr)

    def reset(self):
        for layer in self.layers:
            layer.reset()
        self.head_rechannel.reset()

    def __call__(self, layer_in, c, head_acc):
        r = self.rechannel(layer_in)
        for layer in self.layers:
            r, head_acc = layer(r, c, head_acc)
        return r, self.head_rechannel(head_acc)


class WaveNet(DSP):
    def __init__(self, nam: dict, tanh_mode: str):
        cfg = nam["config"]
        self.tanh_mode = tanh_mode
        self.sample_rate = _sample_rate(nam)
        self.in_channels = int(cfg.get("in_channels", 1))
        self.condition_dsp = None
        if cfg.get("condition_dsp") is not None:
            self.condition_dsp = build_dsp(cfg["condition_dsp"], tanh_mode)
        if "head_scale" not in cfg:
            raise NamError("WaveNet config needs head_scale (its value is ignored; the last weight is used)")
        self.array_cfgs = [LayerArrayConfig(la, tanh_mode) for la in cfg["layers"]]
        if not self.array_cfgs:
            raise NamError("WaveNet needs at least one layer array")
        self.head_cfg = cfg.get("head")
        _check_slimmable_supported(self.array_cfgs)
        if self.condition_dsp is not None and self.is_slimmable():
            raise NamError("slimmable WaveNet with condition_dsp is not supported")
        self.full_weights = nam["weights"]
        self.slim_channels = [ac.channels for ac in self.array_cfgs]
        self._build()

    # -- build from the (possibly slimmed) weight stream
    def _build(self):
        wr = WeightReader(self._weights_for_current_size())
        acs = self._current_array_cfgs()
        self._validate(acs)
        self.arrays = [LayerArray(ac, wr) for ac in acs]
        self.post_head = []
        self.post_head_act = None
        if self.head_cfg is not None:
            hc = self.head_cfg
            self.post_head_act = make_activation(hc["activation"], self.tanh_mode)
            ks = [int(k) for k in hc["kernel_sizes"]]
            cin = acs[-1].head_size
            for i, k in enumerate(ks):
                cout = int(hc["out_channels"]) if i == len(ks) - 1 else int(hc["channels"])
                self.post_head.append(Conv1D(cin, cout, k, True, 1, 1, wr))
                cin = cout
        self.head_scale = wr.take(1)[0]  # LAST weight; config.head_scale is ignored numerically
        if wr.remaining() != 0:
            raise NamError(f"WaveNet weight count mismatch: {wr.remaining()} weights left over")
        self.out_channels = self.post_head[-1].cout if self.post_head else acs[-1].head_size
        self.reset_state()

    def _validate(self, acs):
        c_prev = self.condition_dsp.out_channels if self.condition_dsp is not None else self.in_channels
        if acs[0].input_size != self.in_channels:
            raise NamError("array 0 input_size must equal in_channels")
        for i, ac in enumerate(acs):
            if ac.condition_size != c_prev:
                raise NamError(f"array {i}: condition_size {ac.condition_size} != condition channels {c_prev}")
            if i > 0:
                if ac.input_size != acs[i - 1].channels:
                    raise NamError(f"array {i}: input_size != channels of array {i-1}")
                if acs[i - 1].head_size != ac.H:
                    raise NamError(f"array {i}: head accumulation size {ac.H} != head_size of array {i-1}")

    # -- slimming (spec §3.5): weights are the full model; the active channel count c of a
    #    slimmable array keeps the first c channels of its residual stream / bottleneck.
    def is_slimmable(self):
        return any(ac.slimmable is not None for ac in self.array_cfgs)

    def set_slim(self, ratio: float):
        if not self.is_slimmable():
            raise NamError("WaveNet has no slimmable layer array")
        new = []
        for ac in self.array_cfgs:
            if ac.slimmable is None:
                new.append(ac.channels)
            else:
                n = len(ac.allowed_channels)
                new.append(ac.allowed_channels[min(int(math.floor(ratio * n)), n - 1)])
        self.slim_channels = new
        self._build()

    def _is_full_size(self):
        return self.slim_channels == [ac.channels for ac in self.array_cfgs]

    def _current_array_cfgs(self):
        if self._is_full_size():
            return self.array_cfgs
        return [_slim_cfg(self.array_cfgs[0], self.slim_channels[0])]

    def _weights_for_current_size(self):
        if self._is_full_size():
            return self.full_weights
        return slice_wavenet_weights(self.array_cfgs[0], self.slim_channels[0], self.head_cfg, self.full_weights)

    def prewarm_samples(self):
        P = self.condition_dsp.prewarm_samples() if self.condition_dsp is not None else 1
        P += sum(ac.receptive() for ac in self.array_cfgs)
        if self.head_cfg is not None:
            P += sum(int(k) - 1 for k in self.head_cfg["kernel_sizes"])
        return P

    def receptive_field(self):
        """Samples of history that influence the output (for the prepend-zeros equivalence)."""
        rf = sum(ac.receptive() for ac in self.array_cfgs)
        if self.head_cfg is not None:
            rf += sum(int(k) - 1 for k in self.head_cfg["kernel_sizes"])
        if self.condition_dsp is not None:
            rf += self.condition_dsp.receptive_field()
        return rf

    def reset_state(self):
        if self.condition_dsp is not None:
            self.condition_dsp.reset_state()
        for arr in self.arrays:
            arr.reset()
        for conv in self.post_head:
            conv.reset()

    def process_block(self, x):
        x = np.asarray(x, dtype=F32)
        assert x.shape[0] == self.in_channels
        c = self.condition_dsp.process_block(x) if self.condition_dsp is not None else x
        layer_in = x
        head_acc = np.zeros((self.arrays[0].cfg.H, x.shape[1]), dtype=F32)
        for arr in self.arrays:
            layer_in, head_acc = arr(layer_in, c, head_acc)
        h = (self.head_scale * head_acc).astype(F32)
        for conv in self.post_head:
            h = conv(self.post_head_act(h))
        return h


def _slim_cfg(ac: LayerArrayConfig, c: int) -> LayerArrayConfig:
    """Config of a slimmable array sliced to c channels (bottleneck == channels, both become c)."""
    import copy
    new = copy.copy(ac)
    new.channels = c
    new.bottleneck = c
    return new


def _check_slimmable_supported(acs):
    """Slicing is defined (spec §3.5 + trainer's slice_channels_uniform) for a single plain
    array: bottleneck == channels, no head1x1, no FiLM, all groups 1, head kernel 1, no
    condition_dsp. The trainer rejects anything else as unsupported; so do we."""
    slim = [ac for ac in acs if ac.slimmable is not None]
    if not slim:
        return
    if len(acs) != 1:
        raise NamError("slimmable WaveNet with more than one layer array is not supported")
    ac = acs[0]
    if ac.bottleneck != ac.channels or ac.head1x1_active or any(ac.films.values()) or \
            ac.groups_input != 1 or ac.groups_input_mixin != 1 or ac.layer1x1_groups != 1 or \
            ac.head_kernel != 1:
        raise NamError("slimming supported only for plain arrays (bottleneck==channels, no FiLM/head1x1/groups)")
    for c in ac.allowed_channels:
        if not 1 <= c <= ac.channels:
            raise NamError(f"allowed_channels entry {c} outside 1..{ac.channels}")


def slice_wavenet_weights(ac: LayerArrayConfig, c: int, head_cfg, weights):
    """Walk the FULL weight stream of a single-array WaveNet and keep the entries of the model
    with c channels. Every sliced conv keeps its first rows/columns (PyTorch weight[:out, :in, :],
    bias[:out]): rechannel out; layer conv in and out (gated/blended: the FIRST 2c rows, which are
    then split into halves of c, as the trainer's slimmable LayerConv does); input_mixin out;
    layer1x1 in and out; head_rechannel in. Post-stack head and head_scale are unchanged."""
    wr = WeightReader(weights)
    out = []
    C = ac.channels

    def conv(cout, cin, k, keep_out, keep_in, bias):
        m = wr.take(cout * cin * k).reshape(cout, cin, k)
        out.append(m[:keep_out, :keep_in, :].ravel())
        if bias:
            out.append(wr.take(cout)[:keep_out])

    conv(C, ac.input_size, 1, c, ac.input_size, False)                     # rechannel
    for l in range(ac.n_layers):
        paired = ac.gating[l] != "none"
        Z = 2 * C if paired else C
        zk = 2 * c if paired else c
        conv(Z, C, ac.kernel_sizes[l], zk, c, True)                        # layer conv
        conv(Z, ac.condition_size, 1, zk, ac.condition_size, False)        # input mixin
        if ac.layer1x1_active:
            conv(C, C, 1, c, c, True)                                      # layer1x1
    conv(ac.head_size, C, ac.head_kernel, ac.head_size, c, ac.head_bias)  # head rechannel
    out.append(wr.take(wr.remaining()))                                    # post head + head_scale
    return np.concatenate(out).astype(F32)


# ---------------------------------------------------------------------------------------------
# LSTM (spec §4)
# ---------------------------------------------------------------------------------------------

class LSTM(DSP):
    def __init__(self, nam: dict, tanh_mode: str):
        cfg = nam["config"]
        self.sample_rate = _sample_rate(nam)
        self.in_channels = int(cfg.get("in_channels", 1))
        self.out_channels = int(cfg.get("out_channels", 1))
        self.input_size = int(cfg["input_size"])
        if self.input_size != self.in_channels:
            raise NamError("LSTM input_size must equal in_channels")
        self.H = int(cfg["hidden_size"])
        self.num_layers = int(cfg["num_layers"])
        self.fast = tanh_mode == "fast"
        wr = WeightReader(nam["weights"])
        H = self.H
        self.layers = []
        for l in range(self.num_layers):
            I = self.input_size if l == 0 else H
            W = wr.take(4 * H * (I + H)).reshape(4 * H, I + H)
            b = wr.take(4 * H)
            h0 = wr.take(H)
            c0 = wr.take(H)
            self.layers.append((W, b, h0, c0))
        self.Wo = wr.take(self.out_channels * H).reshape(self.out_channels, H)
        self.bo = wr.take(self.out_channels)
        if wr.remaining() != 0:
            # The reference only assert()s this; we are strict.
            raise NamError(f"LSTM weight count mismatch: {wr.remaining()} left over")
        self.reset_state()

    def _sig(self, x):
        return fast_sigmoid(x) if self.fast else sigmoid(x)

    def _tanh(self, x):
        return fast_tanh(x) if self.fast else accurate_tanh(x)

    def prewarm_samples(self):
        if self.sample_rate is None:
            return 1
        return int(LSTM_PREWARM_SECONDS * self.sample_rate)

    def reset_state(self):
        self.h = [l[2].copy() for l in self.layers]
        self.c = [l[3].copy() for l in self.layers]

    def step(self, x_t: np.ndarray) -> np.ndarray:
        """One sample: x_t (input_size,) -> (out_channels,)."""
        H = self.H
        inp = x_t.astype(F32)
        for li, (W, b, _, _) in enumerate(self.layers):
            xh = np.concatenate([inp, self.h[li]])
            v = (W @ xh + b).astype(F32)
            i = self._sig(v[0:H])
            f = self._sig(v[H:2 * H])
            g = self._tanh(v[2 * H:3 * H])
            o = self._sig(v[3 * H:4 * H])
            c = (f * self.c[li] + i * g).astype(F32)
            h = (o * self._tanh(c)).astype(F32)
            self.c[li], self.h[li] = c, h
            inp = h
        return (self.Wo @ inp + self.bo).astype(F32)

    def process_block(self, x):
        x = np.asarray(x, dtype=F32)
        T = x.shape[1]
        y = np.empty((self.out_channels, T), dtype=F32)
        for t in range(T):
            y[:, t] = self.step(x[:, t])
        return y

    def receptive_field(self):
        return math.inf


# ---------------------------------------------------------------------------------------------
# Linear and ConvNet (spec §5)
# ---------------------------------------------------------------------------------------------

class Linear(DSP):
    def __init__(self, nam: dict, tanh_mode: str):
        cfg = nam["config"]
        self.sample_rate = _sample_rate(nam)
        self.in_channels = int(cfg.get("in_channels", 1))
        self.out_channels = int(cfg.get("out_channels", 1))
        if self.in_channels != 1 or self.out_channels != 1:
            raise NamError("Linear: only mono supported")
        self.rf = int(cfg["receptive_field"])
        wr = WeightReader(nam["weights"])
        self.w = wr.take(self.rf)  # w[j] multiplies x[t-j]
        self.b = wr.take(1)[0] if cfg.get("bias", False) else None
        if wr.remaining() != 0:
            raise NamError("Linear weight count mismatch")
        self.reset_state()

    def prewarm_samples(self):
        return 0

    def receptive_field(self):
        return self.rf - 1

    def reset_state(self):
        self.hist = np.zeros(self.rf - 1, dtype=F32)

    def process_block(self, x):
        x = np.asarray(x, dtype=F32)[0]
        xx = np.concatenate([self.hist, x])
        T = len(x)
        n = self.rf - 1
        y = np.zeros(T, dtype=F32)
        for j in range(self.rf):
            y = y + self.w[j] * xx[n - j:n - j + T]
        if self.b is not None:
            y = y + self.b
        if n > 0:
            self.hist = xx[len(xx) - n:].copy()
        return y.astype(F32)[None, :]


class ConvNet(DSP):
    def __init__(self, nam: dict, tanh_mode: str):
        cfg = nam["config"]
        self.sample_rate = _sample_rate(nam)
        self.in_channels = int(cfg.get("in_channels", 1))
        self.out_channels = int(cfg.get("out_channels", 1))
        C = int(cfg["channels"])
        self.dilations = [int(d) for d in cfg["dilations"]]
        self.batchnorm = bool(cfg["batchnorm"])
        self.act = make_activation(cfg["activation"], tanh_mode)
        groups = int(cfg.get("groups", 1))
        wr = WeightReader(nam["weights"])
        self.blocks = []
        cin = self.in_channels
        for d in self.dilations:
            conv = Conv1D(cin, C, 2, not self.batchnorm, d, groups, wr)
            bn = None
            if self.batchnorm:
                mean = wr.take(C)
                var = wr.take(C)
                w = wr.take(C)
                b = wr.take(C)
                eps = wr.take(1)[0]
                bn = (mean, var, w, b, eps)
            self.blocks.append((conv, bn))
            cin = C
        self.head_W = wr.take(self.out_channels * C).reshape(self.out_channels, C)
        self.head_b = wr.take(self.out_channels)
        if wr.remaining() != 0:
            raise NamError(f"ConvNet weight count mismatch: {wr.remaining()} left over")
        self.reset_state()

    def prewarm_samples(self):
        return 1 + sum(self.dilations)

    def receptive_field(self):
        return sum(self.dilations)

    def reset_state(self):
        for conv, _ in self.blocks:
            conv.reset()

    def process_block(self, x):
        h = np.asarray(x, dtype=F32)
        for conv, bn in self.blocks:
            h = conv(h)
            if bn is not None:
                mean, var, w, b, eps = bn
                h = ((h - mean[:, None]) * w[:, None] / np.sqrt(eps + var)[:, None] + b[:, None]).astype(F32)
            h = self.act(h)
        return (self.head_W @ h + self.head_b[:, None]).astype(F32)


# ---------------------------------------------------------------------------------------------
# SlimmableContainer (spec §5)
# ---------------------------------------------------------------------------------------------

class SlimmableContainer(DSP):
    def __init__(self, nam: dict, tanh_mode: str):
        cfg = nam["config"]
        self.sample_rate = _sample_rate(nam)
        subs = cfg["submodels"]
        if not subs:
            raise NamError("SlimmableContainer without submodels")
        if nam.get("weights"):
            raise NamError("SlimmableContainer must have empty top-level weights")
        subs = sorted(subs, key=lambda s: float(s["max_value"]))
        if float(subs[-1]["max_value"]) < 1.0:
            raise NamError("last submodel max_value must be >= 1.0")
        self.max_values = [float(s["max_value"]) for s in subs]
        self.models = [build_dsp(s["model"], tanh_mode) for s in subs]
        self.active = len(self.models) - 1  # default = largest
        self.in_channels = self.models[self.active].in_channels
        self.out_channels = self.models[self.active].out_channels

    def is_slimmable(self):
        return True

    def set_slim(self, ratio: float):
        # first submodel with ratio < max_value; the last one otherwise.
        # (The ratio is not forwarded to the chosen submodel.)
        self.active = next((i for i, mv in enumerate(self.max_values) if ratio < mv), len(self.models) - 1)

    @property
    def model(self):
        return self.models[self.active]

    def prewarm_samples(self):
        return self.model.prewarm_samples()

    def receptive_field(self):
        return self.model.receptive_field()

    def reset_state(self):
        self.model.reset_state()

    def process_block(self, x):
        return self.model.process_block(x)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def _sample_rate(nam):
    sr = nam.get("sample_rate")
    if sr is None or float(sr) <= 0:
        return None
    return float(sr)


ARCHITECTURES = {"WaveNet": WaveNet, "LSTM": LSTM, "Linear": Linear, "ConvNet": ConvNet,
                 "SlimmableContainer": SlimmableContainer}


def build_dsp(nam: dict, tanh_mode: str = "accurate") -> DSP:
    if tanh_mode not in ("accurate", "fast"):
        raise ValueError(tanh_mode)
    for key in ("version", "architecture", "config", "weights"):
        if key not in nam:
            raise NamError(f"missing key {key!r}")
    check_version(nam["version"])
    arch = nam["architecture"]
    if arch not in ARCHITECTURES:
        raise NamError(f"unknown architecture {arch!r}")
    return ARCHITECTURES[arch](nam, tanh_mode)


def load_nam(src, tanh_mode: str = "accurate") -> DSP:
    if isinstance(src, dict):
        return build_dsp(src, tanh_mode)
    with open(src) as f:
        return build_dsp(json.load(f), tanh_mode)


def render(model: DSP, x, block_size: int = 64, prewarm: bool = True):
    """Reset (+ reference prewarm), then process x in blocks. Returns (y, prewarm_samples)."""
    n = model.reset(block_size=block_size, prewarm=prewarm)
    x = np.asarray(x, dtype=F32)
    y = np.empty_like(x)
    for s in range(0, len(x), block_size):
        y[s:s + block_size] = model.process(x[s:s + block_size])
    return y, n


def esr(ref, y):
    ref = np.asarray(ref, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    den = np.sum(ref * ref)
    return float(np.sum((ref - y) ** 2) / den) if den > 0 else float(np.sum((ref - y) ** 2))


# ---------------------------------------------------------------------------------------------
# Self-test: tiny hand-computed models
# ---------------------------------------------------------------------------------------------

def _wavenet_doc(layers, weights, head=None, version="0.5.4", sample_rate=48000):
    return {"version": version, "architecture": "WaveNet", "sample_rate": sample_rate,
            "config": {"layers": layers, "head": head, "head_scale": 123.0}, "weights": weights}


def _close(a, b, tol, what):
    if isinstance(a, str) or isinstance(b, str):
        if a != b:
            raise AssertionError(f"{what}: got {a!r}, expected {b!r}")
        print(f"  ok  {what}")
        return
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.abs(a - b) <= tol):
        raise AssertionError(f"{what}: got {a}, expected {b}")
    print(f"  ok  {what}")


def selftest():
    print("nam_numpy self-test")
    tol = 1e-6

    # 1) one-layer WaveNet, K=2, d=1, ReLU; tap K-1 (second weight) multiplies the CURRENT sample.
    #    weights: rechannel 1.0 | conv taps [a=0.25 (x[t-1]), b=0.5 (x[t])], bias 0 | mixin 0 |
    #    layer1x1 w 1, b 0 | head_rechannel 2.0 (no bias) | head_scale 0.1 (last weight; config says 123)
    la = {"input_size": 1, "condition_size": 1, "head_size": 1, "channels": 1, "kernel_size": 2,
          "dilations": [1], "activation": "ReLU", "gated": False, "head_bias": False}
    m = load_nam(_wavenet_doc([la], [1.0, 0.25, 0.5, 0.0, 0.0, 1.0, 0.0, 2.0, 0.1]))
    y, n = render(m, np.array([1, 0, 0, 2, -1, 0], dtype=F32), block_size=4)
    # y = 0.1*2*relu(0.5 x[t] + 0.25 x[t-1])
    _close(y, [0.1, 0.05, 0.0, 0.2, 0.0, 0.0], tol, "1-layer WaveNet tap order (impulse -> 0.5 then 0.25)")
    _close(n, 4, 0, "WaveNet prewarm P=1+1 rounded up to one block of 4")

    # 1b) same, conv bias 0.3: the prewarmed state is the steady state of silence.
    m = load_nam(_wavenet_doc([la], [1.0, 0.25, 0.5, 0.3, 0.0, 1.0, 0.0, 2.0, 0.1]))
    y, _ = render(m, np.array([0, 0, 1], dtype=F32))
    _close(y, [0.06, 0.06, 0.16], tol, "conv bias / silence steady state (0.2*0.3, then 0.2*(0.5+0.3))")

    # 1c) two layers, dilation 2: residual r = r + layer1x1(z); head sums both layers' z.
    la2 = dict(la, dilations=[2, 1])
    w = [1.0,
         0.0, 1.0, 0.0, 0.0, 1.0, 0.0,      # layer0: conv [x[t-2]*0, x[t]*1], b0, mix0, l1x1 w1 b0
         1.0, 0.0, 0.0, 0.0, 1.0, 0.0,      # layer1: conv [r[t-1]*1, r[t]*0], ...
         1.0, 1.0]
    m = load_nam(_wavenet_doc([la2], w))
    y, _ = render(m, np.array([1, 0, 0, 0], dtype=F32))
    # layer0: z0 = x[t]; r1 = x + z0 = 2x; layer1: z1 = r1[t-1] = 2x[t-1]; y = z0 + z1
    _close(y, [1.0, 2.0, 0.0, 0.0], tol, "2-layer residual + head accumulation")

    # 2) gated layer (Tanh x Sigmoid), K=1. conv rows: [2, 0] on x, bias [0, 0.5]; mixin [0, 0] ...
    lg = {"input_size": 1, "condition_size": 1, "head_size": 1, "channels": 1, "kernel_size": 1,
          "dilations": [1], "activation": "Tanh", "gated": True, "head_bias": True}
    # rechannel 1 | conv W(2x1x1) [2, 0] b [0, 0.5] | mixin [0, 1] | layer1x1 w 0 b 0 | head w 1 b 0.25 | scale 1
    w = [1.0, 2.0, 0.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.0, 1.0, 0.25, 1.0]
    m = load_nam(_wavenet_doc([lg], w))
    y, _ = render(m, np.array([0.5, 0.0, -0.5], dtype=F32))
    # z = tanh(2x) * sigmoid(0.5 + x) (mixin row 2 adds the condition c = x); y = z + 0.25
    # x=0.5: tanh(1)*sigmoid(1)   = 0.7615941559557649*0.7310585786300049 = 0.5567653...
    # x=0  : 0;  x=-0.5: tanh(-1)*sigmoid(0) = -0.38079707797788245
    _close(y, [0.25 + 0.7615941559557649 * 0.7310585786300049, 0.25, 0.25 - 0.38079707797788245],
           2e-7, "gated layer tanh(a)*sigmoid(b)")

    # 2b) blended: z = alpha*act(z0) + (1-alpha)*z0, alpha = sigmoid(z1); act = ReLU
    lb = dict(lg, activation="ReLU", gating_mode="blended")
    del lb["gated"]
    m = load_nam(_wavenet_doc([lb], w))
    y, _ = render(m, np.array([-0.5], dtype=F32))
    # z0 = -1, alpha = sigmoid(0) = 0.5 -> 0.5*0 + 0.5*(-1) = -0.5 ; y = -0.25
    _close(y, [-0.25], tol, "blended layer")

    # 3) LSTM single step, H=1: W rows (i, f, g, o) x [x, h]; only g sees x with weight atanh(0.5).
    #    x=1, h0=0, c0=1: i=f=o=sigmoid(0)=0.5, g=0.5 -> c=0.5*1+0.5*0.5=0.75, h=0.5*tanh(0.75)
    #    y = 2*h + 0.1 = tanh(0.75) + 0.1 = 0.7351489523872873
    g = 0.5493061443340549
    lstm = {"version": "0.5.4", "architecture": "LSTM", "sample_rate": 48000,
            "config": {"input_size": 1, "hidden_size": 1, "num_layers": 1},
            "weights": [0, 0, 0, 0, g, 0, 0, 0, 0, 0, 0, 0, 0.0, 1.0, 2.0, 0.1]}
    m = load_nam(lstm)
    m.reset(prewarm=False)
    _close(m.process(np.array([1.0], dtype=F32)), [0.7351489523872873], 2e-7, "LSTM single step")
    _close(m.c[0], [0.75], 0, "LSTM cell state after one step")
    _close(m.prewarm_samples(), 24000, 0, "LSTM prewarm = int(0.5*48000)")
    lstm_nosr = dict(lstm)
    del lstm_nosr["sample_rate"]
    _close(load_nam(lstm_nosr).reset(block_size=64), 64, 0, "LSTM without sample_rate prewarms one 64 block")
    mf = load_nam(lstm, tanh_mode="fast")
    mf.reset(prewarm=False)
    # fast: sigmoid(0)=0.5 exactly, g = fast_tanh(atanh 0.5), h = 0.5*fast_tanh(c)
    gf = float(fast_tanh(np.float32(g)))
    cf = 0.5 + 0.5 * gf
    _close(mf.process(np.array([1.0], dtype=F32)), [float(fast_tanh(np.float32(cf))) + 0.1], 2e-7,
           "LSTM single step, fast tanh/sigmoid")

    # 4) fast tanh formula (§6) at 1.0, hand-evaluated in double:
    #    num = 2*2.45550750702956 + 0.893229853513558 + 0.821226666969744 = 6.625471534542422
    #    den = 2.44506634652299 + 3.44506634652299*1.814642734961073 = 8.696630...
    _close(fast_tanh(np.float32(1.0)), 6.625471534542422 / (2.44506634652299 + 3.44506634652299 * 1.814642734961073),
           1e-7, "fast_tanh(1)")
    xs = np.linspace(-8, 8, 4001, dtype=F32)
    _close(fast_tanh(-xs), -fast_tanh(xs), 0, "fast_tanh is odd")
    err = float(np.max(np.abs(fast_tanh(xs).astype(np.float64) - np.tanh(xs.astype(np.float64)))))
    _close(err < 1e-3, True, 0, f"|fast_tanh - tanh| < 1e-3 on [-8, 8] (max {err:.2e})")
    _close(make_activation("Tanh", "fast")(np.ones((1, 1), F32)), fast_tanh(np.ones((1, 1), F32)), 0,
           "'Tanh' switches to fast tanh in fast mode")
    _close(make_activation("Sigmoid", "fast")(np.zeros((1, 1), F32) + F32(1)), sigmoid(np.float32(1))[None, None], 0,
           "'Sigmoid' stays exact in fast mode")

    # 5) activations
    x = np.array([[-4.0, -1.0, 0.5, 2.0]], dtype=F32)
    _close(make_activation("Hardswish")(x), [[0.0, -1 * 2 / 6, 0.5 * 3.5 / 6, 2 * 5 / 6]], 1e-7, "Hardswish")
    _close(make_activation({"type": "LeakyHardtanh", "min_val": 0.0, "max_val": 0.9, "min_slope": 0.0,
                            "max_slope": 0.02})(x), [[0.0, 0.0, 0.5, 0.9 + 1.1 * 0.02]], 1e-7, "LeakyHardtanh")
    _close(make_activation("Softsign")(x), [[-0.8, -0.5, 1 / 3, 2 / 3]], 1e-7, "Softsign")
    _close(make_activation("LeakyReLU")(x), [[-0.04, -0.01, 0.5, 2.0]], 1e-7, "LeakyReLU string = slope 0.01")
    _close(make_activation({"type": "PReLU", "negative_slopes": [0.1, 0.2]})(np.array([[-1, -1], [-1, 3]], F32)),
           [[-0.1, -0.1], [-0.2, 3]], 1e-7, "PReLU per channel")

    # 6) grouped Conv1D weight order: groups=2, 2->2, K=2: per group one (out_g=1,in_g=1) kernel
    wr = WeightReader([1, 2, 3, 4, 0.5, -0.5])
    conv = Conv1D(2, 2, 2, True, 1, 2, wr)
    yv = conv(np.array([[1, 0], [0, 1]], dtype=F32))
    # ch0: tap1 (current) = 2, tap0 = 1: [2, 1] + 0.5 ; ch1: [0, 4] - 0.5
    _close(yv, [[2.5, 1.5], [-0.5, 3.5]], 0, "grouped Conv1D (block-diagonal, taps per (out,in))")

    # 7) Linear: y[t] = b + sum_j w[j] x[t-j]
    lin = {"version": "0.5.0", "architecture": "Linear", "config": {"receptive_field": 3, "bias": True},
           "weights": [1.0, 0.5, 0.25, 0.125]}
    y, n = render(load_nam(lin), np.array([1, 0, 0, 0], dtype=F32), block_size=2)
    _close(y, [1.125, 0.625, 0.375, 0.125], 0, "Linear taps (w[0] = current)")

    # 8) ConvNet 1 channel, 1 block d=1, batchnorm, ReLU:
    #    conv taps [0.5 (x[t-1]), 1 (x[t])]; bn mean 0.5, var 3, w 2, b 0.25, eps 1 -> (h-0.5)*2/2+0.25
    cn = {"version": "0.5.0", "architecture": "ConvNet",
          "config": {"channels": 1, "dilations": [1], "batchnorm": True, "activation": "ReLU"},
          "weights": [0.5, 1.0, 0.5, 3.0, 2.0, 0.25, 1.0, 3.0, 0.1]}
    y, n = render(load_nam(cn), np.array([1, 0, 0], dtype=F32), block_size=1)
    # silence: h=0 -> relu(-0.25)=0 -> 0.1; t0: h=1 -> 0.75 -> 2.35; t1: h=0.5 -> 0.25 -> 0.85
    _close(y, [2.35, 0.85, 0.1], 1e-6, "ConvNet with batchnorm")
    _close(n, 2, 0, "ConvNet prewarm 1+sum(d)")

    # 9) versions
    _close(check_version("0.7.0"), "full", 0, "version 0.7.0 full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _close(check_version("0.7.3"), "partial", 0, "version 0.7.3 partial")
    for bad in ("0.4.9", "1.0.0", "0.8.0", "0.5", "x.y.z"):
        try:
            check_version(bad)
        except NamError:
            continue
        raise AssertionError(f"version {bad} accepted")
    print("  ok  versions < 0.5.0, >= 1.x, 0.8+ and non-semver rejected")

    # 10) slim selection: WaveNet allowed_channels[min(floor(r*n), n-1)]; container: first
    #     submodel with r < max_value, else the last. (Fixture files, when present.)
    import glob
    import os
    fdir = os.environ.get("NAM_FIXTURES", "/work/shared/fixtures/nam")
    sw = os.path.join(fdir, "slimmable_wavenet.nam")
    if os.path.exists(sw):
        m = load_nam(sw)  # allowed_channels [1, 2, 3]
        got = []
        for r in (0.0, 0.25, 0.34, 0.5, 0.66, 0.67, 1.0):
            m.set_slim(r)
            got.append(m.slim_channels[0])
        _close(got, [1, 1, 2, 2, 2, 3, 3], 0, "slimmable WaveNet channel choice for r in 0..1")
    sc = os.path.join(fdir, "slimmable_container.nam")
    if os.path.exists(sc):
        m = load_nam(sc)  # max_values 0.33, 0.66, 1.0
        _close(m.active, 2, 0, "SlimmableContainer default = largest")
        got = []
        for r in (0.0, 0.25, 0.33, 0.5, 0.66, 0.9, 1.0):
            m.set_slim(r)
            got.append(m.active)
        _close(got, [0, 0, 1, 1, 2, 2, 2], 0, "SlimmableContainer submodel choice (r < max_value)")

    # 11) fixtures: weight counts consumed exactly, block processing == one long pass
    fx = sorted(glob.glob(os.path.join(fdir, "*.nam")))
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(700) * 0.3).astype(F32)
    for path in fx:
        m = load_nam(path)
        y64, _ = render(m, x, block_size=64)
        m.reset(block_size=64)
        y_long = m.process(x)
        y7, _ = render(m, x, block_size=7)  # prewarm in blocks of 7
        name = os.path.basename(path)
        # equal up to float32 rounding (BLAS may sum in a different order for other block widths)
        _close(esr(y64, y_long), 0.0, 1e-12, f"{name}: blocks of 64 == one pass (ESR < 1e-12)")
        if not isinstance(m, LSTM) and not (isinstance(m, SlimmableContainer) and isinstance(m.model, LSTM)):
            # (LSTM prewarm length depends on the block size, so only WaveNets are compared here)
            _close(esr(y64, y7), 0.0, 1e-12, f"{name}: blocks of 7 == blocks of 64 (ESR < 1e-12)")
    print("self-test passed")


if __name__ == "__main__":
    if "--selftest" in sys.argv:
        selftest()
    else:
        print(__doc__)
