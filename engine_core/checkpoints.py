"""Checkpoint layouts: explicit key tables between the published weight formats, and loaders.

Three published layouts are understood:

``wan`` (the original ``Wan-AI/Wan2.1-T2V-1.3B`` folder)::

    config.json                                   DiT config (WanModel)
    diffusion_pytorch_model.safetensors           DiT, original Wan key names (or sharded + .index.json)
    models_t5_umt5-xxl-enc-bf16.pth               UMT5-XXL encoder, Wan's own T5 key names
    google/umt5-xxl/                              tokenizer files
    Wan2.1_VAE.pth                                VAE, Wan's own key names

``diffusers`` (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``)::

    model_index.json
    transformer/   WanTransformer3DModel (config.json + safetensors, diffusers key names)
    vae/           AutoencoderKLWan
    text_encoder/  transformers UMT5EncoderModel
    tokenizer/     transformers tokenizer

``student`` (``KlingTeam/ShotStream`` ``shotstream_merged.pt``): ``torch.save({'generator': {'model.<Wan
DiT key>': tensor}, ['generator_ema': ...], ...})``, usually fp32.

Our DiT (:class:`engine_core.transformer.CausalWanTransformer`) uses the original Wan names, so
every loader returns the DiT in those names. The VAE and the text encoder are the diffusers /
transformers modules, so Wan-named VAE/T5 files are renamed into those modules' names.

Key tables were written from the module definitions of the original Wan2.1 code
(``wan/modules/model.py``, ``vae.py``, ``t5.py``), diffusers' ``scripts/convert_wan_to_diffusers.py`` and
``diffusers.loaders.single_file_utils.convert_wan_*``, and transformers' ``modeling_umt5.py``. The
tests check them against those converters and against independent enumerations of the Wan
modules, on the full-size configurations (meta device).

Loading never needs a GPU and avoids holding two copies of the weights: safetensors files are read
tensor by tensor, ``.pth``/``.pt`` files are memory-mapped (``torch.load(mmap=True,
weights_only=True)``), and modules are built on the meta device and filled with ``assign=True``.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .config import DiTConfig, TextConfig, VAEConfig

log = logging.getLogger(__name__)

Layout = Literal["wan", "diffusers"]

# File names of the published layouts.
WAN_DIT_CONFIG = "config.json"
WAN_DIT_STEM = "diffusion_pytorch_model"  # .safetensors or .safetensors.index.json + shards
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"
WAN_VAE_FILE = "Wan2.1_VAE.pth"
DIFFUSERS_DIRS = ("transformer", "vae", "text_encoder", "tokenizer")
STUDENT_FILE = "shotstream_merged.pt"

_FIX_HINT = (
    "Point the engine at an unmodified Wan-AI/Wan2.1-T2V-1.3B (or -Diffusers) folder and the "
    "KlingTeam/ShotStream shotstream_merged.pt for this model config (`python -m engine_core.fetch DEST` "
    "downloads both), or convert your weights with engine_core.checkpoints.save_wan_layout / "
    "save_student_checkpoint."
)


class CheckpointError(ValueError):
    """A weight file or folder does not match what the model config expects.

    The message names the file, the layout and the offending keys, and says what to do.
    ``missing``/``unexpected``/``mismatched`` hold the full lists when the error came from
    :func:`validate_state_dict`.
    """

    def __init__(self, message: str, *, source: str | None = None, layout: str | None = None,
                 missing: list[str] | None = None, unexpected: list[str] | None = None,
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None):
        super().__init__(message)
        self.source = source
        self.layout = layout
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


def _preview(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


# ------------------------------------------------------------------------------------------------
# DiT: expected shapes (original Wan names) and the diffusers WanTransformer3DModel names
# ------------------------------------------------------------------------------------------------


def expected_dit_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Every DiT parameter in original Wan names with its shape (825 tensors for the 1.3B model).

    Mirrors ``wan/modules/model.py`` (``WanModel``): the LayerNorms ``norm1``/``norm2`` of a block and
    ``head.norm`` have no parameters, ``norm3`` (cross-attention norm) is affine, q/k RMSNorms span the
    full width. ``freqs`` is a plain attribute in Wan, not a buffer, so it is not in state dicts.
    """
    d, f = cfg.dim, cfg.ffn_dim
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (d, cfg.in_dim, *cfg.patch_size),
        "patch_embedding.bias": (d,),
        "text_embedding.0.weight": (d, cfg.text_dim),
        "text_embedding.0.bias": (d,),
        "text_embedding.2.weight": (d, d),
        "text_embedding.2.bias": (d,),
        "time_embedding.0.weight": (d, cfg.freq_dim),
        "time_embedding.0.bias": (d,),
        "time_embedding.2.weight": (d, d),
        "time_embedding.2.bias": (d,),
        "time_projection.1.weight": (6 * d, d),
        "time_projection.1.bias": (6 * d,),
    }
    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                shapes[f"{p}{attn}.{proj}.weight"] = (d, d)
                shapes[f"{p}{attn}.{proj}.bias"] = (d,)
            shapes[f"{p}{attn}.norm_q.weight"] = (d,)
            shapes[f"{p}{attn}.norm_k.weight"] = (d,)
            if attn == "self_attn":
                shapes[f"{p}norm3.weight"] = (d,)
                shapes[f"{p}norm3.bias"] = (d,)
        shapes[f"{p}ffn.0.weight"] = (f, d)
        shapes[f"{p}ffn.0.bias"] = (f,)
        shapes[f"{p}ffn.2.weight"] = (d, f)
        shapes[f"{p}ffn.2.bias"] = (d,)
        shapes[f"{p}modulation"] = (1, 6, d)
    shapes["head.head.weight"] = (cfg.out_dim * math.prod(cfg.patch_size), d)
    shapes["head.head.bias"] = (cfg.out_dim * math.prod(cfg.patch_size),)
    shapes["head.modulation"] = (1, 2, d)
    return shapes


def _with_params(table: dict[str, str], params: tuple[str, ...] = ("weight", "bias")) -> dict[str, str]:
    return {f"{a}.{p}": f"{b}.{p}" for a, b in table.items() for p in params}


