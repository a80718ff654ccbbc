#!/usr/bin/env python3
"""Train one of Neuralboard's default amp models with the official NAM trainer.

    python training/amp/train.py RECIPE [--threads N] [--workdir DIR] [--max-minutes M]

RECIPE is a name from training/amp/recipes.json. The recipe fixes everything that decides the weights: the corpus
seeds and lengths of the train/validation/test splits, the amp teacher's settings, the architecture and the
learning settings. The data is made by the project's own Rust commands (`neuralboard corpus` and
`neuralboard teacher amp`), so the test split can be regenerated bit for bit by `neuralboard eval`.

Steps:
1. corpus(train seed) and corpus(validation seed), each after 0.5 s of silence (the trainer wants >= 0.4 s of
   silent input before each split), through the amp teacher in one pass -> x.wav / y.wav (24-bit PCM).
2. nam.train.full.main with the recipe's configs (torch seeded by the trainer at import; early stop once the
   validation ESR is well under the recipe's target, or at the time limit).
3. The exported .nam goes to assets/models/amp/<name>.nam with the recipe's metadata; the test split
   (corpus(test seed) through the teacher) is run through the *trainer's* forward pass of the exported file and
   its ESR is written to the manifest <name>.manifest.json beside it.

The binary is taken from $NEURALBOARD if set, else built with `cargo build --release -p neuralboard`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.io import wavfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import esr, log, run, start_run, trainer_arguments  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RECIPES = HERE / "recipes.json"
OUT_DIR = REPO / "assets" / "models" / "amp"
# The trainer requires at least 0.4 s of silent input right before each split starts.
PRE_SILENCE_S = 0.5
MANIFEST_VERSION = 1


def read_float(path: Path) -> tuple[np.ndarray, int]:
    rate, data = wavfile.read(path)
    assert data.dtype == np.float32 and data.ndim == 1, f"{path}: expected mono float32"
    return data.astype(np.float64), rate


def write_float(path: Path, x: np.ndarray, rate: int) -> None:
    wavfile.write(path, rate, x.astype(np.float32))


def write_pcm24(path: Path, x: np.ndarray, rate: int) -> None:
    import wavio

    if np.max(np.abs(x)) >= 1.0:
        raise SystemExit(f"{path}: signal reaches full scale; lower the teacher's master level")
    wavio.write(str(path), np.round(x * (2**23 - 1)).astype(np.int32), rate, sampwidth=3)


def teacher_args(recipe: dict) -> list:
    args = []
    for k, v in recipe["teacher"]["params"].items():
        args += ["--param", f"{k}={v}"]
    return args


def make_split(nb: Path, tmp: Path, seed: int, seconds: float, rate: int) -> np.ndarray:
    path = tmp / f"corpus-{seed}.wav"
    run([nb, "corpus", "--seed", seed, "--seconds", seconds, "--rate", rate, path])
    x, r = read_float(path)
    assert r == rate
    return x


def teacher(nb: Path, tmp: Path, recipe: dict, x: np.ndarray, rate: int, name: str) -> np.ndarray:
    src, dst = tmp / f"{name}-in.wav", tmp / f"{name}-out.wav"
    write_float(src, x, rate)
    run([nb, "teacher", recipe["teacher"]["kind"], *teacher_args(recipe), src, dst])
    y, _ = read_float(dst)
    assert len(y) == len(x)
    return y


def trainer_forward(nam_path: Path, x: np.ndarray) -> np.ndarray:
    """The trainer's own forward pass of an exported .nam, from a silent history (as a player's prewarm)."""
    import torch
    from nam.models import init_from_nam

    with open(nam_path) as f:
        model = init_from_nam(json.load(f))
    model.eval()
    # Enough silence before the signal that every model starts from its settled state: a WaveNet's receptive
    # field, and for an LSTM the same prewarm the engine uses (a half second).
    pad = max(getattr(model, "receptive_field", 1) - 1, 0) + int(0.5 * 48_000)
    xx = torch.tensor(np.concatenate([np.zeros(pad), x]), dtype=torch.float32)
    with torch.no_grad():
        y = model(xx, pad_start=False).numpy().astype(np.float64)
    return y[-len(x):]


def install_early_stop(stop_below: float) -> None:
    """Stop once the validation ESR is under `stop_below` (the trainer has no such option of its own; its
    callbacks come from nam.train.full._create_callbacks, so one is appended there)."""
    import pytorch_lightning as pl
    import nam.train.full as full

    original = full._create_callbacks

    def with_early_stop(learning_config, packed=False):
        callbacks = original(learning_config, packed=packed)
        callbacks.append(
            pl.callbacks.EarlyStopping(monitor="ESR", mode="min", stopping_threshold=stop_below, patience=10**9)
        )
        return callbacks

    full._create_callbacks = with_early_stop


def checkpoint_esr(name: str) -> float:
    """The validation ESR in a best-checkpoint file name ("epoch=0012_step=..._ESR=1.234e-02_MSE=....ckpt")."""
    return float(name.split("ESR=")[1].split("_")[0])


def main() -> None:
    recipes = json.loads(RECIPES.read_text())["recipes"]
    ap = trainer_arguments(__doc__, recipes, OUT_DIR, threads=2, out_help="where the .nam and manifest go",
                           workdir_help="where data, checkpoints and logs go (default: a temp dir)")
    args = ap.parse_args()
    recipe = recipes[args.recipe]

    import torch

    torch.set_num_threads(args.threads)
    import nam
    import nam.train.full as full

    started = start_run(args.recipe, args.workdir, ["engine", "app"], fresh=True)
    commit, nb, work, tmp = started.commit, started.binary, started.work, started.data
    rate = recipe["sample_rate"]
    splits = recipe["splits"]

    # 1. Data.
    log(f"making data in {tmp}")
    silence = np.zeros(int(PRE_SILENCE_S * rate))
    x_train = make_split(nb, tmp, splits["train"]["seed"], splits["train"]["seconds"], rate)
    x_val = make_split(nb, tmp, splits["validation"]["seed"], splits["validation"]["seconds"], rate)
    x = np.concatenate([silence, x_train, silence, x_val])
    y = teacher(nb, tmp, recipe, x, rate, "trainval")
    write_pcm24(tmp / "x.wav", x, rate)
    write_pcm24(tmp / "y.wav", y, rate)
    train_start = len(silence) / rate
    train_stop = (len(silence) + len(x_train)) / rate
    val_start = (2 * len(silence) + len(x_train)) / rate

    data_config = {
        "train": {"ny": recipe["ny"], "start_seconds": train_start, "stop_seconds": train_stop},
        "validation": {"ny": None, "start_seconds": val_start},
        "common": {"x_path": str(tmp / "x.wav"), "y_path": str(tmp / "y.wav"), "delay": 0},
    }
    model_config = recipe["model"]
    max_minutes = args.max_minutes if args.max_minutes is not None else recipe["max_minutes"]
    learning = recipe["learning"]
    hh, mm = divmod(int(max_minutes), 60)
    learning_config = {
        "train_dataloader": {"batch_size": learning["batch_size"], "shuffle": True, "pin_memory": False,
                             "drop_last": True, "num_workers": 0},
        "val_dataloader": {},
        "trainer": {"accelerator": "auto", "devices": 1, "max_epochs": learning["max_epochs"],
                    "max_time": f"00:{hh:02d}:{mm:02d}:00", "enable_progress_bar": False,
                    "log_every_n_steps": 10},
        "trainer_fit_kwargs": {},
    }
    install_early_stop(recipe["target_esr"] * recipe["stop_at_fraction_of_target"])

    # 2. Train.
    outdir = work / "trainer"
    outdir.mkdir()
    log(f"training {args.recipe} ({recipe['architecture']}) for at most {max_minutes} min, {args.threads} threads")
    t0 = time.time()
    full.main(data_config, model_config, learning_config, outdir, no_show=True, make_plots=False)
    minutes = (time.time() - t0) / 60
    exported = outdir / "model.nam"
    if not exported.exists():
        raise SystemExit(f"the trainer exported nothing in {outdir}")
    # The per-epoch checkpoint keeps only the last one: "checkpoint_epoch_epoch=0065.ckpt" after 66 epochs.
    epochs = max((int(p.stem.split("=")[-1]) + 1 for p in outdir.rglob("checkpoint_epoch_*.ckpt")), default=0)
    best_val_esr = min((checkpoint_esr(p.name) for p in outdir.rglob("*ESR=*.ckpt")), default=None)

    # 3. Test split, metadata, manifest.
    x_test = make_split(nb, tmp, splits["test"]["seed"], splits["test"]["seconds"], rate)
    y_test = teacher(nb, tmp, recipe, x_test, rate, "test")
    test_esr = esr(y_test, trainer_forward(exported, x_test))
    log(f"test ESR {test_esr:.5f} (target {recipe['target_esr']})")

    model = json.loads(exported.read_text())
    meta = model.setdefault("metadata", {})
    meta.update(recipe["nam_metadata"])
    meta["training"] = {"recipe": f"training/amp/train.py {args.recipe}", "test_esr": test_esr}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    nam_out = args.out_dir / f"{args.recipe}.nam"
    tmp_out = nam_out.with_suffix(".nam.tmp")
    tmp_out.write_text(json.dumps(model, separators=(",", ":")))
    os.replace(tmp_out, nam_out)

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": args.recipe,
        "file": nam_out.name,
        "architecture": recipe["architecture"],
        "sample_rate": rate,
        "teacher": recipe["teacher"],
        "splits": splits,
        "test_esr": test_esr,
        "target_esr": recipe["target_esr"],
        "esr_definition": "sum((teacher - model)^2) / sum(teacher^2) over the whole test split, model from silence",
        "training": {
            "recipe": f"python training/amp/train.py {args.recipe}",
            "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trainer": f"neural-amp-modeler {nam.__version__}, torch {torch.__version__}",
            "machine": f"{platform.machine()}, {args.threads} torch threads",
            "minutes": round(minutes, 1),
            "epochs_run": epochs,
            "best_validation_esr": best_val_esr,
            "torch_seed": 0,
        },
    }
    manifest_path = args.out_dir / f"{args.recipe}.manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {nam_out} and {manifest_path}")


if __name__ == "__main__":
    sys.exit(main())
