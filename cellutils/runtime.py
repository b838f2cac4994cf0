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


SETTINGS = ("smoke", "quick", "full")
SETTINGS_ENV = "CELLPAINT_SETTINGS"


def resolve_settings(explicit: str | None, device) -> tuple[str, str]:
    """Which run settings apply, and why. One rule everywhere: an explicit value (papermill,
    the command line, or the notebook's parameters cell), else ``$CELLPAINT_SETTINGS``, else
    ``full`` on a GPU and ``quick`` otherwise."""
    env = os.environ.get(SETTINGS_ENV)
    if explicit:
        name, why = explicit, "set explicitly"
    elif env:
        name, why = env, f"from ${SETTINGS_ENV}"
    elif getattr(device, "type", str(device)) == "cuda":
        name, why = "full", "a GPU is present"
    else:
        name, why = "quick", f"no GPU ({getattr(device, 'type', device)})"
    if name not in SETTINGS:
        raise ValueError(f"settings {name!r} ({why}): choose one of {', '.join(SETTINGS)}")
    return name, why


def apply_settings(
    namespace: dict, notebook: str, gpu_minutes: float | None = None, device=None
) -> str:
    """Resolve the run settings (:func:`resolve_settings`) and apply them to a notebook's
    parameters in ``namespace`` (its ``globals()``): ``quick`` and ``smoke`` take their values
    from ``notebooks/settings.yml``, ``full`` keeps the parameters cell (the report's
    settings). A parameter set explicitly (by papermill, or edited in the cell so that it
    differs from the saved notebook) is kept. Prints one line saying which settings run, why,
    and how to switch; returns the settings' name."""
    from cellutils.notebooks import load_settings, parameter_defaults

    device = device or pick_device(verbose=False)
    name, why = resolve_settings(namespace.get("settings"), device)
    overrides = load_settings(name, notebook)
    unknown = sorted(set(overrides) - set(namespace))
    if unknown:
        raise ValueError(
            f"notebooks/settings.yml sets {unknown} for {notebook}, which its parameters cell "
            "does not define; fix the settings file or the notebook."
        )
    defaults = parameter_defaults(notebook)
    changed, kept = [], []
    for key, value in overrides.items():
        current = namespace[key]
        explicit = defaults is not None and key in defaults and current != defaults[key]
        if explicit and current != value:
            kept.append(key)
            continue
        if current != value:
            changed.append(key)
        namespace[key] = value
    namespace["settings"] = name
    switch = "full" if name != "full" else "quick"
    note = f" ({len(changed)} values from notebooks/settings.yml)" if changed else ""
    print(
        f"settings: {name} ({why}){note}. For the {switch} settings: set "
        f'settings = "{switch}" in the parameters cell, or ${SETTINGS_ENV}={switch}, or '
        f"`make reproduce SETTINGS={switch}`.",
        flush=True,
    )
    if changed:
        print("  from settings.yml: " + ", ".join(f"{k}={namespace[k]!r}" for k in changed))
    if kept:
        print("  kept as set: " + ", ".join(f"{k}={namespace[k]!r}" for k in kept))
    if name == "full" and gpu_minutes is not None:
        warn_full_cost(device, gpu_minutes, notebook)
    return name


def warn_full_cost(device, gpu_minutes: float, notebook: str = "<notebook>") -> None:
    """Say what the full settings cost where they run: on a CPU, the GPU estimate and that it
    is many times longer there (not measured on a CPU), with the way to the quick settings."""
    where = getattr(device, "type", str(device))
    if where == "cpu":
        print(
            f"WARNING: the full settings (the report's) need about {gpu_minutes:.0f} min on one "
            "GPU (an estimate) and many hours on a CPU. For the quick settings: set "
            f'settings = "quick" in the parameters cell and Run All (or headless: '
            f"`python -m cellutils.notebooks run --only {notebook[:2]}`).",
            flush=True,
        )
    else:
        print(f"full settings on {where}: expect about {gpu_minutes:.0f} min", flush=True)