# Wan name -> diffusers name. Modules (weight and bias):
_DIT_TOP = _with_params({
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",  # Wan's Sequential(SiLU, Linear)[1]
    "head.head": "proj_out",
}) | {"head.modulation": "scale_shift_table"}  # [1, 2, dim] in both

_DIT_BLOCK = _with_params({
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    # Wan applies norm1 (self-attn), norm3 (cross-attn, affine), norm2 (ffn); diffusers numbers them in
    # call order, so Wan's affine norm3 is diffusers' norm2 (norm1/norm2 of Wan have no parameters).
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}) | _with_params({
    "self_attn.norm_q": "attn1.norm_q",  # RMSNorm across all heads ("rms_norm_across_heads")
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
}, ("weight",)) | {"modulation": "scale_shift_table"}  # [1, 6, dim] in both

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _block_mapper(top: dict[str, str], block: dict[str, str], prefix_in: str = "blocks.",
                  prefix_out: str = "blocks.") -> Callable[[str], str | None]:
    pattern = re.compile(rf"^{re.escape(prefix_in)}(\d+)\.(.+)$")

    def convert(key: str) -> str | None:
        if key in top:
            return top[key]
        m = pattern.match(key)
        if m and m.group(2) in block:
            return f"{prefix_out}{m.group(1)}.{block[m.group(2)]}"
        return None

    return convert


def _invert(table: dict[str, str]) -> dict[str, str]:
    inv = {v: k for k, v in table.items()}
    assert len(inv) == len(table), "key table is not one-to-one"
    return inv


_dit_to_diffusers_key = _block_mapper(_DIT_TOP, _DIT_BLOCK)
_dit_from_diffusers_key = _block_mapper(_invert(_DIT_TOP), _invert(_DIT_BLOCK))


def _rename(sd: Mapping[str, Any], convert: Callable[[str], str | None], inverse: Callable[[str], str | None],
            what: str) -> dict[str, Any]:
    """Rename every key with ``convert``; keys it does not know pass through unchanged.

    Unknown keys are left for :func:`validate_state_dict` to report as unexpected. A key that is
    unknown here but known to ``inverse`` is already in the target naming, which means the dict
    mixes two layouts: that, and two keys landing on one name, raise :class:`CheckpointError`.
    """
    out: dict[str, Any] = {}
    mixed: list[str] = []
    for key, value in sd.items():
        new = convert(key)
        if new is None:
            if inverse(key) is not None:
                mixed.append(key)
            new = key
        if new in out:
            raise CheckpointError(f"{what}: two keys map to {new!r} (one of them is {key!r}); the state dict "
                                  "mixes naming conventions. " + _FIX_HINT)
        out[new] = value
    if mixed:
        raise CheckpointError(f"{what}: {len(mixed)} keys are already in the target naming while others are "
                              f"not (mixed layouts): {_preview(mixed)}. " + _FIX_HINT, unexpected=mixed)
    return out


def dit_keys_to_diffusers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Original Wan DiT names -> diffusers ``WanTransformer3DModel`` names (no tensor changes)."""
    return _rename(sd, _dit_to_diffusers_key, _dit_from_diffusers_key, "DiT (Wan -> diffusers names)")


def dit_keys_from_diffusers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers ``WanTransformer3DModel`` names -> original Wan DiT names; exact inverse of the above."""
    return _rename(sd, _dit_from_diffusers_key, _dit_to_diffusers_key, "DiT (diffusers -> Wan names)")


# ------------------------------------------------------------------------------------------------
# ShotStream student
# ------------------------------------------------------------------------------------------------


def dit_keys_from_student(ckpt: Mapping[str, Any], use_ema: bool = False, *, source: str = "student checkpoint"
                          ) -> dict[str, Any]:
    """The DiT state dict (Wan names) inside a ShotStream checkpoint ``{'generator': {'model.<key>': ...}}``.

    ``use_ema`` prefers ``'generator_ema'`` and falls back to ``'generator'`` (with a warning) when
    the file has no EMA weights.
    """
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{source}: expected a dict with a 'generator' entry, got {type(ckpt).__name__}. "
                              + _FIX_HINT, source=source, layout="student")
    entry = "generator"
    if use_ema:
        if "generator_ema" in ckpt:
            entry = "generator_ema"
        else:
            log.warning("%s has no 'generator_ema'; using 'generator'", source)
    if entry not in ckpt:
        top = [str(k) for k in ckpt.keys()]
        looks_flat = any(k.startswith(("model.blocks.", "blocks.")) for k in top)
        raise CheckpointError(
            f"{source} (layout: student) has no 'generator' entry; its top-level keys are [{_preview(top)}]"
            + (". It looks like a bare DiT state dict: wrap it as {'generator': {'model.' + key: tensor}} "
               "(save_student_checkpoint does this)" if looks_flat else "")
            + ". A ShotStream checkpoint is torch.save({'generator': state_dict, ...}). " + _FIX_HINT,
            source=source, layout="student", missing=["generator"])
    gen = ckpt[entry]
    if not isinstance(gen, Mapping):
        raise CheckpointError(f"{source}: '{entry}' is a {type(gen).__name__}, not a state dict. " + _FIX_HINT,
                              source=source, layout="student")
    bad = [k for k in gen if not str(k).startswith("model.")]
    if bad:
        raise CheckpointError(
            f"{source} (layout: student): {len(bad)} of {len(gen)} keys in '{entry}' do not start with 'model.' "
            f"(the ShotStream WanDiffusionWrapper prefix): {_preview(bad)}. " + _FIX_HINT,
            source=source, layout="student", unexpected=bad)
    return {k[len("model."):]: v for k, v in gen.items()}


# ------------------------------------------------------------------------------------------------
# VAE: Wan2.1_VAE.pth names <-> diffusers AutoencoderKLWan names
# ------------------------------------------------------------------------------------------------

# Wan ResidualBlock = Sequential(RMS_norm, SiLU, CausalConv3d, RMS_norm, SiLU, Dropout, CausalConv3d) + shortcut.
_VAE_RESIDUAL = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_VAE_RESIDUAL_INV = _invert(_VAE_RESIDUAL)
# Resample (Sequential(pad/upsample, Conv2d) + optional time_conv) and the mid AttentionBlock keep their names.
_VAE_RESAMPLE = frozenset({"resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias"})
_VAE_ATTENTION = frozenset({"norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias"})
_VAE_TOP = {"conv1.weight": "quant_conv.weight", "conv1.bias": "quant_conv.bias",
            "conv2.weight": "post_quant_conv.weight", "conv2.bias": "post_quant_conv.bias"}
