"""SAM's mask decoder with its prompt-independent work done once per image.

Per step, SAM's ``MaskDecoder`` repeats work that depends only on the image: adding the no-mask
dense embedding and the positional encoding to 64x64 image tokens, and in the first two-way block
the key/value projections of the token-to-image attention and the query projection of the
image-to-token attention (three 4096x256 projections). :func:`precompute_image` does that once per
image; :func:`decode_masks` runs the rest. Every operation is SAM's own, in SAM's order, on SAM's
modules (``tests/test_sam.py`` checks the result against ``SamPredictor.predict``). The output
upscaling runs on token-major data as matrix products, and only the masks that will be returned are
formed (see :func:`_upscaled_masks`); both are faster on CPUs.
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


def _softmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(scores, dim=-1)``. Rows shorter than they are many (4096 image tokens attending
    to about 14 prompt tokens) are normalised down the columns of the transposed scores instead:
    PyTorch's CPU kernel ran 10x slower on 14-wide rows (4.4 ms against 0.46 ms for ``(1, 8, 4096, 14)``
    on 2 cores); the results agree to a unit in the last place."""
    if scores.shape[-1] < scores.shape[-2]:
        return torch.softmax(scores.transpose(-1, -2).contiguous(), dim=-2).transpose(-1, -2)
    return torch.softmax(scores, dim=-1)


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM's ``Attention`` on already projected, head-separated ``q``, ``k``, ``v``."""
    weights = _softmax_rows((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]))
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


def stack_images(images: list[ImageTokens]) -> ImageTokens:
    """Several images' tokens as one batch (the positional encoding is shared)."""
    if len(images) == 1:
        return images[0]
    return ImageTokens(keys=torch.cat([i.keys for i in images]), pe=images[0].pe,
                       k0=torch.cat([i.k0 for i in images]), v0=torch.cat([i.v0 for i in images]),
                       q0=torch.cat([i.q0 for i in images]), shape=images[0].shape)


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
    keys_pe = None if first is not None else keys + key_pe  # used twice below: both attentions see these keys
    if first is not None:
        k, v = first.k0, first.v0
    else:
        k, v = _heads(t2i.k_proj(keys_pe), t2i.num_heads), _heads(t2i.v_proj(keys), t2i.num_heads)
    queries = block.norm2(queries + _attend(t2i, q, k, v))
    queries = block.norm3(queries + block.mlp(queries))

    i2t = block.cross_attn_image_to_token
    qk = queries + query_pe
    q = first.q0 if first is not None else _heads(i2t.q_proj(keys_pe), i2t.num_heads)
    k, v = _heads(i2t.k_proj(qk), i2t.num_heads), _heads(i2t.v_proj(queries), i2t.num_heads)
    keys = block.norm4(keys + _attend(i2t, q, k, v))
    return queries, keys


def _is_2x2_transposed_conv(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (2, 2) and layer.stride == (2, 2)
            and layer.padding == (0, 0) and layer.output_padding == (0, 0) and layer.groups == 1
            and layer.bias is not None)


def _standard_upscaling(upscaling: nn.Sequential) -> bool:
    """Whether ``output_upscaling`` is SAM's: 2x2 transposed conv, LayerNorm2d, activation, 2x2 transposed
    conv, activation (MobileSAM and other SAM-compatible decoders share it)."""
    from segment_anything.modeling.common import LayerNorm2d

    layers = list(upscaling)
    return (len(layers) == 5 and _is_2x2_transposed_conv(layers[0]) and isinstance(layers[1], LayerNorm2d)
            and _is_2x2_transposed_conv(layers[3]) and not isinstance(layers[2], (nn.Conv2d, nn.ConvTranspose2d))
            and not isinstance(layers[4], (nn.Conv2d, nn.ConvTranspose2d)))


