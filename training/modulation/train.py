#!/usr/bin/env python3
"""Train one of Neuralboard's neural modulation models (phaser, flanger): an LSTM fed the dry audio and the LFO.

    python training/modulation/train.py RECIPE [--threads N] [--workdir DIR] [--max-minutes M] [--out-dir DIR]
                                               [--device cuda] [--override JSON]
    python training/modulation/train.py RECIPE --remeasure     # the shipped file: its test ESRs again
    python training/modulation/train.py RECIPE --init FILE     # fine-tune: start from an exported model
    python training/modulation/train.py RECIPE --data-only --workdir DIR   # the data alone, for runs side by side

The "grey-box" idea of Wright & Välimäki: the network is given the LFO value of every sample next to the audio,
so it never has to learn the oscillator, and the player's rate knob keeps working after training. The LFO is the
engine's own (`neuralboard_engine::teacher::Lfo`): the teacher reports the value it used for every sample
(`neuralboard teacher ... --lfo-out`), and the pedal generates the same sequence live.

The model: `LSTM(2 -> H)` then `Linear(H -> 1)`, added to the dry input: `y[t] = x[t] + head(h[t])`. It is
exported as a `.nam` LSTM with `input_size` = `in_channels` = 2 (channel 0 audio, channel 1 LFO) and zero
initial state; `metadata.neuralboard` tells the pedal about the residual and the LFO it was trained with.

The recipe (training/modulation/recipes.json) fixes every input of the result: the teacher's settings, the rates
and waveforms of each split, corpus seeds, the architecture and the learning settings (torch and the window
sampler are seeded). Every split whose name starts with `train` is training audio. Splits are lists of chunks
(expand_chunks): chunk i of a split takes corpus seed `seed + i`, one (rate, waveform) pair, start phase
frac(0.618034 i) and, for the depth test, a depth scale `k` (the teacher runs at `k * depth`, the model gets
`k * LFO`: that is how the pedal's depth knob works).

Training: Adam, truncated back-propagation through time (each window: `warmup` samples without gradient from a
zero state, then `updates_per_window` updates of `truncate` samples each), loss = ESR + ESR of the pre-emphasised
signals (1 - 0.85 z^-1); learning rate decays exponentially over the time limit to `lr_final_fraction` of its
start. Validation every `validate_every_s` seconds on the whole chunks of every split named `validation...` (the
criterion: the mean of their ESRs), keeping the best; stop at the time limit or once the
validation ESR is under `stop_at_fraction_of_target` of the test target.

Held-out chunks (validation and test) are scored as the pedal plays: the model starts from its prewarmed state
(0.5 s of silence with the LFO at 0, the engine's prewarm), then gets PRE_ROLL_S of silence while the LFO already
runs, so that the chunk's audio meets the LFO at the chunk's phase without a step (the pedal's LFO never jumps);
the pre-roll is not scored. Until 2026-11-27 the chunks started straight after the prewarm, the LFO stepping from
0 to the chunk's phase: the flanger answered that step, which the pedal never makes, with up to 0.25 peak.

The test splits are run through the exported weights exactly as the engine runs them and their ESRs go to the
manifest `<name>.manifest.json` beside `<name>.nam`; `neuralboard eval --model FILE` regenerates them in Rust.
`--remeasure` measures the shipped file again (the training record kept). `--init FILE` starts from an exported
model of the recipe's shape instead of torch's initialisation (fine-tuning; give a lower `learning.lr` with
--override): the manifest records the file's SHA-256, and the starting model is the first candidate for the best,
so a fine-tune never ships worse than it started on the validation split. The binary is $NEURALBOARD if set, else
`cargo build --release -p neuralboard`.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.io import wavfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (check_init, device_name, esr, init_record, log, merged, resolved, run_once, start_run,  # noqa: E402
                    trainer_arguments)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RECIPES = HERE / "recipes.json"
OUT_DIR = REPO / "assets" / "models" / "modulation"
# The engine prewarms an LSTM with half a second of zeros at the model's rate (both input channels zero).
PREWARM_S = 0.5
# Silence before each held-out chunk with the LFO running, not scored (see the module's doc).
PRE_ROLL_S = 0.5
MANIFEST_VERSION = 1
GOLDEN = 0.618034


def read_float(path: Path) -> np.ndarray:
    _, data = wavfile.read(path)
    assert data.dtype == np.float32 and data.ndim == 1, f"{path}: expected mono float32"
    return data


def expand_chunks(recipe: dict, split: str) -> list[dict]:
    """The chunks of a split, in order. Rust's eval reads the expanded list from the manifest."""
    s = recipe["splits"][split]
    rates = recipe["rates"][s["rates"]] if isinstance(s["rates"], str) else s["rates"]
    pairs = [(w, r) for w in s["waveforms"] for r in rates] * s.get("repeat", 1)
    scales = s.get("depth_scale", [1.0] * len(pairs))
    assert len(scales) == len(pairs), f"{split}: one depth_scale per chunk"
    return [
        {"seed": s["seed"] + i, "seconds": s["seconds"], "rate": r, "waveform": w,
         "phase": round((i * GOLDEN) % 1.0, 4), "depth_scale": k}
        for i, ((w, r), k) in enumerate(zip(pairs, scales))
    ]


