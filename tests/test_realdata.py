import numpy as np
import pytest

from cellutils import realdata

pytestmark = pytest.mark.skipif(
    not all(realdata.available().values()),
    reason="real sample images not extracted: run `make setup` with the registry reachable",
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