def _upscaled_masks(upscaling: nn.Sequential, tokens: torch.Tensor, hyper: torch.Tensor, h: int, w: int,
                    batched: bool | None = None) -> torch.Tensor:
    """``hyper @ output_upscaling(tokens as a (B, C, h, w) map)``: ``(B, k, 4h, 4w)`` masks.

    A 2x2 stride-2 transposed convolution is a per-pixel matrix product whose output pixels are a
    2x2 block. Both convolutions run as matrix products on token-major data, the LayerNorm2d as
    ``F.layer_norm`` over the channel axis, and the 2x2 blocks are put in place only once, on the
    ``k`` final masks rather than on 32-channel feature maps. Same arithmetic, fewer copies.

    :param batched: all prompt sets in one set of kernels (default on CUDA, where a loop over 32 sets
        launched ~250 small kernels per step) or one after another (default on the CPU, where the
        batch's temporaries fall out of the caches).
    """
    conv1, norm, act1, conv2, act2 = upscaling
    c_in, c_mid = conv1.weight.shape[:2]
    c_out = conv2.weight.shape[1]
    # rows: image tokens (Y, X); columns: (i, j, channel) so that LayerNorm runs on the last axis
    w1 = conv1.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_mid)
    w2 = conv2.weight.reshape(c_mid, c_out * 4)
    if batched if batched is not None else tokens.device.type == "cuda":
        y = torch.baddbmm(conv1.bias.repeat(4), tokens, w1.expand(tokens.shape[0], -1, -1))
        y = act1(F.layer_norm(y.reshape(tokens.shape[0], h * w * 4, c_mid), (c_mid,), norm.weight, norm.bias, norm.eps))
        z = act2(torch.baddbmm(conv2.bias.repeat_interleave(4), y, w2.expand(tokens.shape[0], -1, -1)))
        masks = torch.einsum("bpcs,bnc->bnps", z.reshape(tokens.shape[0], h * w * 4, c_out, 4), hyper)
        return masks.reshape(tokens.shape[0], -1, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(
            tokens.shape[0], -1, 4 * h, 4 * w)
    out = []
    for b in range(tokens.shape[0]):  # per prompt set: the batched einsum would materialise B x larger temporaries
        y = torch.addmm(conv1.bias.repeat(4), tokens[b], w1).reshape(h * w * 4, c_mid)
        y = act1(F.layer_norm(y, (c_mid,), norm.weight, norm.bias, norm.eps))
        # rows: (Y, X, i, j); columns: (channel, k, l)
        z = act2(torch.addmm(conv2.bias.repeat_interleave(4), y, w2))
        masks = torch.einsum("pcs,nc->nps", z.reshape(h * w * 4, c_out, 4), hyper[b])  # (k, (Y, X, i, j), (k, l))
        out.append(masks.reshape(-1, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6).reshape(-1, 4 * h, 4 * w))
    return torch.stack(out)


@torch.inference_mode()
def decode_masks(model: nn.Module, image: ImageTokens, sparse: torch.Tensor,
                 multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward``: ``(masks (B, k, 4h, 4w), iou (B, k))`` for B prompt sets.

    :param image: one image's tokens (``B`` = 1) or a batch of them (:func:`stack_images`), one per
        prompt set.
    :param sparse: ``(B, N, C)`` sparse prompt embeddings from SAM's prompt encoder (same N in a batch).
    """
    decoder = model.mask_decoder
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)[None]
    tokens = torch.cat([tokens.expand(sparse.shape[0], -1, -1), sparse], dim=1)
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
    chosen = range(1, decoder.num_mask_tokens) if multimask else range(0, 1)
    mask_tokens = queries[:, 1:1 + decoder.num_mask_tokens, :]
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens[:, i, :]) for i in chosen], 1)
    if _standard_upscaling(decoder.output_upscaling):
        masks = _upscaled_masks(decoder.output_upscaling, keys, hyper, h, w)
    else:
        upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(keys.shape[0], -1, h, w))
        b, c, uh, uw = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
    iou = decoder.iou_prediction_head(queries[:, 0, :])
    return masks, iou[:, chosen.start:chosen.stop]