_VAE_TOP_INV = _invert(_VAE_TOP)
_VAE_ENDS = {"conv1.weight": "conv_in.weight", "conv1.bias": "conv_in.bias", "head.0.gamma": "norm_out.gamma",
             "head.2.weight": "conv_out.weight", "head.2.bias": "conv_out.bias"}
_VAE_ENDS_INV = _invert(_VAE_ENDS)
_VAE_MID_RESNET = {"0": "0", "2": "1"}  # Wan middle = (ResidualBlock, AttentionBlock, ResidualBlock)


def _vae_wan_to_diffusers_key(key: str, num_res_blocks: int) -> str | None:
    if key in _VAE_TOP:
        return _VAE_TOP[key]
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return None
    if rest in _VAE_ENDS:
        return f"{part}.{_VAE_ENDS[rest]}"
    if m := re.fullmatch(r"middle\.(\d+)\.(.+)", rest):
        idx, sub = m.groups()
        if idx in _VAE_MID_RESNET and sub in _VAE_RESIDUAL:
            return f"{part}.mid_block.resnets.{_VAE_MID_RESNET[idx]}.{_VAE_RESIDUAL[sub]}"
        if idx == "1" and sub in _VAE_ATTENTION:
            return f"{part}.mid_block.attentions.0.{sub}"
        return None
    if part == "encoder" and (m := re.fullmatch(r"downsamples\.(\d+)\.(.+)", rest)):
        # diffusers keeps the encoder's flat list: same indices, renamed residual internals.
        idx, sub = m.groups()
        if sub in _VAE_RESIDUAL:
            return f"encoder.down_blocks.{idx}.{_VAE_RESIDUAL[sub]}"
        return f"encoder.down_blocks.{idx}.{sub}" if sub in _VAE_RESAMPLE else None
    if part == "decoder" and (m := re.fullmatch(r"upsamples\.(\d+)\.(.+)", rest)):
        # Wan's flat decoder list holds, per level, num_res_blocks + 1 ResidualBlocks then one Resample
        # (none after the last level); diffusers groups each level into up_blocks[b].
        idx, sub = int(m.group(1)), m.group(2)
        block, pos = divmod(idx, num_res_blocks + 2)
        if pos <= num_res_blocks:
            return f"decoder.up_blocks.{block}.resnets.{pos}.{_VAE_RESIDUAL[sub]}" if sub in _VAE_RESIDUAL else None
        return f"decoder.up_blocks.{block}.upsamplers.0.{sub}" if sub in _VAE_RESAMPLE else None
    return None


def _vae_diffusers_to_wan_key(key: str, num_res_blocks: int) -> str | None:
    if key in _VAE_TOP_INV:
        return _VAE_TOP_INV[key]
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return None
    if rest in _VAE_ENDS_INV:
        return f"{part}.{_VAE_ENDS_INV[rest]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        idx, sub = m.groups()
        inv = {v: k for k, v in _VAE_MID_RESNET.items()}
        if idx in inv and sub in _VAE_RESIDUAL_INV:
            return f"{part}.middle.{inv[idx]}.{_VAE_RESIDUAL_INV[sub]}"
        return None
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        return f"{part}.middle.1.{m.group(1)}" if m.group(1) in _VAE_ATTENTION else None
    if part == "encoder" and (m := re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest)):
        idx, sub = m.groups()
        if sub in _VAE_RESIDUAL_INV:
            return f"encoder.downsamples.{idx}.{_VAE_RESIDUAL_INV[sub]}"
        return f"encoder.downsamples.{idx}.{sub}" if sub in _VAE_RESAMPLE else None
    if part == "decoder" and (m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)):
        block, pos, sub = int(m.group(1)), int(m.group(2)), m.group(3)
        if pos > num_res_blocks or sub not in _VAE_RESIDUAL_INV:
            return None
        return f"decoder.upsamples.{block * (num_res_blocks + 2) + pos}.{_VAE_RESIDUAL_INV[sub]}"
    if part == "decoder" and (m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest)):
        block, sub = int(m.group(1)), m.group(2)
        if sub not in _VAE_RESAMPLE:
            return None
        return f"decoder.upsamples.{block * (num_res_blocks + 2) + num_res_blocks + 1}.{sub}"
    return None


def _infer_vae_res_blocks_wan(keys: list[str]) -> int:
    """num_res_blocks from Wan decoder keys: the first Resample sits at index num_res_blocks + 1."""
    resample, resid = [], []
    for k in keys:
        if m := re.match(r"^decoder\.upsamples\.(\d+)\.(.+)$", k):
            (resample if m.group(2) in _VAE_RESAMPLE else resid).append(int(m.group(1)))
    if resample:
        return min(resample) - 1
    return max(resid) if resid else 2  # single level (no Resample): all upsamples are residual


def _infer_vae_res_blocks_diffusers(keys: list[str]) -> int:
    pos = [int(m.group(1)) for k in keys if (m := re.match(r"^decoder\.up_blocks\.0\.resnets\.(\d+)\.", k))]
    return max(pos) if pos else 2


def vae_keys_from_wan(sd: Mapping[str, Any], num_res_blocks: int | None = None) -> dict[str, Any]:
    """``Wan2.1_VAE.pth`` names -> diffusers ``AutoencoderKLWan`` names.

    ``num_res_blocks`` (2 for Wan2.1) is inferred from the decoder keys when not given. Assumes
    ``attn_scales=[]`` (no attention blocks outside the middle), as in every Wan2.1 VAE.
    """
    n = _infer_vae_res_blocks_wan(list(sd)) if num_res_blocks is None else num_res_blocks
    return _rename(sd, lambda k: _vae_wan_to_diffusers_key(k, n), lambda k: _vae_diffusers_to_wan_key(k, n),
                   "VAE (Wan -> diffusers names)")


