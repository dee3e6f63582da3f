"""Generated benchmark inputs: photo sizes, caching, the stand-in model archive."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from PIL import Image

from bench.inputs import PhotoRecipe, make_photos, write_standin_archive
from consumer.model_input import INPUT_SHAPE
from consumer.testing.archives import write_tar_gz
from consumer.testing.models import TF_AVAILABLE
from tests.bench.conftest import TINY_RECIPE, write_source_photos


def test_photos_are_resized_as_the_recipe_says_and_reused(tmp_path: Path) -> None:
    source = write_source_photos(tmp_path / "source")
    photos = make_photos(source, tmp_path / "photos", TINY_RECIPE)

    assert [p.name for p in photos.large] == ["blue_bird.jpg", "red_bird.jpg"]
    for big, small in zip(photos.large, photos.small, strict=True):
        with Image.open(big) as img:
            assert (img.format, img.size) == ("JPEG", TINY_RECIPE.large_size)
        with Image.open(small) as img:
            assert img.format == "JPEG"
            assert max(img.size) == TINY_RECIPE.small_long_side
    assert all(b > s for b, s in zip(photos.sizes("large"), photos.sizes("small"), strict=True))

    stamp = [p.stat().st_mtime_ns for p in photos.large]
    again = make_photos(source, tmp_path / "photos", TINY_RECIPE)
    assert [p.stat().st_mtime_ns for p in again.large] == stamp  # cached
    other = make_photos(source, tmp_path / "photos", PhotoRecipe(large_size=(800, 600)))
    with Image.open(other.large[0]) as img:
        assert img.size == (800, 600)  # a new recipe regenerates


def test_tar_gz_holds_the_folder_contents_at_the_root(tmp_path: Path) -> None:
    (tmp_path / "model" / "variables").mkdir(parents=True)
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"pb")
    (tmp_path / "model" / "variables" / "v.index").write_bytes(b"i")
    write_tar_gz(tmp_path / "model", tmp_path / "m.tar.gz")
    with tarfile.open(tmp_path / "m.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["saved_model.pb", "variables", "variables/v.index"]
    first = (tmp_path / "m.tar.gz").read_bytes()
    write_tar_gz(tmp_path / "model", tmp_path / "m.tar.gz")
    assert (tmp_path / "m.tar.gz").read_bytes() == first  # reproducible
    # As `tar -C model .` names them (the tests' SavedModel archives use both forms).
    write_tar_gz(tmp_path / "model", tmp_path / "dot.tar.gz", member_prefix="./")
    with tarfile.open(tmp_path / "dot.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["./saved_model.pb", "./variables", "./variables/v.index"]


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.skipif(not TF_AVAILABLE, reason="TensorFlow is not installed")
def test_standin_archive_has_the_real_interface(tmp_path: Path) -> None:
    import numpy as np
    import tensorflow as tf

    path = tmp_path / "standin.tar.gz"
    write_standin_archive(path, alpha=0.35)  # the full-size one takes ~10 s; same code
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    loaded = tf.saved_model.load(str(tmp_path / "x"))
    out = loaded.signatures["serving_default"](tf.zeros([2, *INPUT_SHAPE], tf.float32))
    probs = out["default"].numpy()
    assert probs.shape == (2, 965)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
