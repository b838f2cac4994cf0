"""Bad input, one table per area: each case asserts a loud error that names the file (and the
fix), or a correct result. Sections are independent; fixtures of a section carry its prefix."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from cellutils import cellpose_weights, datasets, models, torchdata
from cellutils.images import ImageError

# ---- pixels ----
# Exact pixels (decode and load_site keep every file's values), unreadable files that stop
# the run at once and leave nothing behind, resumable decoding, weights pinned by hash.


def pixels_index(folder: Path, n: int = 6, size: int = 16, suffix: str = ".png", dtype=np.uint8):
    """``n`` sites of two channels (``a``, ``b``), random values, one file per channel."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        row = {"site": i}
        for c in ("a", "b"):
            path = folder / f"s{i:03d}_{c}{suffix}"
            top = 255 if dtype == np.uint8 else 4000
            arr = rng.integers(0, top, (size, size)).astype(dtype)
            (tifffile.imwrite if suffix == ".tif" else iio.imwrite)(path, arr)
            row[f"path_{c}"] = path
        rows.append(row)
    return pd.DataFrame(rows)


def pixels_files(index: pd.DataFrame, cache: Path) -> list[str]:
    """What a decode left in its cache folder (names only)."""
    folder = cache / "cache" / "decoded"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def pixels_png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit colour PNG written by hand (imageio/Pillow cannot write one)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class PixelsCounter:
    """Wraps ``torchdata.load_site``: counts sites, optionally raises at the ``stop``-th."""

    def __init__(self, stop: int | None = None, exc: type[BaseException] = KeyboardInterrupt):
        self.calls, self.stop, self.exc = 0, stop, exc
        self.load = torchdata.load_site

    def __call__(self, row, channels=None):
        self.calls += 1
        if self.stop is not None and self.calls == self.stop:
            raise self.exc()
        return self.load(row, channels)


def pixels_png16_among_png8(tmp_path, monkeypatch, request):
    """A 16-bit PNG among RxRx1's 8-bit ones comes back exactly (uint16), not modulo 256."""
    root = request.getfixturevalue("copy_of")("rxrx1")
    index = datasets.read_rxrx1(root, labels=False).iloc[:8]
    odd = index.path_w3.iloc[5]
    iio.imwrite(odd, np.full((48, 48), 300, np.uint16))
    images = torchdata.decode(index, data_root=tmp_path, verbose=False)
    assert images.dtype == np.uint16 and (images[5, 2] == 300).all()
    assert np.array_equal(images[0, 0], iio.imread(index.path_w1.iloc[0]))
    assert np.array_equal(datasets.load_site(index.iloc[5])[2], images[5, 2])


def pixels_float_tiff_among_uint16(tmp_path, monkeypatch, request):
    """A float32 TIFF among uint16 ones keeps its values (float32 array), never wrapped."""
    index = pixels_index(tmp_path / "img", suffix=".tif", dtype=np.uint16)
    odd = index.path_b.iloc[2]
    tifffile.imwrite(odd, np.full((16, 16), 70000.5, np.float32))
    images = torchdata.decode(index, data_root=tmp_path, verbose=False)
    assert images.dtype == np.float32 and (images[2, 1] == 70000.5).all()
    assert np.array_equal(images[0, 0], tifffile.imread(index.path_a.iloc[0]))


def pixels_grey_rgb_equal(tmp_path, monkeypatch, request):
    """A grey channel saved as RGB with equal planes is read as that grey channel."""
    index = pixels_index(tmp_path / "img")
    grey = iio.imread(index.path_a.iloc[1])
    iio.imwrite(index.path_a.iloc[1], np.repeat(grey[..., None], 3, axis=2))
    images = torchdata.decode(index, cache=False, verbose=False)
    assert images.shape == (6, 2, 16, 16) and np.array_equal(images[1, 0], grey)


def pixels_grey_rgb_unequal(tmp_path, monkeypatch, request):
    """A colour image with unequal planes in a grey column is an error naming the file
    (it used to keep its red plane)."""
    index = pixels_index(tmp_path / "img")
    colour = np.random.default_rng(1).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    iio.imwrite(index.path_b.iloc[3], colour)
    bad = index.path_b.iloc[3].name
    with pytest.raises(ImageError, match=rf"{bad} is a colour image.*planes differ"):
        torchdata.decode(index, data_root=tmp_path, verbose=False)
    with pytest.raises(ImageError, match=bad):
        datasets.load_site(index.iloc[3])


