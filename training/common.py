"""What the training scripts share: logging, the neuralboard binary that makes the data, ESR, the commit, and how a
run starts (arguments, work folder)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def neuralboard_binary() -> Path:
    """$NEURALBOARD if set, else a fresh `cargo build --release -p neuralboard`."""
    env = os.environ.get("NEURALBOARD")
    if env:
        return Path(env)
    log("building neuralboard (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "neuralboard"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "neuralboard"


def run(cmd: list) -> None:
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def run_once(cmd: list, *outputs: Path) -> None:
    """`run(cmd)` unless every file it writes is already there (a work folder reused: the data is a pure function
    of the recipe, so a second run, or a run on another machine given the folder, need not make it again)."""
    if not all(Path(o).exists() for o in outputs):
        run(cmd)


def esr(y: np.ndarray, y_hat: np.ndarray) -> float:
    """sum((y - y_hat)^2) / sum(y^2), in double precision."""
    y, y_hat = y.astype(np.float64), y_hat.astype(np.float64)
    return float(np.sum((y - y_hat) ** 2) / np.sum(y**2))


def git_commit(paths: list[str]) -> str:
    """HEAD, with "-dirty" when `paths` have uncommitted changes; $NEURALBOARD_COMMIT instead when it is set (for a
    copy of the tree without git history, sent to a GPU machine: give it the commit and "-dirty" yourself)."""
    if os.environ.get("NEURALBOARD_COMMIT"):
        return os.environ["NEURALBOARD_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def trainer_arguments(doc: str, recipes: dict, out_dir: Path, threads: int, out_help: str,
                      workdir_help: str = "where the data goes (default: a temp dir)",
                      gpu: bool = False) -> argparse.ArgumentParser:
    """The arguments every trainer takes: RECIPE, --threads, --workdir, --max-minutes, --out-dir; with `gpu` (the
    trainers that honour them) --override and --device too."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", choices=sorted(recipes))
    ap.add_argument("--threads", type=int, default=threads, help=f"torch CPU threads (default {threads})")
    ap.add_argument("--workdir", type=Path, help=workdir_help)
    ap.add_argument("--max-minutes", type=float, help="override the recipe's time limit")
    ap.add_argument("--out-dir", type=Path, default=out_dir, help=out_help)
    if not gpu:
        return ap
    ap.add_argument("--override", type=json.loads, default={},
                    help='JSON merged into the recipe, for experiments (recorded in the manifest): '
                         '\'{"hidden_size": 48}\'')
    ap.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda); the export and the "
                    "manifest's ESRs are computed on the CPU either way")
    return ap


def check_init(name: str, recipe: dict, init: Path | None, remeasure: bool) -> None:
    """A recipe with a top-level `init` fine-tunes another recipe's model: training it requires --init, and a file
    other than the recorded parent (by SHA-256) is allowed with a note."""
    parent = recipe.get("init")
    if parent and not init and not remeasure:
        raise SystemExit(
            f"recipe {name} fine-tunes the model of recipe {parent['recipe']}: give it with --init FILE (the one "
            f"used: `git show {parent['git_show']}`, SHA-256 {parent['sha256']}; or train {parent['recipe']} first)")
    if init and parent:
        found = hashlib.sha256(init.read_bytes()).hexdigest()
        if found != parent["sha256"]:
            log(f"note: {init} is not the parent this recipe was trained from (SHA-256 {found}, recipe "
                f"{parent['sha256']}): the result will differ")


def init_record(init: Path | None) -> dict:
    """What a manifest's training record says about --init: the file and its SHA-256 (nothing without one)."""
    return {"init": {"file": str(init), "sha256": hashlib.sha256(init.read_bytes()).hexdigest()}} if init else {}


def merged(base: dict, override: dict) -> dict:
    """`base` with `override` merged in, nested dictionaries key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def resolved(recipes: dict, name: str) -> dict:
    """Recipe `name` in full. A recipe with `extends` lists only what it changes: it is its parent's (resolved in
    turn) with its own keys merged in (nested dictionaries key by key, so a new split is added beside the parent's;
    lists and numbers replaced). `init`, the model a fine-tune starts from, belongs to each recipe alone: a child
    never inherits its parent's. The keys a child names in `replaces` it gives whole, in its own order, instead:
    the order of the splits decides the order of the training chunks, which the batches are drawn by, so a split
    added other than at the end means restating them."""
    chain = [name]
    while "extends" in recipes[chain[-1]]:
        parent = recipes[chain[-1]]["extends"]
        if parent not in recipes:
            raise SystemExit(f"recipe {chain[-1]} extends {parent}, which is not a recipe")
        if parent in chain:
            raise SystemExit(f"recipe {name}: `extends` goes round in a circle ({' -> '.join(chain + [parent])})")
        chain.append(parent)
    recipe = recipes[chain[-1]]
    for child in reversed(chain[:-1]):
        own = recipes[child]
        whole = own.get("replaces", [])
        recipe = {k: v for k, v in recipe.items() if k != "init"}
        for k in whole:
            recipe[k] = own[k]
        recipe = merged(recipe, {k: v for k, v in own.items() if k not in ("extends", "replaces", *whole)})
    return recipe


@dataclass
class Run:
    """Where a training run stands before anything runs."""

    commit: str  # of the tree the data and the recipe come from
    binary: Path  # the neuralboard that makes the data
    work: Path
    data: Path  # work/data


def start_run(recipe: str, workdir: Path | None, commit_paths: list[str], fresh: bool = False) -> Run:
    """Records the commit, builds (or finds) neuralboard and makes the work folder: `workdir`, emptied first when
    `fresh`, or a new temporary folder."""
    commit = git_commit(commit_paths)
    binary = neuralboard_binary().resolve()
    work = workdir or Path(tempfile.mkdtemp(prefix=f"nb-train-{recipe}-"))
    if fresh and workdir and work.exists():
        shutil.rmtree(work)
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    return Run(commit, binary, work, data)


def device_name(torch, device) -> str:
    """The device a run trained on, for its manifest: "cpu" or the GPU's name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
