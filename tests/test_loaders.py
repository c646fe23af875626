"""Dataset loaders on small fake trees in each dataset's distributed layout, and the file readers' errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignsam_gym.data import public
from alignsam_gym.data.io import read_image, read_label_map
from alignsam_gym.data.tasks import get_task, make_dataset

RNG = np.random.default_rng(0)


def write_image(path: Path, size=(40, 30), mode="RGB") -> np.ndarray:
    """A random image file (``size`` = (w, h)); returns the RGB uint8 array it should load as."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if mode == "RGB":
        pixels = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        return pixels if path.suffix == ".png" else read_image(path)  # JPEG is lossy: what it decodes to
    if mode == "L":
        gray = RNG.integers(0, 256, (h, w), dtype=np.uint8)
        Image.fromarray(gray).save(path)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "RGBA":
        pixels = RNG.integers(0, 256, (h, w, 4), dtype=np.uint8)
        Image.fromarray(pixels, "RGBA").save(path)
        return pixels[..., :3]
    if mode == "I;16":
        gray = RNG.integers(0, 65536, (h, w), dtype=np.uint16)
        Image.fromarray(gray).save(path)
        return np.repeat(np.round(gray / 257.0).astype(np.uint8)[..., None], 3, axis=2)
    raise ValueError(mode)


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


def square_mask(size=(40, 30), on=255, dtype=np.uint8) -> np.ndarray:
    w, h = size
    mask = np.zeros((h, w), dtype)
    mask[5:20, 10:30] = on
    return mask


# -- readers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
def test_read_image_any_channel_count_and_depth(tmp_path, mode):
    expected = write_image(tmp_path / "x.png", mode=mode)
    image = read_image(tmp_path / "x.png")
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)


def test_truncated_and_unreadable_images_name_the_file(tmp_path):
    write_image(tmp_path / "whole.jpg", size=(200, 200))
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.jpg: not a readable image file"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"text\.png: not a readable image file"):
        read_image(tmp_path / "text.png")
    with pytest.raises(FileNotFoundError, match=r"missing\.png: image file not found"):
        read_image(tmp_path / "missing.png")


def test_label_maps_keep_values_and_refuse_colour(tmp_path):
    write_mask(tmp_path / "m16.png", square_mask(on=65535, dtype=np.uint16))
    label = read_label_map(tmp_path / "m16.png")
    assert label.dtype == np.uint16 and set(np.unique(label)) == {0, 65535}
    palette = Image.fromarray(square_mask(on=7)).convert("P")
    palette.save(tmp_path / "p.png")
    assert set(np.unique(read_label_map(tmp_path / "p.png"))) == {0, 7}  # palette indices, as VOC stores classes
    gray_rgb = np.repeat(square_mask()[..., None], 3, axis=2)
    Image.fromarray(gray_rgb).save(tmp_path / "rgb_gray.png")
    assert set(np.unique(read_label_map(tmp_path / "rgb_gray.png"))) == {0, 255}
    colour = gray_rgb.copy()
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match=r"colour\.png: expected a single-channel mask"):
        read_label_map(tmp_path / "colour.png")


# -- fake dataset trees ----------------------------------------------------------------------------
def make_pairs(image_dir: Path, mask_dir: Path, stems: list[str], ext=".jpg", mask=None) -> None:
    for stem in stems:
        write_image(image_dir / f"{stem}{ext}")
        write_mask(mask_dir / f"{stem}.png", square_mask() if mask is None else mask)


def test_sbu_msd_duts_layouts(tmp_path):
    sbu = tmp_path / "sbu"
    make_pairs(sbu / "SBUTrain4KRecoveredSmall/ShadowImages", sbu / "SBUTrain4KRecoveredSmall/ShadowMasks",
               [f"lssd{i}" for i in range(6)])
    make_pairs(sbu / "SBU-Test/ShadowImages", sbu / "SBU-Test/ShadowMasks", ["t1", "t2"])
    msd = tmp_path / "msd"
    make_pairs(msd / "train/image", msd / "train/mask", ["a", "b", "c"])
    make_pairs(msd / "test/image", msd / "test/mask", ["d"])
    duts = tmp_path / "duts"
    soft = square_mask()
    soft[5:20, 10] = 100  # an anti-aliased edge below 128: background
    soft[5:20, 29] = 200  # above: foreground
    make_pairs(duts / "DUTS-TR/DUTS-TR-Image", duts / "DUTS-TR/DUTS-TR-Mask", ["x", "y"], mask=soft)
    make_pairs(duts / "DUTS-TE/DUTS-TE-Image", duts / "DUTS-TE/DUTS-TE-Mask", ["z"], mask=soft)

    train = make_dataset("sbu-shadow", "train", num_images=4, data_root=sbu, seed=1)
    assert len(train) == 4 and set(train.names) <= {f"lssd{i}" for i in range(6)}
    assert train.names == make_dataset("sbu-shadow", "train", num_images=4, data_root=sbu, seed=1).names
    assert make_dataset("sbu-shadow", "test", data_root=sbu).names == ["t1", "t2"]  # the whole official test set
    assert get_task("sbu-shadow").branch == "explicit" and get_task("sbu-shadow").text_prompt == "shadow"
    assert make_dataset("msd-mirror", "train", data_root=msd).names == ["a", "b", "c"]
    sample = make_dataset("duts-saliency", "test", data_root=duts)[0]
    assert sample.mask.sum() == 15 * 19 and not sample.mask[5, 10] and sample.mask[5, 29]