def vae_keys_to_wan(sd: Mapping[str, Any], num_res_blocks: int | None = None) -> dict[str, Any]:
    """diffusers ``AutoencoderKLWan`` names -> ``Wan2.1_VAE.pth`` names; exact inverse of :func:`vae_keys_from_wan`."""
    n = _infer_vae_res_blocks_diffusers(list(sd)) if num_res_blocks is None else num_res_blocks
    return _rename(sd, lambda k: _vae_diffusers_to_wan_key(k, n), lambda k: _vae_wan_to_diffusers_key(k, n),
                   "VAE (diffusers -> Wan names)")


# ------------------------------------------------------------------------------------------------
# Text encoder: Wan T5Encoder names <-> transformers UMT5EncoderModel names
# ------------------------------------------------------------------------------------------------

_T5_TOP = {"token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}
_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    # UMT5: every layer has its own relative position bias (Wan: shared_pos=False).
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    # Wan: fc2(fc1(x) * GELU_tanh(gate.0(x))); HF gated-gelu: wo(gelu_new(wi_0(x)) * wi_1(x)).
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_T5_TIED = "encoder.embed_tokens.weight"  # tied to shared.weight in UMT5EncoderModel
_t5_to_hf_key = _block_mapper(_T5_TOP, _T5_BLOCK, "blocks.", "encoder.block.")
_t5_from_hf_key_base = _block_mapper(_invert(_T5_TOP), _invert(_T5_BLOCK), "encoder.block.", "blocks.")


def _t5_from_hf_key(key: str) -> str | None:
    return "token_embedding.weight" if key == _T5_TIED else _t5_from_hf_key_base(key)


def t5_keys_from_wan(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Wan ``models_t5_umt5-xxl-enc-bf16.pth`` names -> transformers ``UMT5EncoderModel`` names.

    The token embedding is emitted under both tied names, ``shared.weight`` and
    ``encoder.embed_tokens.weight`` (one tensor), so a strict ``load_state_dict`` succeeds.
    """
    out = _rename(sd, _t5_to_hf_key, _t5_from_hf_key, "text encoder (Wan -> transformers names)")
    if "shared.weight" in out:
        out[_T5_TIED] = out["shared.weight"]
    return out


def t5_keys_to_wan(sd: Mapping[str, Any]) -> dict[str, Any]:
    """transformers ``UMT5EncoderModel`` names -> Wan T5 encoder names.

    The tied pair ``shared.weight``/``encoder.embed_tokens.weight`` becomes one
    ``token_embedding.weight``; either name alone is accepted (saved HF files keep only one).
    """
    sd = dict(sd)
    if "shared.weight" in sd and _T5_TIED in sd:
        a, b = sd["shared.weight"], sd.pop(_T5_TIED)
        if (isinstance(a, Tensor) and isinstance(b, Tensor) and a is not b and not a.is_meta and not b.is_meta and (
                a.shape != b.shape or (a.data_ptr() != b.data_ptr() and not torch.equal(a, b)))):
            raise CheckpointError("text encoder: shared.weight and encoder.embed_tokens.weight differ, but "
                                  "UMT5EncoderModel ties them; the state dict is inconsistent. " + _FIX_HINT)
    return _rename(sd, _t5_from_hf_key, _t5_to_hf_key, "text encoder (transformers -> Wan names)")


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def validate_state_dict(sd: Mapping[str, Any], expected_shapes: Mapping[str, tuple[int, ...]], what: str,
                        source: str, *, layout: str | None = None, hint: str | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly the expected keys and shapes."""
    missing = [k for k in expected_shapes if k not in sd]
    unexpected = [k for k in sd if k not in expected_shapes]
    mismatched = [(k, tuple(sd[k].shape), tuple(expected_shapes[k])) for k in expected_shapes
                  if k in sd and tuple(sd[k].shape) != tuple(expected_shapes[k])]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_preview(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
    if mismatched:
        shown = "; ".join(f"{k}: file has {list(got)}, model expects {list(exp)}" for k, got, exp in mismatched[:10])
        more = f" (+{len(mismatched) - 10} more)" if len(mismatched) > 10 else ""
        parts.append(f"{len(mismatched)} shape mismatches: {shown}{more}")
    where = f"{source} (layout: {layout})" if layout else source
    raise CheckpointError(
        f"{what} in {where} does not match the model config ({len(sd)} tensors in the file, "
        f"{len(expected_shapes)} expected): " + "; ".join(parts) + ". " + (hint or _FIX_HINT),
        source=source, layout=layout, missing=missing, unexpected=unexpected, mismatched=mismatched)


# ------------------------------------------------------------------------------------------------
# File helpers
# ------------------------------------------------------------------------------------------------


def _torch_load(path: Path, what: str, layout: str) -> Any:
    """``torch.load`` memory-mapped and weights-only (no code execution); falls back to a plain read for
    legacy (non-zip) files, which cannot be memory-mapped."""
    if not path.is_file():
        raise CheckpointError(f"{what}: file {path} not found (layout: {layout}). " + _FIX_HINT,
                              source=str(path), layout=layout)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zipfile" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{what}: {path} (layout: {layout}) holds objects other than tensors and plain containers, so it "
            f"cannot be read with torch.load(weights_only=True) ({exc}). Re-save only the weights, e.g. with "
            "engine_core.checkpoints.save_student_checkpoint, in a trusted environment.",
            source=str(path), layout=layout) from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{what}: cannot read {path} (layout: {layout}): {exc}. The file may be truncated; "
                              "download it again. " + _FIX_HINT, source=str(path), layout=layout) from exc


def _cast(sd: dict[str, Tensor], dtype: torch.dtype | None, keep_fp32: Callable[[str], bool] = lambda k: False
          ) -> dict[str, Tensor]:
    if dtype is None:
        return sd
    for k, v in sd.items():  # one tensor at a time, in place in the dict: never two full copies
        want = torch.float32 if keep_fp32(k) and v.is_floating_point() else dtype
        if v.is_floating_point() and v.dtype != want:
            sd[k] = v.to(want)
    return sd


def _safetensors_files(folder: Path, stem: str) -> tuple[list[Path], dict[str, str] | None, Path]:
    """Files of a (possibly sharded) safetensors checkpoint, its weight map, and the path to report."""
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return [single], None, single
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index} is not a safetensors index (no 'weight_map'): {exc}. " + _FIX_HINT,
                                  source=str(index)) from exc
        files = sorted({folder / name for name in weight_map.values()})
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{index} lists {len(absent)} shard files that are missing: {_preview(absent)}. "
                                  "The download is incomplete; fetch it again. " + _FIX_HINT, source=str(index),
                                  missing=absent)
        return files, weight_map, index
    raise CheckpointError(f"no {stem}.safetensors or {stem}.safetensors.index.json in {folder}. " + _FIX_HINT,
                          source=str(folder))