def teacher_params(recipe: dict, chunk: dict) -> dict:
    params = dict(recipe["teacher"]["params"])
    params["depth"] = params["depth"] * chunk["depth_scale"]
    params.update(rate=chunk["rate"], waveform=chunk["waveform"], phase=chunk["phase"])
    return params


def make_chunk(nb: Path, tmp: Path, recipe: dict, chunk: dict, pre_roll_s: float = 0.0) \
        -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio, LFO as the model sees it, teacher output) for one chunk, after `pre_roll_s` of silence during which
    the LFO runs up to the chunk's phase (the teacher starts that much earlier in its cycle)."""
    rate = recipe["sample_rate"]
    # Named by everything that makes them, so a reused work folder never serves another recipe's data.
    key = hashlib.sha1(json.dumps([recipe["teacher"], chunk, rate, pre_roll_s], sort_keys=True).encode()).hexdigest()
    stem = tmp / f"{chunk['seed']}-{key[:10]}"
    run_once([nb, "corpus", "--seed", chunk["seed"], "--seconds", chunk["seconds"], "--rate", rate, f"{stem}-x.wav"],
             Path(f"{stem}-x.wav"))
    params = teacher_params(recipe, chunk)
    teacher_input = Path(f"{stem}-x.wav")
    if pre_roll_s > 0:
        silence = np.zeros(int(pre_roll_s * rate), dtype=np.float32)
        teacher_input = Path(f"{stem}-xp.wav")
        wavfile.write(teacher_input, rate, np.concatenate([silence, read_float(Path(f"{stem}-x.wav"))]))
        params["phase"] = pre_rolled_phase(chunk, pre_roll_s)
    params = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
    run_once([nb, "teacher", recipe["teacher"]["kind"], *params, "--lfo-out", f"{stem}-lfo.wav", teacher_input,
              f"{stem}-y.wav"], Path(f"{stem}-lfo.wav"), Path(f"{stem}-y.wav"))
    x = read_float(teacher_input)
    lfo, y = (read_float(Path(f"{stem}-{n}.wav")) for n in ("lfo", "y"))
    return x, (lfo * np.float32(chunk["depth_scale"])).astype(np.float32), y