def test_cuhk_blur_takes_defocus_images_and_holds_out_the_last_100(tmp_path):
    root = tmp_path / "cuhk"
    stems = [f"out_of_focus{i:04d}" for i in range(1, 106)]
    for stem in stems:  # tiny files: the split is by name
        write_image(root / "image" / f"{stem}.jpg", size=(8, 8))
        write_mask(root / "gt" / f"{stem}.png", np.zeros((8, 8), np.uint8))
    write_image(root / "image" / "motion0001.jpg", size=(8, 8))
    write_mask(root / "gt" / "motion0001.png", np.zeros((8, 8), np.uint8))
    test = public.cuhk_blur(root, "test")
    train = public.cuhk_blur(root, "train", num_images=None)
    assert test.names == stems[-100:] and train.names == stems[:5]


def test_voc_class_tasks(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    cat = np.zeros((30, 40), np.uint8)
    cat[5:15, 5:15] = public.VOC_CLASSES.index("cat")
    cat[4, 5:15] = 255  # the border label
    dog = np.zeros((30, 40), np.uint8)
    dog[10:20, 10:20] = public.VOC_CLASSES.index("dog")
    for stem, label in (("2007_000001", cat), ("2007_000002", dog), ("2007_000003", cat)):
        write_image(base / "JPEGImages" / f"{stem}.jpg")
        write_mask(base / "SegmentationClass" / f"{stem}.png", label)
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000001\n2007_000002\n")
    (lists / "val.txt").write_text("2007_000003\n")
    train = make_dataset("voc-cat", "train", data_root=tmp_path)
    assert train.names == ["2007_000001"]  # only images that contain the class
    sample = train[0]
    assert sample.mask.sum() == 100 and not sample.mask[4].any()  # 255 is not the class
    assert make_dataset("voc-cat", "test", data_root=tmp_path).names == ["2007_000003"]
    assert get_task("voc-cat").branch == "explicit" and get_task("voc-cat").text_prompt == "cat"
    with pytest.raises(ValueError, match="no image of this split contains the class 'horse'"):
        public.voc_class(tmp_path, "horse", "train")
    with pytest.raises(ValueError, match="unknown VOC class 'unicorn'"):
        public.voc_class(tmp_path, "unicorn", "train")
    (lists / "val.txt").write_text("../../../../etc/passwd\n")
    with pytest.raises(ValueError, match=r"val\.txt: entry '\.\./\.\./\.\./\.\./etc/passwd' is not a plain file stem"):
        public.voc_class(tmp_path, "cat", "test")
    bad = cat.copy()
    bad[0, 0] = 30  # no VOC class
    write_mask(base / "SegmentationClass" / "2007_000001.png", bad)
    with pytest.raises(ValueError, match=r"2007_000001\.png: unexpected mask values \[30\]"):
        public.voc_class(tmp_path, "cat", "train")[0]


def test_folder_task_pairs_any_extension_and_names_missing_pairs(tmp_path):
    root = tmp_path / "mine"
    write_image(root / "images" / "a.JPG", mode="RGB")
    write_image(root / "images" / "b.png", mode="L")
    write_image(root / "images" / "c.tif", mode="RGBA")
    for stem in "abc":
        write_mask(root / "masks" / f"{stem}.png", square_mask(on=3))
    train, test = make_dataset("folder", "train", data_root=root), make_dataset("folder", "test", data_root=root)
    assert train.names == ["a", "b"] and test.names == ["c"]
    assert all(s.mask.sum() == 15 * 20 for s in (train[0], train[1], test[0]))  # non-zero is foreground
    write_image(root / "images" / "d.jpg")
    write_mask(root / "masks" / "e.png", square_mask())
    with pytest.raises(ValueError, match=r"1 image\(s\) without a mask in .*masks: \[.*d\.jpg'\].*e\.png"):
        public.folder(root, "train")


def test_folder_task_text_prompt_reaches_the_env(tmp_path, make_env):
    root = tmp_path / "mine"
    for stem in "ab":
        write_image(root / "train" / "images" / f"{stem}.png")
        write_mask(root / "train" / "masks" / f"{stem}.png", square_mask())
    write_image(root / "test" / "images" / "c.png")
    write_mask(root / "test" / "masks" / "c.png", square_mask())
    env = make_env(task="folder", data_root=str(root), text_prompt="red car")
    assert env.unwrapped.text_prompt == "red car"
    obs, info = env.reset(seed=0)
    assert obs.shape == (432, 20, 20)


def test_masks_of_another_size_name_both_files(tmp_path):
    root = tmp_path / "msd"
    make_pairs(root / "train/image", root / "train/mask", ["a"], mask=np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png: mask is 10x10 \(w x h\) but its image .*a\.jpg is 40x30"):
        public.msd_mirror(root, "train")[0]


def test_sixteen_bit_and_zero_one_masks_binarise_the_documented_way(tmp_path):
    root = tmp_path / "msd"
    make_pairs(root / "train/image", root / "train/mask", ["a"], mask=square_mask(on=65535, dtype=np.uint16))
    make_pairs(root / "train/image", root / "train/mask", ["b"], mask=square_mask(on=1))
    data = public.msd_mirror(root, "train")
    assert data[0].mask.sum() == data[1].mask.sum() == 15 * 20


def test_missing_folders_and_unknown_tasks(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SBU-Test/ShadowImages: image folder not found"):
        public.sbu_shadow(tmp_path, "test")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val', 'test'\]"):
        public.msd_mirror(tmp_path, "validation")
    with pytest.raises(FileNotFoundError, match=r"train/image: image folder not found"):
        public.msd_mirror(tmp_path, "val")  # val is cut from the training images
    with pytest.raises(ValueError, match="unknown task 'coco-cat'"):
        get_task("coco-cat")
    with pytest.raises(ValueError, match="reads files: pass data_root"):
        make_dataset("duts-saliency")
