"""One image rule for validate and preprocess; sizes judged from the header before any decoding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageFile

from cliper.data.validate import image_status
from cliper.views.images import (
    STATUS_CORRUPT,
    STATUS_LARGE,
    STATUS_OK,
    STATUS_SMALL,
    STATUS_UNSAFE,
    ImageRule,
    build_manifest,
    open_rgb,
    safe_path,
)
from tests.data.bad_inputs import inputs as bad


def test_too_many_pixels_is_refused_from_the_header_without_decoding(tmp_path: Path, monkeypatch):
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "bomb.png").write_bytes(bad.png_header_only(*bad.BOMB_SIDE))

    def no_decoding(self):  # memory stays bounded: the pixels are never allocated
        raise AssertionError("decoded an image that the header already ruled out")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    img, check = open_rgb(tmp_path / "a.png", ImageRule(min_size=1, max_pixels=1000))
    assert img is None and check.status == STATUS_LARGE and "40x40 = 1600 pixels" in check.reason
    img, check = open_rgb(tmp_path / "bomb.png", ImageRule())
    assert img is None and check.status == STATUS_LARGE


def test_validate_and_preprocess_judge_every_image_alike(tmp_path: Path):
    sizes = {"ok.jpg": 40, "tiny.jpg": 1, "edge.jpg": 32, "below.jpg": 31}
    for name, side in sizes.items():
        (tmp_path / name).write_bytes(bad.solid_jpeg(side))
    (tmp_path / "bomb.jpg").write_bytes(bad.jpeg_with_declared_size(9000, 9000))
    (tmp_path / "cut.jpg").write_bytes(bad.solid_jpeg(40)[:100])
    names = [*sizes, "bomb.jpg", "cut.jpg", "../x.jpg", None]
    items = pd.DataFrame(
        {"item_id": range(len(names)), "asin": [f"A{i}" for i in range(len(names))], "image_path": names}
    )
    rule, folders = ImageRule(min_size=32, max_pixels=50_000_000), (tmp_path.resolve(),)
    manifest = build_manifest(items, tmp_path, rule, folders)
    assert manifest["status"].tolist() == image_status(items, tmp_path, rule, folders)["status"].tolist()
    assert manifest["status"].tolist() == [
        STATUS_OK,
        STATUS_SMALL,
        STATUS_OK,
        STATUS_SMALL,
        STATUS_LARGE,
        STATUS_CORRUPT,
        STATUS_UNSAFE,
        "missing",
    ]


@pytest.mark.parametrize(
    "raw", ["../a.jpg", "/etc/hostname", "imgs/../../a.jpg", "imgs/a\x00.jpg", "link.jpg"]
)
def test_paths_outside_the_folders_are_refused_unread(tmp_path: Path, raw: str):
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (tmp_path / "a.jpg").write_bytes(bad.solid_jpeg(40))
    (root / "link.jpg").symlink_to(tmp_path / "a.jpg")  # a symlink out of the folder counts as outside
    path, refusal = safe_path(raw, root, (root.resolve(),))
    assert path is None and refusal is not None and refusal.status == STATUS_UNSAFE


def test_paths_inside_the_folders_are_allowed(tmp_path: Path):
    outside_images = tmp_path / "shared_images"
    outside_images.mkdir()
    folders = (tmp_path.joinpath("root").resolve(), outside_images.resolve())
    assert safe_path("imgs/a.jpg", tmp_path / "root", folders)[1] is None
    assert safe_path(str(outside_images / "a.jpg"), tmp_path / "root", folders)[1] is None


def test_the_pixel_cap_is_what_pillow_itself_can_open():
    from cliper.config_bounds import MAX_DECODABLE_PIXELS

    assert MAX_DECODABLE_PIXELS == 2 * Image.MAX_IMAGE_PIXELS