def _read_safetensors(folder: Path, stem: str, dtype: torch.dtype | None) -> tuple[dict[str, Tensor], str]:
    from safetensors import safe_open

    files, weight_map, shown = _safetensors_files(folder, stem)
    out: dict[str, Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as f:
                for key in f.keys():
                    if weight_map is not None and weight_map.get(key) != file.name:
                        continue  # listed in another shard (or not listed): the index is authoritative
                    t = f.get_tensor(key)
                    out[key] = t.to(dtype) if dtype is not None and t.is_floating_point() and t.dtype != dtype else t
        except Exception as exc:  # safetensors raises its own error type for damaged headers
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"cannot read {file}: {exc}. The file may be truncated; download it again. "
                                  + _FIX_HINT, source=str(file)) from exc
    if weight_map is not None:
        absent = [k for k in weight_map if k not in out]
        if absent:
            raise CheckpointError(f"{shown}: {len(absent)} keys of the index are in none of the shards: "
                                  f"{_preview(absent)}. " + _FIX_HINT, source=str(shown), missing=absent)
    return out, str(shown)


def _save_safetensors(sd: Mapping[str, Tensor], folder: Path, stem: str, max_shard_bytes: int | None = None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in sd.items()}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        save_file(tensors, str(folder / f"{stem}.safetensors"), metadata={"format": "pt"})
        return
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += n
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    (folder / f"{stem}.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}. " + _FIX_HINT, source=str(path)) from exc


def _config_mismatch(path: Path, layout: str, what: str, pairs: list[tuple[str, Any, Any]]) -> None:
    bad = [(name, got, want) for name, got, want in pairs if got != want]
    if bad:
        shown = "; ".join(f"{name}: file {got!r}, config {want!r}" for name, got, want in bad)
        raise CheckpointError(f"{what}: {path} (layout: {layout}) describes a different model than the engine's "
                              f"config: {shown}. Use the weights that belong to this model config. " + _FIX_HINT,
                              source=str(path), layout=layout)


# ------------------------------------------------------------------------------------------------
# Layout detection
# ------------------------------------------------------------------------------------------------


def _wan_markers(d: Path) -> list[str]:
    names = [f"{WAN_DIT_STEM}.safetensors", f"{WAN_DIT_STEM}.safetensors.index.json", WAN_VAE_FILE, WAN_T5_FILE]
    return [n for n in names if (d / n).is_file()]


def _diffusers_markers(d: Path) -> list[str]:
    found = ["model_index.json"] if (d / "model_index.json").is_file() else []
    return found + [f"{n}/" for n in DIFFUSERS_DIRS if (d / n).is_dir()]