def net_class(torch, hidden: int):
    """The model: `LSTM(2 -> hidden)`, `Linear(hidden -> 1)` added to the dry input; `forward(inp [B, T, 2],
    state)` -> (output [B, T], state)."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(2, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, inp, state=None):
            out, state = self.lstm(inp, state)
            return inp[..., 0] + self.head(out)[..., 0], state

    return Net


def pre_rolled_phase(chunk: dict, pre_roll_s: float) -> float:
    """The LFO's phase `pre_roll_s` before the chunk's: what `neuralboard eval` computes (in f64, then to f32)."""
    return (float(np.float32(chunk["phase"])) - float(np.float32(chunk["rate"])) * pre_roll_s) % 1.0


def main() -> None:
    recipes = json.loads(RECIPES.read_text())["recipes"]
    ap = trainer_arguments(__doc__, recipes, OUT_DIR, threads=2, out_help="where the .nam and manifest go",
                           workdir_help="where the data and checkpoints go (default: a temp dir)",
                           gpu=True)
    ap.add_argument("--remeasure", action="store_true",
                    help="measure the shipped file in --out-dir again (test ESRs, manifest) instead of training")
    ap.add_argument("--data-only", action="store_true",
                    help="make the data in --workdir and stop (runs side by side then share one work folder)")
    ap.add_argument("--init", type=Path,
                    help="start from this exported .nam (the recipe's shape) instead of the initialisation: "
                         "fine-tuning; the manifest records the file's SHA-256")
    args = ap.parse_args()
    recipe = merged(resolved(recipes, args.recipe), args.override)
    learning = recipe["learning"]
    check_init(args.recipe, recipe, args.init, args.remeasure)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(learning["seed"])
    device = torch.device(args.device)
    started = start_run(args.recipe, args.workdir, ["engine", "app", "training"])
    commit, nb, work, tmp = started.commit, started.binary, started.work, started.data
    rate = recipe["sample_rate"]
    prewarm = int(PREWARM_S * rate)

    # 1. Data.
    log(f"making data in {tmp}")
    chunks = {split: expand_chunks(recipe, split) for split in recipe["splits"]}
    if args.remeasure:
        chunks = {split: cs for split, cs in chunks.items() if split.startswith("test")}
    # Held-out chunks start after a pre-roll of silence with the LFO running (not scored); training windows are
    # cut from anywhere in their chunks.
    pre_roll = {split: 0 if split.startswith("train") else int(PRE_ROLL_S * rate) for split in chunks}
    data = {split: [make_chunk(nb, tmp, recipe, c, pre_roll[split] / rate) for c in cs] for split, cs in chunks.items()}
    if args.data_only:
        log(f"data made in {tmp}")
        return

    def stacked(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's chunks as one batch ([B, T, 2] input after the prewarm silence, [B, T] target)."""
        length = max(len(x) for x, _, _ in data[split])
        inp = np.zeros((len(data[split]), prewarm + length, 2), dtype=np.float32)
        tgt = np.zeros((len(data[split]), length), dtype=np.float32)
        for b, (x, lfo, y) in enumerate(data[split]):
            inp[b, prewarm:prewarm + len(x), 0] = x
            inp[b, prewarm:prewarm + len(x), 1] = lfo
            tgt[b, :len(y)] = y
        return torch.from_numpy(inp), torch.from_numpy(tgt)

    # 2. Model and training.
    hidden = recipe["hidden_size"]
    Net = net_class(torch, hidden)  # noqa: N806 (a class)
    net = Net()
    if args.init:
        load_nam_weights(net, json.loads(args.init.read_text()), torch)
        log(f"starting from {args.init}")
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=learning["lr"])
    coef = learning["pre_emphasis"]

    def loss_fn(y_hat, y):
        def one(a, b):
            return torch.sum((a - b) ** 2) / (torch.sum(b**2) + 1e-8)

        pe = lambda s: s[:, 1:] - coef * s[:, :-1]  # noqa: E731
        return one(y_hat, y) + one(pe(y_hat), pe(y))

    def evaluate(model: Net, split: str) -> tuple[float, list[float]]:
        inp, tgt = stacked(split)
        # In pieces, the state carried across (cuDNN refuses sequences of a whole chunk; the result is the same).
        dev, pieces, state = next(model.parameters()).device, [], None
        with torch.no_grad():
            for s in range(0, inp.shape[1], 16384):
                piece, state = model(inp[:, s:s + 16384].contiguous().to(dev), state)
                pieces.append(piece.cpu())
        skip = pre_roll[split]
        out = torch.cat(pieces, dim=1)[:, prewarm + skip:].numpy()
        targets = [y[skip:] for _, _, y in data[split]]
        per = [esr(y, out[b, :len(y)]) for b, y in enumerate(targets)]
        total_err = sum(np.sum((y.astype(np.float64) - out[b, :len(y)]) ** 2) for b, y in enumerate(targets))
        total = sum(np.sum(y.astype(np.float64) ** 2) for y in targets)
        return float(total_err / total), per

    if args.remeasure:
        remeasure(args, recipe, Net, evaluate, commit, torch)
        return

    validation_splits = [split for split in chunks if split.startswith("validation")]

    def criterion(model: Net) -> tuple[float, dict]:
        """The mean of the validation splits' ESRs, and each."""
        per_split = {split: round(evaluate(model, split)[0], 6) for split in validation_splits}
        return float(np.mean(list(per_split.values()))), per_split

    # Every split named `train...`, in the recipe's order: the order the window sampler draws chunks by.
    train_splits = [split for split in chunks if split.startswith("train")]
    train = [chunk for split in train_splits for chunk in data[split]]
    lengths = np.array([len(y) for _, _, y in train], dtype=np.int64)
    # All training audio on the training device once, end to end; a window is gathered there by index (at a GPU's
    # batch sizes, copying windows from the host each step would cost more than the step).
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    train_inp = torch.from_numpy(np.concatenate([np.stack([x, lfo], axis=1) for x, lfo, _ in train])).to(device)
    train_tgt = torch.from_numpy(np.concatenate([y for _, _, y in train])).to(device)
    rng = np.random.default_rng(learning["seed"])
    warm, trunc, k = learning["warmup"], learning["truncate"], learning["updates_per_window"]
    window = warm + k * trunc
    batch = learning["batch"]
    max_minutes = args.max_minutes if args.max_minutes is not None else recipe["max_minutes"]
    stop_below = recipe["target_esr"]["test"] * recipe["stop_at_fraction_of_target"]
    log(f"training {args.recipe}: LSTM {hidden}, {sum(lengths) / rate:.0f} s of training audio in "
        f"{len(train)} chunks, at most {max_minutes} min on {args.device} ({args.threads} CPU threads)")

    t0 = time.time()
    best = (float("inf"), copy.deepcopy(net.state_dict()), 0)
    if args.init:
        best = (criterion(net)[0], copy.deepcopy(net.state_dict()), 0)
        log(f"validation ESR at the start: {best[0]:.5f}")
    last_val = t0
    windows = 0
    history = []
    while True:
        elapsed = time.time() - t0
        if elapsed > max_minutes * 60:
            break
        for g in opt.param_groups:
            g["lr"] = learning["lr"] * learning["lr_final_fraction"] ** (elapsed / (max_minutes * 60))
        which = rng.choice(len(train), size=batch, p=lengths / lengths.sum())
        starts = np.array([offsets[c] + rng.integers(0, lengths[c] - window) for c in which], dtype=np.int64)
        index = torch.from_numpy(starts).to(device)[:, None] + torch.arange(window, device=device)[None]
        inp_t, tgt_t = train_inp[index], train_tgt[index]
        with torch.no_grad():
            _, state = net(inp_t[:, :warm].contiguous())
        for u in range(k):
            s = warm + u * trunc
            y_hat, state = net(inp_t[:, s:s + trunc].contiguous(), state)  # cuDNN takes contiguous input only
            loss = loss_fn(y_hat, tgt_t[:, s:s + trunc])
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = tuple(t.detach() for t in state)
        windows += 1
        if time.time() - last_val > learning["validate_every_s"]:
            last_val = time.time()
            val, per_split = criterion(net)
            if val < best[0]:
                best = (val, copy.deepcopy(net.state_dict()), windows)
            history.append({"minutes": round((time.time() - t0) / 60, 2), "windows": windows, "validation_esr": val,
                            **({"splits": per_split} if len(per_split) > 1 else {})})
            log(f"{(time.time() - t0) / 60:5.1f} min, {windows} windows, loss {loss.item():.5f}, "
                f"validation ESR {val:.5f} (best {best[0]:.5f}){'' if len(per_split) == 1 else f' {per_split}'}")
            if val < stop_below:
                log(f"validation ESR under {stop_below}: stopping")
                break
    minutes = (time.time() - t0) / 60
    val, _ = criterion(net)
    if val < best[0]:
        best = (val, copy.deepcopy(net.state_dict()), windows)
    net.load_state_dict(best[1])
    # The export and the test ESRs on the CPU, as the engine runs it (cuDNN's LSTM rounds a little differently).
    net = net.cpu()

    # 3. Export, test, manifest.
    lstm = net.lstm
    weights = np.concatenate([
        torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1).detach().numpy().ravel(),
        (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy(),
        np.zeros(2 * hidden, dtype=np.float32),  # h0, c0: a zero state (the engine prewarms from it)
        net.head.weight.detach().numpy().ravel(),
        net.head.bias.detach().numpy(),
    ]).astype(np.float32)
    results = test_results(net, evaluate, chunks)
    meta = dict(recipe["nam_metadata"])
    meta["neuralboard"] = {
        "effect": recipe["teacher"]["kind"],
        "inputs": ["audio", "lfo"],
        "residual": True,
        "teacher": recipe["teacher"],
        "lfo": {"waveforms": ["sine", "triangle"], "rates_hz": [min(recipe["rates"]["train"]),
                                                                 max(recipe["rates"]["train"])]},
    }
    meta["training"] = {"recipe": f"training/modulation/train.py {args.recipe}",
                        "test_esr": results["test"]["esr"]}
    model = {
        "version": "0.5.4",
        "architecture": "LSTM",
        "config": {"input_size": 2, "hidden_size": hidden, "num_layers": 1, "in_channels": 2, "out_channels": 1},
        "weights": [float(w) for w in weights],
        "sample_rate": rate,
        "metadata": meta,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    nam_out = args.out_dir / f"{args.recipe}.nam"
    tmp_out = nam_out.with_suffix(".nam.tmp")
    tmp_out.write_text(json.dumps(model, separators=(",", ":")))
    os.replace(tmp_out, nam_out)
    missed = targets_missed(recipe, results)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": args.recipe,
        "file": nam_out.name,
        "architecture": recipe["architecture"],
        "sample_rate": rate,
        "teacher": recipe["teacher"],
        "chunks": {split: cs for split, cs in chunks.items() if split.startswith("test")},
        "results": results,
        "target_esr": recipe["target_esr"],
        "targets_missed": missed,
        "lfo_pre_roll_s": PRE_ROLL_S,
        "esr_definition": ESR_DEFINITION,
        "training": {
            "recipe": f"python training/modulation/train.py {args.recipe}",
            "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "framework": f"torch {torch.__version__}",
            "machine": f"{platform.machine()}, {device_name(torch, device)}, {args.threads} torch threads",
            "overrides": args.override,
            **init_record(args.init),
            "minutes": round(minutes, 1),
            "windows": windows,
            "best_at_window": best[2],
            "best_validation_esr": best[0],
            "validation_history": history,
            **{f"{split}_chunks": chunks[split] for split in train_splits},
            **{f"{split}_chunks": chunks[split] for split in validation_splits},
        },
    }
    manifest_path = args.out_dir / f"{args.recipe}.manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {nam_out} and {manifest_path}")