def pixels_corrupt_stops_at_once(tmp_path, monkeypatch, request):
    """A corrupt file stops the run at once, names the file and leaves no .partial."""
    index = pixels_index(tmp_path / "img", n=300, size=8)
    bad = index.path_a.iloc[3]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # header damaged
    counter = PixelsCounter()
    monkeypatch.setattr(torchdata, "load_site", counter)
    with pytest.raises(ImageError, match=re.escape(str(bad))):
        torchdata.decode(index, data_root=tmp_path, jobs=1, verbose=False)
    assert pixels_files(index, tmp_path) == []  # the header check stopped it before any cache
    iio.imwrite(bad, np.zeros((8, 8), np.uint8))
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2] + b"\0" * 40)  # header intact, data damaged
    with pytest.raises(ImageError, match=rf"cannot read image {re.escape(str(bad))}.*download"):
        torchdata.decode(index, data_root=tmp_path, jobs=1, verbose=False)
    assert counter.calls <= 64  # stopped within its first chunk, not after all 300 sites
    assert not [f for f in pixels_files(index, tmp_path) if f.endswith((".partial", ".lock"))]


def pixels_truncated(tmp_path, monkeypatch, request):
    """A truncated TIFF (download cut short) is an error naming it; nothing is left behind."""
    index = pixels_index(tmp_path / "img", n=4, suffix=".tif", dtype=np.uint16)
    bad = index.path_b.iloc[2]
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ImageError, match=rf"{re.escape(str(bad))}.*download or generate"):
        torchdata.decode(index, data_root=tmp_path, verbose=False)
    assert pixels_files(index, tmp_path) == []
    with pytest.raises(ImageError, match=re.escape(str(bad))):
        datasets.load_site(index.iloc[2])


def pixels_decode_resumes(tmp_path, monkeypatch, request):
    """An interrupted decode continues where it stopped (finished chunks are kept)."""
    index = pixels_index(tmp_path / "img", n=200, size=8)
    monkeypatch.setattr(torchdata, "load_site", PixelsCounter(stop=150))
    with pytest.raises(KeyboardInterrupt):
        torchdata.decode(index, data_root=tmp_path, jobs=1, verbose=False)
    left = pixels_files(index, tmp_path)
    assert any(f.endswith(".npy.partial") for f in left)
    assert not any(f.endswith(".npy") for f in left)
    counter = PixelsCounter()
    monkeypatch.setattr(torchdata, "load_site", counter)
    images = torchdata.decode(index, data_root=tmp_path, jobs=1, verbose=False)
    assert counter.calls == 200 - 128  # two chunks of 64 were finished before the interrupt
    assert np.array_equal(np.asarray(images), torchdata.decode(index, cache=False, verbose=False))
    assert [f for f in pixels_files(index, tmp_path) if "partial" in f or "lock" in f] == []


def pixels_png16_colour(tmp_path, monkeypatch, request):
    """A 16-bit colour PNG (Pillow would keep 8 bits per plane) is refused, file named."""
    index = pixels_index(tmp_path / "img", n=2)
    path = tmp_path / "img" / "rgb16.png"
    pixels_png16(path, np.full((16, 16, 3), 1000, np.uint16))
    index.loc[1, "path_a"] = path
    with pytest.raises(ImageError, match=rf"{path.name} is a 16-bit colour PNG"):
        torchdata.decode(index, cache=False, verbose=False)


def pixels_nan(tmp_path, monkeypatch, request):
    """A float TIFF holding NaN is refused with the file named (it would poison the stats)."""
    index = pixels_index(tmp_path / "img", n=3, suffix=".tif", dtype=np.uint16)
    arr = np.ones((16, 16), np.float32)
    arr[3, 3] = np.nan
    tifffile.imwrite(index.path_a.iloc[1], arr)
    with pytest.raises(ImageError, match=rf"{index.path_a.iloc[1].name} holds NaN"):
        torchdata.decode(index, data_root=tmp_path, verbose=False)
    assert pixels_files(index, tmp_path) == []


