import numpy as np
import pytest

from cellutils import realdata

pytestmark = pytest.mark.skipif(
    not all(realdata.available()[n] for n in realdata.COURSE),
    reason="real sample images not extracted: run `make setup` with the registry reachable",
)
needs_validation = pytest.mark.skipif(
    not all(realdata.available()[n] for n in realdata.VALIDATION),
    reason="held-out nuclei not extracted: run `make setup` with the registry reachable",
)


def test_stardist_nuclei_with_masks():
    img, mask = realdata.stardist_nuclei()
    assert img.shape == mask.shape == (512, 512)
    assert len(np.unique(mask)) - 1 == 125
    assert img[mask > 0].mean() > 1.5 * img[mask == 0].mean()  # nuclei are bright
    assert realdata.verify() == []


def test_example_fly_fields():
    fly = realdata.example_fly()
    assert set(fly) == {"POS002", "POS076", "POS218"}
    assert all(v.shape == (3, 1000, 1006) or v.shape[0] == 3 for v in fly.values())


def test_missing_real_images_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make setup"):
        realdata.stardist_nuclei(tmp_path)


@needs_validation
def test_held_out_nuclei_with_their_masks():
    """BBBC007 (14 images), HeLa frames and mahotas's nuclear.png: images with label images
    of the same shape, nuclei brighter than the background (HeLa sits on a camera offset of
    about 33,000), checksums intact."""
    bbbc = realdata.bbbc007_nuclei()
    hela = realdata.hela_nuclei(frames=(0, 19))
    assert len(bbbc) == 14 and len(hela) == 2
    for _name, image, labels in bbbc + hela:
        assert image.shape == labels.shape and labels.max() > 20
        assert np.median(image[labels > 0]) > np.percentile(image[labels == 0], 90)
    assert realdata.mahotas_nuclear().shape == (1024, 1344)
    with pytest.raises(IndexError, match="hela_img.tif"):
        realdata.hela_nuclei(frames=(20,))
    assert realdata.verify() == []