ESR_DEFINITION = (
    "sum((teacher - model)^2) / sum(teacher^2) over all chunks of a split, the model fed [audio, depth_scale * LFO] "
    "from a zero state after 0.5 s of silence with the LFO at 0 (the engine's prewarm), then lfo_pre_roll_s of "
    "silence with the LFO running up to the chunk's phase (not scored)")


def test_results(net, evaluate, chunks: dict) -> dict:
    """Each test split's ESR and per-chunk ESRs, for the manifest."""
    results = {}
    for split in chunks:
        if split.startswith("test"):
            total, per = evaluate(net, split)
            results[split] = {"esr": total, "per_chunk": [round(e, 6) for e in per]}
            log(f"{split}: ESR {total:.5f} per chunk {[f'{e:.4f}' for e in per]}")
    return results


def targets_missed(recipe: dict, results: dict) -> list[str]:
    """A model that misses a target still ships if it is the best the recipe reaches, but says so: the suite then
    holds it to its recorded error instead of the target (the target stays in the manifest, and the issue open)."""
    missed = [split for split, target in recipe["target_esr"].items() if results[split]["esr"] > target]
    if missed:
        log(f"targets missed: {missed}")
    return missed


def load_nam_weights(net, model: dict, torch) -> None:
    """Sets `net` to the weights of an exported model (the inverse of the export in `main`; the summed bias goes to
    `bias_ih`)."""
    hidden = model["config"]["hidden_size"]
    assert hidden == net.lstm.hidden_size and model["config"]["input_size"] == 2, "not this recipe's shape"
    w = np.asarray(model["weights"], dtype=np.float32)
    cols = 2 + hidden
    assert len(w) == 4 * hidden * cols + 6 * hidden + hidden + 1, "weight count"
    matrix, w = w[:4 * hidden * cols].reshape(4 * hidden, cols), w[4 * hidden * cols:]
    bias, w = w[:4 * hidden], w[4 * hidden:]
    state, w = w[:2 * hidden], w[2 * hidden:]
    assert not state.any(), "the exported initial state is zero"
    with torch.no_grad():
        net.lstm.weight_ih_l0.copy_(torch.from_numpy(matrix[:, :2]))
        net.lstm.weight_hh_l0.copy_(torch.from_numpy(matrix[:, 2:]))
        net.lstm.bias_ih_l0.copy_(torch.from_numpy(bias))
        net.lstm.bias_hh_l0.zero_()
        net.head.weight.copy_(torch.from_numpy(w[:hidden])[None])
        net.head.bias.fill_(float(w[hidden]))