def detect_layout(model_dir: Path) -> Layout:
    """``"wan"`` for the original Wan2.1 folder, ``"diffusers"`` for the diffusers-format folder."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"weights folder {model_dir} does not exist or is not a folder. " + _FIX_HINT,
                              source=str(model_dir))
    wan, diff = _wan_markers(model_dir), _diffusers_markers(model_dir)
    if wan and not diff:
        return "wan"
    if diff and not wan:
        return "diffusers"
    if wan and diff:
        raise CheckpointError(f"{model_dir} mixes both layouts (Wan files {wan}, diffusers entries {diff}); keep one "
                              "layout per folder. " + _FIX_HINT, source=str(model_dir))
    contents = sorted(p.name + ("/" if p.is_dir() else "") for p in model_dir.iterdir())
    raise CheckpointError(
        f"{model_dir} is not a recognizable Wan2.1 weights folder. Looked for the original layout "
        f"({WAN_DIT_STEM}.safetensors[.index.json], {WAN_VAE_FILE}, {WAN_T5_FILE}) and the diffusers layout "
        f"(model_index.json, {', '.join(n + '/' for n in DIFFUSERS_DIRS)}); the folder contains "
        f"[{_preview(contents, 20)}]. " + _FIX_HINT, source=str(model_dir))


# ------------------------------------------------------------------------------------------------
# DiT loading
# ------------------------------------------------------------------------------------------------


def _check_wan_dit_config(path: Path, cfg: DiTConfig) -> None:
    if not path.is_file():
        log.info("%s not found; the DiT config is checked by tensor shapes only", path)
        return
    c = _read_json(path)
    if c.get("model_type", "t2v") != "t2v":
        raise CheckpointError(f"DiT: {path} (layout: wan) is a {c['model_type']!r} model; the engine needs the "
                              "text-to-video (t2v) Wan2.1-T2V-1.3B. " + _FIX_HINT, source=str(path), layout="wan")
    fields = ["dim", "num_heads", "num_layers", "ffn_dim", "freq_dim", "in_dim", "out_dim", "text_len", "text_dim",
              "eps"]
    pairs = [(f, c[f], getattr(cfg, f)) for f in fields if f in c]
    if "patch_size" in c:
        pairs.append(("patch_size", tuple(c["patch_size"]), tuple(cfg.patch_size)))
    _config_mismatch(path, "wan", "DiT", pairs)


def _check_diffusers_dit_config(path: Path, cfg: DiTConfig) -> None:
    if not path.is_file():
        log.info("%s not found; the DiT config is checked by tensor shapes only", path)
        return
    c = _read_json(path)
    if c.get("added_kv_proj_dim") is not None or c.get("image_dim") is not None:
        raise CheckpointError(f"DiT: {path} (layout: diffusers) is an image-conditioned (I2V/FLF2V) transformer; the "
                              "engine needs Wan2.1-T2V-1.3B. " + _FIX_HINT, source=str(path), layout="diffusers")
    heads, head_dim = c.get("num_attention_heads"), c.get("attention_head_dim")
    pairs = [("num_attention_heads", heads, cfg.num_heads)]
    if heads is not None and head_dim is not None:
        pairs.append(("num_attention_heads * attention_head_dim", heads * head_dim, cfg.dim))
    for theirs, ours in [("num_layers", "num_layers"), ("ffn_dim", "ffn_dim"), ("freq_dim", "freq_dim"),
                         ("in_channels", "in_dim"), ("out_channels", "out_dim"), ("text_dim", "text_dim"),
                         ("eps", "eps")]:
        if theirs in c:
            pairs.append((theirs, c[theirs], getattr(cfg, ours)))
    if "patch_size" in c:
        pairs.append(("patch_size", tuple(c["patch_size"]), tuple(cfg.patch_size)))
    for flag, want in [("cross_attn_norm", True), ("qk_norm", "rms_norm_across_heads")]:
        if flag in c:
            pairs.append((flag, c[flag], want))
    _config_mismatch(path, "diffusers", "DiT", pairs)


def load_dit_state(model_dir: Path | None, student: Path | None, cfg: DiTConfig, dtype: torch.dtype | None,
                   *, use_ema: bool = False) -> dict[str, Tensor]:
    """The DiT weights in original Wan names, cast to ``dtype``, validated against ``cfg``.

    ``student`` (a ShotStream ``shotstream_merged.pt``) overrides the folder's DiT: when it is given the
    folder's DiT is not read at all. Otherwise the DiT comes from ``model_dir`` in either layout.
    """
    expected = expected_dit_shapes(cfg)
    if student is not None:
        path = Path(student)
        if path.is_dir():  # a KlingTeam/ShotStream snapshot folder
            path = path / STUDENT_FILE
        ckpt = _torch_load(path, "ShotStream student", "student")
        sd = dit_keys_from_student(ckpt, use_ema=use_ema, source=str(path))
        del ckpt
        validate_state_dict(sd, expected, "ShotStream student DiT", str(path), layout="student")
        return _cast(sd, dtype)
    if model_dir is None:
        raise CheckpointError("no DiT weights given: pass a Wan2.1 weights folder, a ShotStream student checkpoint, "
                              "or both. " + _FIX_HINT)
    model_dir = Path(model_dir)
    layout = detect_layout(model_dir)
    if layout == "wan":
        _check_wan_dit_config(model_dir / WAN_DIT_CONFIG, cfg)
        sd, source = _read_safetensors(model_dir, WAN_DIT_STEM, dtype)
    else:
        folder = model_dir / "transformer"
        _check_diffusers_dit_config(folder / "config.json", cfg)
        raw, source = _read_safetensors(folder, WAN_DIT_STEM, dtype)
        # Validate in the file's own (diffusers) names so the message shows keys as they are in the file.
        validate_state_dict(raw, dit_keys_to_diffusers(expected), "DiT", source, layout=layout)
        sd = dit_keys_from_diffusers(raw)
    validate_state_dict(sd, expected, "DiT", source, layout=layout)
    return sd


# ------------------------------------------------------------------------------------------------
# VAE loading
# ------------------------------------------------------------------------------------------------


def _build_vae_meta(vae_cfg: VAEConfig):
    from .vae import build_vae  # the one place that turns a VAEConfig into AutoencoderKLWan kwargs

    with torch.device("meta"):
        return build_vae(vae_cfg)


def _assert_materialized(module: torch.nn.Module, what: str) -> None:
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{what}: {len(left)} tensors were not filled from the checkpoint: {_preview(left)}")


def _check_vae_config(path: Path, module: Any, vae_cfg: VAEConfig) -> None:
    c = dict(module.config)
    pairs = [("base_dim", c.get("base_dim"), vae_cfg.base_dim), ("z_dim", c.get("z_dim"), vae_cfg.z_dim),
             ("dim_mult", tuple(c.get("dim_mult", ())), tuple(vae_cfg.dim_mult)),
             ("num_res_blocks", c.get("num_res_blocks"), vae_cfg.num_res_blocks),
             ("temperal_downsample", tuple(c.get("temperal_downsample", ())), tuple(vae_cfg.temperal_downsample)),
             ("is_residual", bool(c.get("is_residual", False)), False),
             ("attn_scales", list(c.get("attn_scales", [])), [])]
    if c.get("decoder_base_dim") is not None:
        pairs.append(("decoder_base_dim", c["decoder_base_dim"], vae_cfg.base_dim))
    for name in ("latents_mean", "latents_std"):
        want = getattr(vae_cfg, name)
        if want is not None:
            got = c.get(name)
            same = got is not None and len(got) == len(want) and all(abs(a - b) < 1e-6 for a, b in zip(got, want))
            pairs.append((name, got, list(want) if not same else got))
    _config_mismatch(path, "diffusers", "VAE", pairs)


def load_vae(model_dir: Path, vae_cfg: VAEConfig, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu"):
    """The Wan2.1 VAE as diffusers ``AutoencoderKLWan``, in eval mode, on ``device``.

    Layout ``wan``: built from ``vae_cfg`` on the meta device, filled from ``Wan2.1_VAE.pth`` (renamed,
    validated, strict). Layout ``diffusers``: ``AutoencoderKLWan.from_pretrained(model_dir / 'vae')``,
    checked against ``vae_cfg`` and for missing/unexpected weights.
    """
    model_dir = Path(model_dir)
    layout = detect_layout(model_dir)
    if layout == "wan":
        path = model_dir / WAN_VAE_FILE
        vae = _build_vae_meta(vae_cfg)
        expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
        raw = _torch_load(path, "VAE", layout)
        # Validate in the file's (Wan) names, so the message names keys as they are in the file.
        validate_state_dict(raw, vae_keys_to_wan(expected, num_res_blocks=vae_cfg.num_res_blocks), "VAE", str(path),
                            layout=layout)
        sd = vae_keys_from_wan(raw, num_res_blocks=vae_cfg.num_res_blocks)
        del raw
        validate_state_dict(sd, expected, "VAE", str(path), layout=layout)
        vae.load_state_dict(_cast(sd, dtype), strict=True, assign=True)
        _assert_materialized(vae, f"VAE from {path}")
    else:
        from diffusers import AutoencoderKLWan

        folder = model_dir / "vae"
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"VAE: {folder / 'config.json'} not found (layout: diffusers). " + _FIX_HINT,
                                  source=str(folder), layout=layout)
        try:
            vae, info = AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype, local_files_only=True,
                                                         output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"VAE: cannot load {folder} (layout: diffusers): {exc}. " + _FIX_HINT,
                                  source=str(folder), layout=layout) from exc
        _check_loading_info(info, "VAE", folder)
        _check_vae_config(folder / "config.json", vae, vae_cfg)
    return vae.to(device).eval().requires_grad_(False)


def _check_loading_info(info: Mapping[str, Any], what: str, folder: Path, ignore: tuple[str, ...] = ()) -> None:
    missing = [k for k in info.get("missing_keys", []) if k not in ignore]
    unexpected = list(info.get("unexpected_keys", []))
    mismatched = [tuple(m) for m in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_preview(sorted(missing))}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_preview(sorted(unexpected))}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {_preview([str(m) for m in mismatched])}")
        raise CheckpointError(f"{what} in {folder} (layout: diffusers) does not match its config: " + "; ".join(parts)
                              + ". " + _FIX_HINT, source=str(folder), layout="diffusers", missing=sorted(missing),
                              unexpected=sorted(unexpected))


# ------------------------------------------------------------------------------------------------
# Text encoder loading
# ------------------------------------------------------------------------------------------------


def umt5_config(text_cfg: TextConfig):
    """transformers ``UMT5Config`` of the encoder described by ``text_cfg`` (gated-GELU, per-layer buckets)."""
    from transformers import UMT5Config

    return UMT5Config(vocab_size=text_cfg.vocab_size, d_model=text_cfg.d_model, d_kv=text_cfg.d_kv,
                      d_ff=text_cfg.d_ff, num_layers=text_cfg.num_layers, num_heads=text_cfg.num_heads,
                      relative_attention_num_buckets=text_cfg.relative_attention_num_buckets,
                      relative_attention_max_distance=text_cfg.relative_attention_max_distance,
                      feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, is_encoder_decoder=False,
                      use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def _check_text_config(path: Path, module: Any, text_cfg: TextConfig) -> None:
    c = module.config
    fields = ["vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets",
              "relative_attention_max_distance"]
    pairs = [(f, getattr(c, f, None), getattr(text_cfg, f)) for f in fields]
    pairs.append(("feed_forward_proj", getattr(c, "feed_forward_proj", None), "gated-gelu"))
    _config_mismatch(path, "diffusers", "text encoder", pairs)


def _load_tokenizer(folder: Path, layout: str):
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise CheckpointError(f"tokenizer: folder {folder} not found (layout: {layout}). " + _FIX_HINT,
                              source=str(folder), layout=layout)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"tokenizer: cannot load {folder} (layout: {layout}): {exc}. " + _FIX_HINT,
                              source=str(folder), layout=layout) from exc


def _hf_dtype_kwargs(dtype: torch.dtype | None) -> dict[str, Any]:
    if dtype is None:
        return {}
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_text_encoder(model_dir: Path, text_cfg: TextConfig, dtype: torch.dtype | None = None,
                      device: torch.device | str = "cpu"):
    """``(UMT5EncoderModel, tokenizer)``: the UMT5-XXL encoder in eval mode on ``device``, and its tokenizer.

    Layout ``wan``: the model is built from ``text_cfg`` on the meta device and filled from
    ``models_t5_umt5-xxl-enc-bf16.pth`` (renamed, validated, strict); the tokenizer comes from
    ``google/umt5-xxl/``. Layout ``diffusers``: ``from_pretrained`` on ``text_encoder/`` and ``tokenizer/``.
    """
    from transformers import UMT5EncoderModel

    model_dir = Path(model_dir)
    layout = detect_layout(model_dir)
    if layout == "wan":
        path = model_dir / WAN_T5_FILE
        with torch.device("meta"):
            model = UMT5EncoderModel(umt5_config(text_cfg))
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        raw = _torch_load(path, "text encoder", layout)
        validate_state_dict(raw, t5_keys_to_wan(expected), "text encoder (Wan T5)", str(path), layout=layout)
        sd = t5_keys_from_wan(raw)
        del raw
        validate_state_dict(sd, expected, "text encoder (UMT5)", str(path), layout=layout)
        # As transformers' from_pretrained does: in fp16 the FFN output projections stay fp32 (overflow).
        keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ()) if dtype == torch.float16 else ()
        del sd[_T5_TIED]  # cast the tied embedding once, then put the same tensor under both names
        sd = _cast(sd, dtype, lambda k: any(f".{m}." in f".{k}" for m in keep))
        sd[_T5_TIED] = sd["shared.weight"]
        model.load_state_dict(sd, strict=True, assign=True)
        model.encoder.embed_tokens = model.shared  # keep the tie a tie (one Parameter)
        _assert_materialized(model, f"text encoder from {path}")
        if dtype is not None:
            model.config.dtype = dtype
        tokenizer = _load_tokenizer(model_dir / WAN_TOKENIZER_DIR, layout)
    else:
        folder = model_dir / "text_encoder"
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"text encoder: {folder / 'config.json'} not found (layout: diffusers). "
                                  + _FIX_HINT, source=str(folder), layout=layout)
        try:
            model, info = UMT5EncoderModel.from_pretrained(folder, local_files_only=True, output_loading_info=True,
                                                           **_hf_dtype_kwargs(dtype))
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"text encoder: cannot load {folder} (layout: diffusers): {exc}. " + _FIX_HINT,
                                  source=str(folder), layout=layout) from exc
        _check_loading_info(info, "text encoder", folder, ignore=(_T5_TIED,))
        _check_text_config(folder / "config.json", model, text_cfg)
        tokenizer = _load_tokenizer(model_dir / "tokenizer", layout)
    return model.to(device).eval().requires_grad_(False), tokenizer


# ------------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------------


def _infer_dit_dims(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    w = sd["patch_embedding.weight"]
    layers = {int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))}
    return {"dim": w.shape[0], "in_dim": w.shape[1], "patch_size": list(w.shape[2:]),
            "ffn_dim": sd["blocks.0.ffn.0.weight"].shape[0], "freq_dim": sd["time_embedding.0.weight"].shape[1],
            "text_dim": sd["text_embedding.0.weight"].shape[1],
            "out_dim": sd["head.head.weight"].shape[0] // math.prod(w.shape[2:]), "num_layers": len(layers)}


def wan_dit_config(dit_sd: Mapping[str, Tensor] | None = None, dit_cfg: DiTConfig | None = None) -> dict[str, Any]:
    """``config.json`` of the original layout (``WanModel``), from ``dit_cfg`` or inferred from the tensors."""
    c: dict[str, Any] = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": "t2v"}
    if dit_cfg is not None:
        c.update(dim=dit_cfg.dim, eps=dit_cfg.eps, ffn_dim=dit_cfg.ffn_dim, freq_dim=dit_cfg.freq_dim,
                 in_dim=dit_cfg.in_dim, num_heads=dit_cfg.num_heads, num_layers=dit_cfg.num_layers,
                 out_dim=dit_cfg.out_dim, text_len=dit_cfg.text_len, text_dim=dit_cfg.text_dim,
                 patch_size=list(dit_cfg.patch_size))
    elif dit_sd is not None:
        c.update(_infer_dit_dims(dit_sd))
    return c


def diffusers_dit_config(dit_cfg: DiTConfig) -> dict[str, Any]:
    """``transformer/config.json`` of the diffusers layout (``WanTransformer3DModel``)."""
    import diffusers

    return {"_class_name": "WanTransformer3DModel", "_diffusers_version": diffusers.__version__,
            "added_kv_proj_dim": None, "attention_head_dim": dit_cfg.head_dim, "cross_attn_norm": True,
            "eps": dit_cfg.eps, "ffn_dim": dit_cfg.ffn_dim, "freq_dim": dit_cfg.freq_dim, "image_dim": None,
            "in_channels": dit_cfg.in_dim, "num_attention_heads": dit_cfg.num_heads,
            "num_layers": dit_cfg.num_layers, "out_channels": dit_cfg.out_dim, "patch_size": list(dit_cfg.patch_size),
            "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024, "text_dim": dit_cfg.text_dim}


def save_wan_layout(directory: Path, dit_sd: Mapping[str, Tensor] | None, vae_module: Any = None,
                    text_module: Any = None, tokenizer: Any = None, *, dit_cfg: DiTConfig | None = None,
                    max_shard_bytes: int | None = None) -> Path:
    """Write the original Wan2.1 layout. Any component may be ``None`` (skipped).

    ``dit_sd`` is in Wan names; ``vae_module`` an ``AutoencoderKLWan``; ``text_module`` a
    ``UMT5EncoderModel``; ``tokenizer`` a transformers tokenizer. ``dit_cfg`` fills ``config.json``
    completely (otherwise the sizes are inferred from the tensors and ``num_heads`` is left out).
    ``max_shard_bytes`` shards the DiT like larger Wan checkpoints (with an index).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if dit_sd is not None:
        (directory / WAN_DIT_CONFIG).write_text(json.dumps(wan_dit_config(dit_sd, dit_cfg), indent=2))
        _save_safetensors(dit_sd, directory, WAN_DIT_STEM, max_shard_bytes)
    if vae_module is not None:
        sd = vae_keys_to_wan(vae_module.state_dict(), num_res_blocks=vae_module.config.num_res_blocks)
        torch.save({k: v.detach().clone() for k, v in sd.items()}, directory / WAN_VAE_FILE)
    if text_module is not None:
        sd = t5_keys_to_wan(text_module.state_dict())
        torch.save({k: v.detach().clone() for k, v in sd.items()}, directory / WAN_T5_FILE)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory / WAN_TOKENIZER_DIR)
    return directory


