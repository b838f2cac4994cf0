"""cellpose weights, offline: find the user's own (``cyto3`` in ``CELLPOSE_LOCAL_MODELS_PATH``
or ``~/.cellpose/models``), or build the ``cyto`` model of cellpose 0.0.1.6 from the registry's
wheel (MXNet arrays converted to cellpose 3's PyTorch network, checksum-verified; GPL-3: built
on your machine, never committed). ``make weights`` runs ``python -m cellutils.cellpose_weights``.

Every model file the course builds or installs is pinned by SHA-256 (``verify_sha256``): the
wheel's ``cyto_0`` and size model, the converted network (by a digest of its tensors, which
does not depend on torch's file format), and, in ``cellutils.models``, EfficientNet-Lite0's
weights and torchvision's (the hash prefix in their file names). The size model is a pickle
that cellpose loads with ``allow_pickle``; any size model (yours too) must first pass
``check_size_model``, which refuses a pickle that calls anything but numpy's array builders.

Segmenting is ``cellutils.segment``'s job; this module only provides the weights it uses.
"""

from __future__ import annotations

import hashlib
import io
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
SIZE0_SHA256 = "87f6102b50859c945461febba7e6611218761afa47a2761274870f4c3e8d4e57"
# digest of the converted network's tensors (``state_digest``): names, dtypes, shapes, values
CONVERTED_STATE_SHA256 = "79451f060605b60097cd0ec160667c8f351618b152bc517672a563ce3ae27a91"
CONVERTED = "cyto0_torch"  # file names in the cellpose model folder
CONVERTED_SIZE = "size_cyto0_torch.npy"


class WeightsError(RuntimeError):
    """The weights cannot be read, verified or built; the message has the fix."""


# Pinned hashes
# --------------------------------------------------------------------------------------------

_VERIFIED: dict[tuple[str, int, int, str], bool] = {}  # (path, size, mtime, digest) checked


def _stamp(path: Path, expected: str) -> tuple[str, int, int, str]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, expected


def verify_sha256(path: str | os.PathLike, expected: str, fix: str) -> Path:
    """Check ``path``'s SHA-256 against its pinned value; a mismatch is a ``WeightsError``
    naming the file and ``fix``. Checked once per file version (size, mtime) per process."""
    path = Path(path)
    stamp = _stamp(path, expected)
    if stamp in _VERIFIED:
        return path
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise WeightsError(
            f"{path} has SHA-256 {h.hexdigest()}, expected {expected}: the file is damaged "
            f"or not the one the course pins, so it is not loaded. {fix}"
        )
    _VERIFIED[stamp] = True
    return path


def state_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a state-dict file's tensors (sorted names, dtypes, shapes, values), loaded
    with ``weights_only=True``: the same for every torch version that wrote the file."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def verify_converted(path: str | os.PathLike) -> Path:
    """The converted cyto network, checked against ``CONVERTED_STATE_SHA256``."""
    path = Path(path)
    stamp = _stamp(path, CONVERTED_STATE_SHA256)
    if stamp not in _VERIFIED:
        digest = state_digest(path)
        if digest != CONVERTED_STATE_SHA256:
            raise WeightsError(
                f"{path}: its tensors' SHA-256 is {digest}, expected {CONVERTED_STATE_SHA256}; "
                "not the network converted from cellpose 0.0.1.6. Rebuild it: `make weights`."
            )
        _VERIFIED[stamp] = True
    return path


_NUMPY_BUILDERS = {
    (m, n)
    for m in ("numpy.core.multiarray", "numpy._core.multiarray")
    for n in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


def check_size_model(path: str | os.PathLike) -> Path:
    """Refuse a cellpose size model (a pickled dict in a ``.npy``) whose pickle calls anything
    but numpy's array builders: cellpose loads it with ``allow_pickle=True``."""
    import pickle

    path = Path(path)

    class _Numpy(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in _NUMPY_BUILDERS:
                raise WeightsError(
                    f"{path}: the size model's pickle calls {module}.{name}; a size model "
                    "holds only numpy arrays, so it is not loaded. Replace the file with "
                    "cellpose's own (or delete it: sizes then come from the diameter you pass)."
                )
            return super().find_class(module, name)

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(f)
            if dtype.hasobject:
                _Numpy(f).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(
            f"cannot read the size model {path} ({type(exc).__name__}: {exc}). Replace it "
            "with cellpose's own, or `make weights` for the converted model's."
        ) from exc
    return path


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
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    atomic_write_bytes(dest, buf.getvalue(), overwrite=True)
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
        for member, blob, expected in (
            ("cyto_0", data, CYTO0_SHA256),
            (SIZE0_MEMBER, size, SIZE0_SHA256),
        ):
            digest = hashlib.sha256(blob).hexdigest()
            if digest != expected:
                raise WeightsError(
                    f"{member} in {wheel} has SHA-256 {digest}, expected "
                    f"{expected}; refusing to use an unknown file."
                )
        raw = Path(tmp) / "cyto_0"
        raw.write_bytes(data)
        convert_cyto0(raw, dest)
        verify_converted(dest)
        atomic_write_bytes(size_dest, size, overwrite=True)
    return dest


@dataclass
class CellposeWeights:
    model: Path
    size_model: Path | None
    name: str


def find_cellpose_weights() -> CellposeWeights | None:
    """The best cellpose weights on this machine: your cyto3, else the converted cyto model
    (verified against its pinned hashes). Size models are checked by ``check_size_model``;
    cellpose loads the networks with ``weights_only=True``."""
    d = model_dir()
    if (d / "cyto3").exists():
        size = d / "size_cyto3.npy"
        return CellposeWeights(
            d / "cyto3", check_size_model(size) if size.exists() else None, "cyto3"
        )
    if (d / CONVERTED).exists():
        size = d / CONVERTED_SIZE
        if size.exists():
            verify_sha256(size, SIZE0_SHA256, "Rebuild it: `make weights`.")
            check_size_model(size)
        return CellposeWeights(
            verify_converted(d / CONVERTED),
            size if size.exists() else None,
            "cyto (cellpose 0.0.1.6, converted)",
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
