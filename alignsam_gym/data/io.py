"""Reading dataset files: images of any channel count and bit depth, label maps, safe paths.

Every error names the file and what was expected; nothing is silently repaired except the
documented conversions below.

Images become ``(H, W, 3) uint8`` RGB: grayscale is repeated over three channels, the alpha channel
of RGBA/LA images is dropped (the colour values are kept as stored), palette images are expanded,
and 16-bit images are scaled to 8 bits (``round(v / 257)``, so 65535 -> 255). A truncated or damaged
file is an error (Pillow decodes the whole file; OpenCV would return a partly grey image).

Label maps stay 2-D integer arrays with their stored values (palette indices for palette PNGs, as
Pascal VOC stores classes); an RGB label map whose three channels are equal is read as one channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: file name extensions read as images (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        image = Image.open(path)
        image.load()  # decodes everything: a truncated file fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: not a readable {what} file ({type(err).__name__}: {err})") from err
    return image


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``(H, W, 3) uint8`` RGB (see the module docstring for the conversions).

    :raises FileNotFoundError: if the file does not exist.
    :raises ValueError: naming the file, if it cannot be decoded or has an unsupported pixel format.
    """
    path = Path(path)
    image = _open(path, "image")
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"{path}: 32-bit integer image with values outside [0, 65535]")
        gray = np.round(values / 257.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise ValueError(f"{path}: floating-point images are not supported; expected 8- or 16-bit pixels")
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"{path}: expected a 2-D image, got pixel array {rgb.shape}")
    return np.ascontiguousarray(rgb)


def read_label_map(path: str | Path, any_channel: bool = False) -> np.ndarray:
    """A label or mask file as a 2-D integer array with its stored values (see the module docstring).

    :param any_channel: a colour mask becomes the maximum over its channels (DAVIS: any non-zero channel
        is foreground) instead of an error.
    :raises ValueError: naming the file, if it cannot be decoded or is a colour image.
    """
    path = Path(path)
    image = _open(path, "mask")
    if image.mode == "F":
        raise ValueError(f"{path}: floating-point masks are not supported; expected integer labels")
    if image.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA"):
        channels = np.asarray(image.convert("RGB"))
        if any_channel:
            return channels.max(axis=2)
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 0], channels[..., 2])):
            raise ValueError(f"{path}: expected a single-channel mask, got a colour image ({image.mode})")
        return channels[..., 0].copy()
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D mask, got an array of shape {array.shape}")
    return array


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """:raises ValueError: naming both files if the mask's size differs from the image's."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (w x h) but its image {image_path} is "
                         f"{image.shape[1]}x{image.shape[0]}")


def check_values(mask: np.ndarray, allowed: set[int] | range, path: Path, rule: str) -> None:
    """:raises ValueError: naming the file and the unexpected values if ``mask`` holds values outside ``allowed``."""
    values = np.unique(mask)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        raise ValueError(f"{path}: unexpected mask values {bad[:8]}; {rule}")


def safe_name(root: Path, name: str, what: str) -> str:
    """``name`` from a dataset list, if it names a file inside ``root`` (no separators, no ``..``).

    :raises ValueError: naming the list entry otherwise (a list cannot point outside ``data_root``).
    """
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or Path(name).is_absolute():
        raise ValueError(f"{what}: entry {name!r} is not a plain file stem; dataset lists may only name files "
                         f"inside {root}")
    return name


def find_with_stem(folder: Path, stem: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Path | None:
    """The file ``folder/<stem><ext>`` for the first extension (any case) that exists, or None."""
    for ext in extensions:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def files_by_stem(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """``{stem: path}`` of the files in ``folder`` with one of ``extensions`` (any case).

    :raises ValueError: naming the files if two share a stem (which one is meant would be a guess).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions and not path.name.startswith("."):
            if path.stem in found:
                raise ValueError(f"{folder}: two files share the stem {path.stem!r}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found
