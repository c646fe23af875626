"""Weight files: the registry of official checkpoints, verified downloads, and identification.

No code here runs at import or reaches the network unless :func:`download` is called. Downloads
stream into ``<name>.part`` beside the target, resume from where a previous attempt stopped (HTTP
``Range``), are checked against the registry's size and SHA-256, and only then are moved into place
with ``os.replace``; a file with the wrong checksum is never installed.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from alignsam_gym.backends.sam import infer_architecture, read_state_dict
from alignsam_gym.digests import sha256_of

WEIGHTS_ENV = "ALIGNSAM_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weight file.

    :param name: registry name (``alignsam weights download NAME``).
    :param filename: file name on disk.
    :param url: where to fetch it.
    :param sha256: expected SHA-256 of the whole file.
    :param size: expected size in bytes, or None where no published size is known.
    :param description: what it is and what uses it.
    """

    name: str
    filename: str
    url: str
    sha256: str
    size: int | None
    description: str


REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in [
        WeightFile("sam_vit_b", "sam_vit_b_01ec64.pth",
                   "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                   "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375042383,
                   "Segment Anything ViT-B (backend='sam', sam_model_type='vit_b'; the paper's default)"),
        WeightFile("sam_vit_l", "sam_vit_l_0b3195.pth",
                   "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                   "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1249524607,
                   "Segment Anything ViT-L (backend='sam', sam_model_type='vit_l')"),
        WeightFile("sam_vit_h", "sam_vit_h_4b8939.pth",
                   "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                   "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2564550879,
                   "Segment Anything ViT-H (backend='sam', sam_model_type='vit_h')"),
        WeightFile("clip_vit_b_16_openai", "ViT-B-16.pt",
                   "https://openaipublic.azureedge.net/clip/models/"
                   "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
                   "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", None,
                   "OpenAI CLIP ViT-B/16 (open_clip 'ViT-B-16', pretrained='openai'), for CLIP-Surgery maps; "
                   "the SHA-256 is the one in its URL, no size is published"),
    ]
}


def weights_dir() -> Path:
    """``$ALIGNSAM_WEIGHTS``, else ``~/.cache/alignsam-gym/weights``."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alignsam-gym" / "weights"


def get_weight(name: str) -> WeightFile:
    """The registry entry ``name``; raises ValueError listing the known names."""
    if name not in REGISTRY:
        raise ValueError(f"unknown weight file {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def _progress(done: int, total: int | None, stream=sys.stderr) -> None:
    if total:
        stream.write(f"\r  {done / 2**20:8.1f} / {total / 2**20:.1f} MiB ({100 * done / total:5.1f}%)")
    else:
        stream.write(f"\r  {done / 2**20:8.1f} MiB")
    stream.flush()


def download(weight: WeightFile | str, directory: str | Path | None = None, timeout: float = 60.0,
             progress: bool = True, chunk: int = 1 << 20) -> Path:
    """Fetch a weight file, resuming a partial download, and install it only if it verifies.

    :param weight: a registry name or a :class:`WeightFile`.
    :param directory: destination folder (default :func:`weights_dir`).
    :return: the installed file's path (returned at once if a verified copy is already there).
    :raises ConnectionError: when the server cannot be reached; the message says which file to fetch
        by other means and where to put it.
    :raises ValueError: when the downloaded size or checksum is wrong (the partial file is removed).
    """
    weight = get_weight(weight) if isinstance(weight, str) else weight
    directory = Path(directory).expanduser() if directory is not None else weights_dir()
    target = directory / weight.filename
    if target.is_file() and sha256_of(target) == weight.sha256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(weight.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else weight.size
            with open(part, "ab" if have else "wb") as out:
                done = have
                while block := response.read(chunk):
                    out.write(block)
                    done += len(block)
                    if progress:
                        _progress(done, total)
        if progress:
            sys.stderr.write("\n")
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(
            f"could not download {weight.name} from {weight.url} ({err}). Without network access, fetch that URL "
            f"by other means and put the file at {target} (SHA-256 {weight.sha256}); "
            f"`alignsam weights verify {target}` checks it") from err

    size = part.stat().st_size
    if weight.size is not None and size < weight.size:
        raise ConnectionError(f"{weight.name}: the download stopped at {size} of {weight.size} bytes; run the same "
                              f"command again to resume from {part}")
    digest = sha256_of(part)
    if digest != weight.sha256 or (weight.size is not None and size != weight.size):
        part.unlink()
        raise ValueError(f"{weight.name}: downloaded file has SHA-256 {digest} and {size} bytes, expected "
                         f"{weight.sha256} and {weight.size} bytes; it was not installed")
    os.replace(part, target)
    return target


def identify(path: str | Path) -> dict[str, object]:
    """What a file is: its size and SHA-256, the registry entry it matches, and, for a SAM state
    dict, the architecture read from its shapes (checked even when the file is unknown)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    digest = sha256_of(path)
    report: dict[str, object] = {"path": str(path), "size": path.stat().st_size, "sha256": digest,
                                 "registry": next((w.name for w in REGISTRY.values() if w.sha256 == digest), None)}
    try:
        report["sam_model_type"] = infer_architecture(read_state_dict(path, mmap=True), str(path)).model_type
    except ValueError as err:
        report["sam_model_type"] = None
        report["note"] = str(err)
    return report
