"""The environment stored with every run: versions, hardware and threads."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

_LIBRARIES = ("kanbench", "torch", "numpy", "scikit-learn", "pandas", "pykan", "ikan", "inkan",
              "efficient-kan")


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kanbench_commit() -> str | None:
    """The git commit of the kanbench source that runs (with "+dirty" when it has uncommitted
    changes), or None outside a git checkout or without git."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    return {
        "host": platform.node(),  # on a cluster, the node a run trained on
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "libraries": {lib: v for lib in _LIBRARIES if (v := _version(lib)) is not None},
        "cuda": torch.version.cuda,
        "kanbench_commit": kanbench_commit(),
    }


def environment(device: str) -> dict[str, Any]:
    env = dict(_static())
    env["torch_threads"] = torch.get_num_threads()
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(dev)
    return env
