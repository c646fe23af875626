"""The embedded task suite, the CCP loader and the task registry."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from alignsam_gym.data.ccp import CCPDataset
from alignsam_gym.data.synthetic import GENERATORS, IMAGE_SIZE, SyntheticDataset
from alignsam_gym.data.tasks import SYNTHETIC_TASKS, TASKS, get_task, make_dataset


@pytest.mark.parametrize("kind", sorted(GENERATORS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_synthetic_masks_are_non_trivial(kind, split):
    dataset = SyntheticDataset(kind, split, num_images=8)
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and sample.image.dtype == np.uint8
        assert sample.mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and sample.mask.dtype == bool
        fraction = sample.mask.mean()
        assert 0.01 < fraction < 0.9, (sample.name, fraction)
        # Still non-trivial after the env's resize to its 10x10 grid of 800x800: some cells hit it, some miss.
        resized = cv2.resize(sample.mask.astype(np.uint8), (800, 800), interpolation=cv2.INTER_NEAREST)
        centres = resized[40::80, 40::80]
        assert 0 < centres.sum() < 100


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_synthetic_is_deterministic_and_splits_differ(kind):
    a, b = SyntheticDataset(kind, "train", 3), SyntheticDataset(kind, "train", 3)
    test = SyntheticDataset(kind, "test", 3)
    other_suite = SyntheticDataset(kind, "train", 3, seed=1)
    for i in range(3):
        np.testing.assert_array_equal(a[i].image, b[i].image)
        np.testing.assert_array_equal(a[i].mask, b[i].mask)
        assert not np.array_equal(a[i].image, test[i].image)
        assert not np.array_equal(a[i].image, other_suite[i].image)
    assert a[0].name == f"synthetic-{kind}/train/0000"


def test_blur_target_is_the_blurred_region():
    sample = SyntheticDataset("blur", "train", 1)[0]
    gray = cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
    inner = cv2.erode(sample.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    outer = cv2.erode((~sample.mask).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert detail[inner].mean() < 0.5 * detail[outer].mean()


def test_shadow_target_is_darker_than_its_surroundings():
    sample = SyntheticDataset("shadow", "train", 1)[0]
    ring = cv2.dilate(sample.mask.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool) & ~sample.mask
    assert sample.image[sample.mask].mean() < 0.75 * sample.image[ring].mean()


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "clouds"}, "unknown synthetic task kind"), ({"kind": "blur", "split": "validation"}, "split must be one of"),
    ({"kind": "blur", "num_images": 0}, "num_images must be at least 1"),
])
def test_synthetic_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticDataset(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError, match="synthetic-blur: index 3 out of range for 3 images"):
        SyntheticDataset("blur", "train", 3)[3]


def test_task_registry():
    assert SYNTHETIC_TASKS == ("synthetic-blur", "synthetic-shadow", "synthetic-mirror", "synthetic-saliency",
                               "synthetic-shapes")
    assert {TASKS[t].branch for t in SYNTHETIC_TASKS} == {"implicit", "explicit"}
    assert get_task("synthetic-mirror").text_prompt == "glass"
    assert get_task("ccp-hair").text_prompt == "hair" and get_task("ccp-hair").branch == "explicit"
    with pytest.raises(ValueError, match="unknown task 'voc'"):
        get_task("voc")
    assert make_dataset("synthetic-blur", "train", 2) is make_dataset("synthetic-blur", "train", 2)


def test_ccp_person_and_class_masks(ccp_root):
    person = CCPDataset(ccp_root, "person")
    hair = CCPDataset(ccp_root, "hair")
    assert len(person) == 300
    label = cv2.imread(str(ccp_root / "labels" / f"{person.stems[0]}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(person[0].mask, label > 0)
    hair_id = (ccp_root / "labels.txt").read_text().split().index("hair")
    np.testing.assert_array_equal(hair[0].mask, label == hair_id)
    assert person[0].image.shape[:2] == label.shape and person[0].image.dtype == np.uint8


def test_ccp_splits(ccp_root):
    train, test = CCPDataset(ccp_root, split="train"), CCPDataset(ccp_root, split="test")
    assert len(train) == 200 and len(test) == 100 and not set(train.stems) & set(test.stems)
    subset = CCPDataset(ccp_root, split="train", num_images=50, seed=3)
    assert len(subset) == 50 and set(subset.stems) <= set(train.stems)
    assert subset.stems == CCPDataset(ccp_root, split="train", num_images=50, seed=3).stems
    assert subset.stems != CCPDataset(ccp_root, split="train", num_images=50, seed=4).stems


def test_ccp_errors_name_the_culprit(ccp_root, tmp_path):
    with pytest.raises(ValueError, match="unknown CCP class 'hat-trick'"):
        CCPDataset(ccp_root, "hat-trick")
    with pytest.raises(FileNotFoundError, match="images/ and labels/"):
        CCPDataset(tmp_path)
    root = tmp_path / "ccp"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    shutil.copy(ccp_root / "labels.txt", root)
    shutil.copy(ccp_root / "images" / "0001.jpg", root / "images")
    shutil.copy(ccp_root / "images" / "0002.jpg", root / "images")
    shutil.copy(ccp_root / "labels" / "0001.png", root / "labels")
    with pytest.raises(ValueError, match=r"1 image\(s\) without a mask in .*labels.*images/0002\.jpg"):
        CCPDataset(root)


def test_ccp_env_episode(make_env, ccp_root):
    env = make_env(task="ccp-person", data_root=str(ccp_root))
    obs, info = env.reset(seed=0)
    assert obs.shape == (432, 20, 20)
    _, reward, _, _, info = env.step(45)
    assert reward in (-1.0, 1.0) and 0 <= info["iou"] <= 1


def test_ccp_label_values_beyond_the_class_list_name_the_file(ccp_root, tmp_path):
    root = tmp_path / "ccp"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    shutil.copy(ccp_root / "labels.txt", root)
    shutil.copy(ccp_root / "images" / "0001.jpg", root / "images")
    label = cv2.imread(str(ccp_root / "labels" / "0001.png"), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 250  # CCP has 59 classes
    cv2.imwrite(str(root / "labels" / "0001.png"), label)
    with pytest.raises(ValueError, match=r"0001\.png: unexpected mask values \[250\]; CCP labels index the 59 classes"):
        CCPDataset(root)[0]


def test_subset_seed_picks_the_few_shot_subset(make_env, ccp_root):
    a = make_env(task="ccp-person", data_root=str(ccp_root), num_images=5).unwrapped.dataset.names
    b = make_env(task="ccp-person", data_root=str(ccp_root), num_images=5, subset_seed=1).unwrapped.dataset.names
    assert len(a) == len(b) == 5 and a != b
    assert make_env(task="ccp-person", data_root=str(ccp_root), split="test", subset_seed=1).unwrapped.dataset.names \
        == CCPDataset(ccp_root, split="test").names  # the test split is always whole
    with pytest.raises(ValueError, match="subset_seed must be an integer >= 0"):
        make_env(subset_seed=-1)
