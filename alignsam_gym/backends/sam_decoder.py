"""SAM's mask decoder with its prompt-independent work done once per image.

Per step, SAM's ``MaskDecoder`` repeats work that depends only on the image: adding the no-mask
dense embedding and the positional encoding to 64x64 image tokens, and in the first two-way block
the key/value projections of the token-to-image attention and the query projection of the
image-to-token attention (three 4096x256 projections). :func:`precompute_image` does that once per
image; :func:`decode_masks` runs the rest. Every operation is SAM's own, in SAM's order, on SAM's
modules (``tests/test_sam.py`` checks the result against ``SamPredictor.predict``). The output
upscaling's 2x2 stride-2 transposed convolutions are computed as the equivalent matrix products,
which are faster on CPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ImageTokens:
    """Prompt-independent decoder inputs of one image (all on the model's device).

    ``keys``: ``(1, HW, C)`` image tokens plus the no-mask embedding; ``pe``: ``(1, HW, C)``
    positional encoding; ``k0``, ``v0``: first block's token-to-image key/value projections,
    ``(1, heads, HW, c)``; ``q0``: first block's image-to-token query projection, same shape.
    """

    keys: torch.Tensor
    pe: torch.Tensor
    k0: torch.Tensor
    v0: torch.Tensor
    q0: torch.Tensor
    shape: tuple[int, int]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, c = x.shape
    return x.transpose(1, 2).reshape(b, n, h * c)


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM's ``Attention`` on already projected, head-separated ``q``, ``k``, ``v``."""
    weights = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
    return attn.out_proj(_merge(weights @ v))


@torch.inference_mode()
def precompute_image(model: nn.Module, image_embedding: torch.Tensor) -> ImageTokens:
    """The prompt-independent part of decoding, for a ``(1, C, h, w)`` image embedding."""
    prompt_encoder, block = model.prompt_encoder, model.mask_decoder.transformer.layers[0]
    _, c, h, w = image_embedding.shape
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    keys = (image_embedding + dense).flatten(2).permute(0, 2, 1)
    pe = prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1)
    t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
    return ImageTokens(keys=keys, pe=pe, k0=_heads(t2i.k_proj(keys + pe), t2i.num_heads),
                       v0=_heads(t2i.v_proj(keys), t2i.num_heads), q0=_heads(i2t.q_proj(keys + pe), i2t.num_heads),
                       shape=(h, w))


def _block(block: nn.Module, queries, keys, query_pe, key_pe, first: ImageTokens | None):
    """SAM's ``TwoWayAttentionBlock.forward``; ``first`` supplies the precomputed projections."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    queries = block.norm1(queries)

    t2i = block.cross_attn_token_to_image
    q = _heads(t2i.q_proj(queries + query_pe), t2i.num_heads)
    if first is not None:
        k, v = first.k0, first.v0
    else:
        k, v = _heads(t2i.k_proj(keys + key_pe), t2i.num_heads), _heads(t2i.v_proj(keys), t2i.num_heads)
    queries = block.norm2(queries + _attend(t2i, q, k, v))
    queries = block.norm3(queries + block.mlp(queries))

    i2t = block.cross_attn_image_to_token
    qk = queries + query_pe
    q = first.q0 if first is not None else _heads(i2t.q_proj(keys + key_pe), i2t.num_heads)
    k, v = _heads(i2t.k_proj(qk), i2t.num_heads), _heads(i2t.v_proj(queries), i2t.num_heads)
    keys = block.norm4(keys + _attend(i2t, q, k, v))
    return queries, keys


def _transposed_conv2x2(conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-2, stride-2 ``ConvTranspose2d`` as one matrix product and a pixel shuffle."""
    b, c, h, w = x.shape
    out = conv.weight.shape[1]
    y = x.permute(0, 2, 3, 1).reshape(b, h * w, c) @ conv.weight.reshape(c, out * 4)
    y = y.reshape(b, h, w, out, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, out, 2 * h, 2 * w)
    return y + conv.bias.reshape(1, -1, 1, 1)


def _upscale(upscaling: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for layer in upscaling:
        is_2x2 = (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (2, 2) and layer.stride == (2, 2)
                  and layer.padding == (0, 0) and layer.groups == 1 and layer.bias is not None)
        x = _transposed_conv2x2(layer, x) if is_2x2 else layer(x)
    return x


@torch.inference_mode()
def decode_masks(model: nn.Module, image: ImageTokens, sparse: torch.Tensor,
                 multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward`` for one prompt set: ``(masks (1, k, 4h, 4w), iou (1, k))``.

    :param sparse: ``(1, N, C)`` sparse prompt embeddings from SAM's prompt encoder.
    """
    decoder = model.mask_decoder
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)[None]
    tokens = torch.cat([tokens, sparse], dim=1)
    queries, keys = tokens, image.keys
    for i, block in enumerate(decoder.transformer.layers):
        queries, keys = _block(block, queries, keys, tokens, image.pe, image if i == 0 else None)
    transformer = decoder.transformer
    attn = transformer.final_attn_token_to_image
    q = _heads(attn.q_proj(queries + tokens), attn.num_heads)
    k = _heads(attn.k_proj(keys + image.pe), attn.num_heads)
    v = _heads(attn.v_proj(keys), attn.num_heads)
    queries = transformer.norm_final_attn(queries + _attend(attn, q, k, v))

    h, w = image.shape
    src = keys.transpose(1, 2).reshape(1, -1, h, w)
    upscaled = _upscale(decoder.output_upscaling, src)
    mask_tokens = queries[:, 1:1 + decoder.num_mask_tokens, :]
    hyper = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], 1)
    b, c, uh, uw = upscaled.shape
    masks = (hyper @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
    iou = decoder.iou_prediction_head(queries[:, 0, :])
    chosen = slice(1, None) if multimask else slice(0, 1)
    return masks[:, chosen], iou[:, chosen]