def pixels_sizes_differ(tmp_path, monkeypatch, request):
    """Sites of different sizes without ``size`` name the odd file and the fix."""
    index = pixels_index(tmp_path / "img", n=3)
    for c in ("a", "b"):
        iio.imwrite(index[f"path_{c}"].iloc[2], np.zeros((20, 20), np.uint8))
    with pytest.raises(ImageError, match=rf"{index.path_a.iloc[2].name} is \(20, 20\).*size="):
        torchdata.decode(index, cache=False, verbose=False)
    assert torchdata.decode(index, size=16, cache=False, verbose=False).shape == (3, 2, 16, 16)


def pixels_missing_file(tmp_path, monkeypatch, request):
    """A file deleted after the index was read is named (not a bare FileNotFoundError)."""
    index = pixels_index(tmp_path / "img", n=3)
    index.path_b.iloc[1].unlink()
    with pytest.raises(ImageError, match=rf"missing image file: .*{index.path_b.iloc[1].name}"):
        torchdata.decode(index, data_root=tmp_path, verbose=False)


def pixels_lite0_wrong_hash(tmp_path, monkeypatch, request):
    """EfficientNet-Lite0 weights with a wrong hash are refused, naming the file and fix."""
    src = models.lite0_weights_file()
    data = bytearray(src.read_bytes())
    data[-100] ^= 1
    fake = tmp_path / "efficientnet-lite0-57934424.pth"
    fake.write_bytes(bytes(data))
    monkeypatch.setattr(models, "lite0_weights_file", lambda: fake)
    with pytest.raises(cellpose_weights.WeightsError, match=rf"{fake.name}.*force-reinstall"):
        models.build("efficientnet_lite0", 3, 3, pretrained=True)


def pixels_cellpose_wrong_hash(tmp_path, monkeypatch, request):
    """A converted cellpose network or size model that is not the pinned one is refused."""
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    torch.save({"w": torch.zeros(3)}, tmp_path / cellpose_weights.CONVERTED)
    with pytest.raises(cellpose_weights.WeightsError, match=r"cyto0_torch.*make weights"):
        cellpose_weights.find_cellpose_weights()
    size = tmp_path / cellpose_weights.CONVERTED_SIZE
    np.save(size, np.array({"A": np.zeros(3)}, dtype=object), allow_pickle=True)
    with pytest.raises(cellpose_weights.WeightsError, match=rf"{size.name}.*make weights"):
        cellpose_weights.find_cellpose_weights()


def pixels_size_model_pickle(tmp_path, monkeypatch, request):
    """A size model whose pickle calls anything but numpy's builders is refused unread."""
    import collections

    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    (tmp_path / "cyto3").write_bytes(b"user's own network")
    size = tmp_path / "size_cyto3.npy"
    np.save(size, np.array(collections.Counter(a=1), dtype=object), allow_pickle=True)
    with pytest.raises(cellpose_weights.WeightsError, match=rf"{size.name}.*collections"):
        cellpose_weights.find_cellpose_weights()
    np.save(size, np.array({"A": np.zeros(3), "smean": np.float32(1)}, dtype=object))
    assert cellpose_weights.find_cellpose_weights().size_model == size


PIXELS_CASES = [
    pixels_png16_among_png8,
    pixels_float_tiff_among_uint16,
    pixels_grey_rgb_equal,
    pixels_grey_rgb_unequal,
    pixels_corrupt_stops_at_once,
    pixels_truncated,
    pixels_decode_resumes,
    pixels_png16_colour,
    pixels_nan,
    pixels_sizes_differ,
    pixels_missing_file,
    pixels_lite0_wrong_hash,
    pixels_cellpose_wrong_hash,
    pixels_size_model_pickle,
]


@pytest.mark.parametrize("case", PIXELS_CASES, ids=lambda f: f.__name__.removeprefix("pixels_"))
def test_pixels(case, tmp_path, monkeypatch, request):
    case(tmp_path, monkeypatch, request)


# ---- end pixels ----