def save_diffusers_layout(directory: Path, dit_sd: Mapping[str, Tensor] | None, vae_module: Any = None,
                          text_module: Any = None, tokenizer: Any = None, *, dit_cfg: DiTConfig | None = None,
                          max_shard_bytes: int | None = None) -> Path:
    """Write the diffusers layout (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
    ``model_index.json``). ``dit_sd`` is in Wan names and needs ``dit_cfg`` (the diffusers config
    has the head count, which tensors do not show)."""
    import diffusers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__}
    if dit_sd is not None:
        if dit_cfg is None:
            raise ValueError("save_diffusers_layout needs dit_cfg to write transformer/config.json")
        folder = directory / "transformer"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(diffusers_dit_config(dit_cfg), indent=2))
        _save_safetensors(dit_keys_to_diffusers(dit_sd), folder, WAN_DIT_STEM, max_shard_bytes)
        index["transformer"] = ["diffusers", "WanTransformer3DModel"]
    if vae_module is not None:
        vae_module.save_pretrained(directory / "vae", safe_serialization=True)
        index["vae"] = ["diffusers", "AutoencoderKLWan"]
    if text_module is not None:
        text_module.save_pretrained(directory / "text_encoder", safe_serialization=True)
        index["text_encoder"] = ["transformers", type(text_module).__name__]
    if tokenizer is not None:
        tokenizer.save_pretrained(directory / "tokenizer")
        index["tokenizer"] = ["transformers", type(tokenizer).__name__]
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory


def save_student_checkpoint(path: Path, dit_sd: Mapping[str, Tensor], fp32: bool = True, *,
                            ema_sd: Mapping[str, Tensor] | None = None, extra: Mapping[str, Any] | None = None
                            ) -> Path:
    """Write a ShotStream-style checkpoint ``{'generator': {'model.<key>': tensor}, ['generator_ema': ...]}``.

    ``dit_sd`` is in Wan names. ``fp32`` stores float32 like the published merged checkpoint.
    """
    def wrap(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {f"model.{k}": (v.detach().float() if fp32 and v.is_floating_point() else v.detach()).contiguous()
                for k, v in sd.items()}

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = dict(extra or {})
    ckpt["generator"] = wrap(dit_sd)
    if ema_sd is not None:
        ckpt["generator_ema"] = wrap(ema_sd)
    torch.save(ckpt, path)
    return path
