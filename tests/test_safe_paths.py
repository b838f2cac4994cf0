"""``paths.safe_key`` and ``paths.under``: metadata values never become path components
unchecked, and a write built from them never lands outside its output folder."""

from __future__ import annotations

import pytest

from cellutils.paths import UnsafePathError, safe_key, under


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("A01/../..", "path separator"),
        ("..\\..\\x", "path separator"),
        ("/etc/passwd", "path separator"),
        ("..", "names a folder"),
        (".", "names a folder"),
        ("", "empty"),
        ("  ", "empty"),
        ("A01\n", "control character"),
        ("A\x0001", "control character"),
        ("C:evil", "drive"),
    ],
)
def test_safe_key_refuses_values_that_leave_a_folder(value, why):
    with pytest.raises(UnsafePathError, match=why) as info:
        safe_key(value, "Metadata_Well", "load_data.csv, line 7")
    assert "load_data.csv, line 7" in str(info.value) and "Metadata_Well" in str(info.value)


@pytest.mark.parametrize("value", ["A01", "BR00116991", 3, "HUVEC-01_1_B02_1", "r01c01f01", "a.b"])
def test_safe_key_keeps_plain_names(value):
    assert safe_key(value, "key", "index") == str(value)


def test_under_follows_dots_and_links(tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    assert under(out, out / "BR1_A01_1_masks.tif") == (out / "BR1_A01_1_masks.tif").resolve()
    with pytest.raises(UnsafePathError, match="outside its output folder"):
        under(out, out / ".." / "x_masks.tif")
    (out / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePathError, match=str(out.resolve())):
        under(out, out / "link" / "x_masks.tif")
