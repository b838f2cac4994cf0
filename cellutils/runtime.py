"""Device choice and seeding, the same in every notebook."""

from __future__ import annotations

import os
import random

import numpy as np


def pick_device(prefer: str | None = None, verbose: bool = True):
    """Return a ``torch.device``: ``prefer`` if given, else cuda, then mps, then cpu.

    ``prefer`` may also come from the ``CELLUTILS_DEVICE`` environment variable.
    """
    import torch

    prefer = prefer or os.environ.get("CELLUTILS_DEVICE")
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {prefer!r} was asked for but CUDA is not available; "
                "unset CELLUTILS_DEVICE or pass prefer=None to fall back to mps/cpu."
            )
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        print(f"cellutils: using device {device} ({name})")
    return device


def seed_everything(seed: int = 0, deterministic: bool = True) -> np.random.Generator:
    """Seed python, numpy and torch (all devices); return a numpy Generator from ``seed``.

    With ``deterministic`` torch uses deterministic algorithms where they exist (warning, not
    failing, where they do not), so two runs with the same seed give the same numbers on CPU.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries still draw from the legacy state
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, kept optional here
        return np.random.default_rng(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return np.random.default_rng(seed)


_SAID: set[str] = set()


def say_once(message: str) -> None:
    """Print ``message`` the first time it is said in this process (fallback notices)."""
    if message not in _SAID:
        _SAID.add(message)
        print(message)


def check_profile(
    profile: str, device, gpu_minutes: float, cpu_factor: float = 30.0, notebook: str = "<notebook>"
) -> None:
    """Say what the full profile costs where it runs: on a CPU, the expected time (about
    ``cpu_factor`` times the GPU time: our two-core machines train these networks 20-50 times
    slower than one H100) and the one-line way to the quick settings."""
    if profile != "full":
        return
    where = getattr(device, "type", str(device))
    if where == "cpu":
        hours = gpu_minutes * cpu_factor / 60
        print(
            f"WARNING: the full profile (the report's settings) on a CPU takes about {hours:.0f} "
            f"h (about {gpu_minutes:.0f} min on one GPU, an estimate). For the quick settings "
            "here, run this one line in a cell after the parameters cell, then Run All Below:\n"
            f"    from cellutils.notebooks import load_profile; profile = 'quick'; "
            f"globals().update(load_profile('quick', '{notebook}'))\n"
            "(or headless: `python -m cellutils.notebooks run --only "
            f"{notebook[:2]}`).",
            flush=True,
        )
    else:
        print(f"full profile on {where}: expect about {gpu_minutes:.0f} min", flush=True)
