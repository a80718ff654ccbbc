"""What the training scripts share: logging, the neuralboard binary that makes the data, ESR, the commit."""

from __future__ import annotations

import os
import subprocess
import time
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


def esr(y: np.ndarray, y_hat: np.ndarray) -> float:
    """sum((y - y_hat)^2) / sum(y^2), in double precision."""
    y, y_hat = y.astype(np.float64), y_hat.astype(np.float64)
    return float(np.sum((y - y_hat) ** 2) / np.sum(y**2))


def git_commit(paths: list[str]) -> str:
    """HEAD, with "-dirty" when `paths` have uncommitted changes."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
