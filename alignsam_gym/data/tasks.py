"""The task registry: task name -> dataset, branch (implicit/explicit) and text prompt.

Branches and text prompts follow the paper (Tables 1 and 6). The explicit branch uses the text
prompt (through CLIP maps); the implicit branch ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from alignsam_gym.data.base import SegmentationDataset
from alignsam_gym.data import interactive, public
from alignsam_gym.data.ccp import CCPDataset
from alignsam_gym.data.synthetic import SyntheticDataset
from alignsam_gym.shared import SharedInstances

#: the task ``AlignSAM-v0`` uses when none is given
DEFAULT_TASK = "synthetic-saliency"

DatasetFactory = Callable[[str, int, "Path | None", int], SegmentationDataset]


@dataclass(frozen=True)
class TaskSpec:
    """One segmentation task.

    :param name: registry name, e.g. ``"synthetic-blur"``.
    :param branch: ``"implicit"`` or ``"explicit"``, the SRM branch the paper uses for it.
    :param text_prompt: the text prompt of the explicit branch (paper Table 6).
    :param needs_data_root: whether the task reads files under ``data_root``.
    :param factory: ``(split, num_images, data_root, seed) -> dataset``.
    """

    name: str
    branch: str
    text_prompt: str
    needs_data_root: bool
    factory: DatasetFactory


def _synthetic(kind: str) -> DatasetFactory:
    return lambda split, num_images, data_root, seed: SyntheticDataset(kind, split, num_images, seed)


def _ccp(target: str) -> DatasetFactory:
    def factory(split: str, num_images: int, data_root: Path | None, seed: int) -> SegmentationDataset:
        return CCPDataset(data_root, target, split, None if split == "test" else num_images, seed)

    return factory


def _public(loader: Callable) -> DatasetFactory:
    def factory(split: str, num_images: int, data_root: Path | None, seed: int) -> SegmentationDataset:
        return loader(Path(data_root), split, num_images, seed)

    return factory


def _voc(target: str) -> DatasetFactory:
    def factory(split: str, num_images: int, data_root: Path | None, seed: int) -> SegmentationDataset:
        return public.voc_class(Path(data_root), target, split, num_images, seed)

    return factory


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("synthetic-blur", "implicit", "defocus background", False, _synthetic("blur")),
        TaskSpec("synthetic-shadow", "explicit", "shadow", False, _synthetic("shadow")),
        TaskSpec("synthetic-mirror", "implicit", "glass", False, _synthetic("mirror")),
        TaskSpec("synthetic-saliency", "implicit", "saliency object", False, _synthetic("saliency")),
        TaskSpec("synthetic-shapes", "explicit", "triangle", False, _synthetic("shapes")),
        TaskSpec("ccp-person", "implicit", "person", True, _ccp("person")),
        TaskSpec("cuhk-blur", "implicit", "defocus background", True, _public(public.cuhk_blur)),
        TaskSpec("sbu-shadow", "explicit", "shadow", True, _public(public.sbu_shadow)),
        TaskSpec("msd-mirror", "implicit", "glass", True, _public(public.msd_mirror)),
        TaskSpec("duts-saliency", "implicit", "saliency object", True, _public(public.duts_saliency)),
        TaskSpec("folder", "explicit", "foreground object", True, _public(public.folder)),
        TaskSpec("grabcut", "implicit", "object", True, _public(interactive.grabcut)),
        TaskSpec("berkeley", "implicit", "object", True, _public(interactive.berkeley)),
        TaskSpec("davis", "implicit", "object", True, _public(interactive.davis)),
        TaskSpec("coco-mval", "implicit", "object", True, _public(interactive.coco_mval)),
        TaskSpec("sbd", "implicit", "object", True, _public(interactive.SBDInstances)),
    ]
}
TASKS.update({f"voc-{c}": TaskSpec(f"voc-{c}", "explicit", c, True, _voc(c)) for c in public.VOC_CLASSES[1:]})

SYNTHETIC_TASKS = tuple(name for name in TASKS if name.startswith("synthetic-"))


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; ``ccp-<class>`` works for every CCP class.

    :raises ValueError: for an unknown name, listing the known ones.
    """
    if name in TASKS:
        return TASKS[name]
    if name.startswith("ccp-") and len(name) > 4:
        target = name[4:]
        return TaskSpec(name, "explicit", target, True, _ccp(target))
    known = sorted(n for n in TASKS if not n.startswith("voc-"))
    raise ValueError(f"unknown task {name!r}; known tasks: {known}, voc-<class> and ccp-<class>")


_datasets: SharedInstances[SegmentationDataset] = SharedInstances()


def make_dataset(task: str, split: str = "train", num_images: int = 50, data_root: str | Path | None = None,
                 seed: int = 0) -> SegmentationDataset:
    """The dataset of ``task``, shared by every env of the process that asks for the same arguments.

    :raises ValueError: for an unknown task, or a file-based task without ``data_root``.
    """
    spec = get_task(task)
    if spec.needs_data_root and data_root is None:
        raise ValueError(f"task {task!r} reads files: pass data_root=<folder of the dataset>")
    if not spec.needs_data_root and data_root is not None:
        raise ValueError(f"task {task!r} is generated, it reads no files: leave data_root unset (got {data_root!r})")
    key = (spec.name, split, int(num_images), None if data_root is None else str(Path(data_root).resolve()), seed)
    try:
        return _datasets.get(key, lambda: spec.factory(split, int(num_images),
                                                       None if data_root is None else Path(data_root), seed))
    except ValueError as err:
        if split == "val":  # learning curves, EpisodeImages and tuning read val: say which task asked
            raise ValueError(f"task {spec.name!r}, split 'val' (data_root {data_root}): {err}") from err
        raise