def remeasure(args, recipe: dict, net_class, evaluate, commit: str, torch) -> None:
    """Measures the shipped `.nam` in --out-dir again, as the test ESRs are now defined, into its manifest (the
    training record kept, the re-measurement recorded beside it)."""
    nam_path = args.out_dir / f"{args.recipe}.nam"
    manifest_path = args.out_dir / f"{args.recipe}.manifest.json"
    model, manifest = json.loads(nam_path.read_text()), json.loads(manifest_path.read_text())
    tests = dict(manifest["chunks"])
    assert tests == {split: expand_chunks(recipe, split) for split in tests}, "the manifest's chunks are not the recipe's"
    net = net_class()
    load_nam_weights(net, model, torch)
    before = {split: r["esr"] for split, r in manifest["results"].items()}
    results = test_results(net, evaluate, tests)
    manifest.update(results=results, targets_missed=targets_missed(recipe, results), lfo_pre_roll_s=PRE_ROLL_S,
                    esr_definition=ESR_DEFINITION)
    manifest["remeasured"] = {
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "framework": f"torch {torch.__version__}",
        "esr_before": before,
        "note": "the held-out chunks now start after 0.5 s of silence with the LFO running (lfo_pre_roll_s); before, "
                "the LFO stepped from 0 to the chunk's phase at the chunk's first sample",
    }
    tmp_out = manifest_path.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp_out, manifest_path)
    log(f"wrote {manifest_path}")


if __name__ == "__main__":
    sys.exit(main())
