"""Key tables between the published Wan2.1 weight formats: pure renaming, no file access.

Our DiT uses the original Wan names; the VAE and text encoder are the diffusers / transformers
modules. The tables map original Wan2.1 (``wan/modules/model.py``, ``vae.py``, ``t5.py``) names to
diffusers ``WanTransformer3DModel`` / ``AutoencoderKLWan`` and transformers ``UMT5EncoderModel`` names,
following diffusers' ``scripts/convert_wan_to_diffusers.py`` and ``single_file_utils.convert_wan_*`` and
transformers' ``modeling_umt5.py``; tests/test_checkpoints.py checks them against those converters.

:class:`CheckpointError` lives here, at the bottom of the checkpoint modules, because renaming is
where mixed layouts are caught; the loaders (:mod:`.checkpoints`) and writers raise it too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .config import DiTConfig

FIX_HINT = (
    "Point the engine at an unmodified Wan-AI/Wan2.1-T2V-1.3B (or -Diffusers) folder and the "
    "KlingTeam/ShotStream shotstream_merged.pt for this model config (`python -m engine_core.fetch DEST` "
    "downloads both), or convert your weights with engine_core.checkpoint_writers.save_wan_layout / "
    "save_student_checkpoint."
)

# ShotStream's WanDiffusionWrapper holds the Wan DiT as ``.model``, so its state dict keys carry this prefix.
STUDENT_PREFIX = "model."


class CheckpointError(ValueError):
    """A weight file or folder does not match what the model config expects.

    The message names the file, the layout and the offending keys, and says what to do.
    ``missing``/``unexpected``/``mismatched`` hold the full lists when the error came from
    ``validate_state_dict``.
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


def preview_keys(keys: list[str], limit: int = 10) -> str:
    """The first ``limit`` keys and a count of the rest: full lists of 800 keys are unreadable."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


# ------------------------------------------------------------------------------------------------
# Table machinery
# ------------------------------------------------------------------------------------------------


def _with_params(table: dict[str, str], params: tuple[str, ...] = ("weight", "bias")) -> dict[str, str]:
    return {f"{a}.{p}": f"{b}.{p}" for a, b in table.items() for p in params}


def _invert(table: dict[str, str]) -> dict[str, str]:
    inv = {v: k for k, v in table.items()}
    assert len(inv) == len(table), "key table is not one-to-one"
    return inv


def _block_mapper(top: dict[str, str], block: dict[str, str], prefix_in: str = "blocks.",
                  prefix_out: str = "blocks.") -> Callable[[str], str | None]:
    """A key converter for models made of top-level tensors plus numbered, identical blocks."""
    pattern = re.compile(rf"^{re.escape(prefix_in)}(\d+)\.(.+)$")

    def convert(key: str) -> str | None:
        if key in top:
            return top[key]
        m = pattern.match(key)
        if m and m.group(2) in block:
            return f"{prefix_out}{m.group(1)}.{block[m.group(2)]}"
        return None

    return convert


def _rename(sd: Mapping[str, Any], convert: Callable[[str], str | None], inverse: Callable[[str], str | None],
            what: str) -> dict[str, Any]:
    """Rename every key with ``convert``; keys it does not know pass through unchanged.

    Unknown keys are left for ``validate_state_dict`` to report as unexpected. A key that is
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
                                  "mixes naming conventions. " + FIX_HINT)
        out[new] = value
    if mixed:
        raise CheckpointError(f"{what}: {len(mixed)} keys are already in the target naming while others are "
                              f"not (mixed layouts): {preview_keys(mixed)}. " + FIX_HINT, unexpected=mixed)
    return out


# ------------------------------------------------------------------------------------------------
# DiT: original Wan names (ours) <-> diffusers WanTransformer3DModel names
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

_dit_to_diffusers_key = _block_mapper(_DIT_TOP, _DIT_BLOCK)
_dit_from_diffusers_key = _block_mapper(_invert(_DIT_TOP), _invert(_DIT_BLOCK))


def dit_keys_to_diffusers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Original Wan DiT names -> diffusers ``WanTransformer3DModel`` names (no tensor changes)."""
    return _rename(sd, _dit_to_diffusers_key, _dit_from_diffusers_key, "DiT (Wan -> diffusers names)")


def dit_keys_from_diffusers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers ``WanTransformer3DModel`` names -> original Wan DiT names; exact inverse of the above."""
    return _rename(sd, _dit_from_diffusers_key, _dit_to_diffusers_key, "DiT (diffusers -> Wan names)")


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
_VAE_MID_RESNET_INV = _invert(_VAE_MID_RESNET)


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
        if idx in _VAE_MID_RESNET_INV and sub in _VAE_RESIDUAL_INV:
            return f"{part}.middle.{_VAE_MID_RESNET_INV[idx]}.{_VAE_RESIDUAL_INV[sub]}"
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
T5_TIED_KEY = "encoder.embed_tokens.weight"  # tied to shared.weight in UMT5EncoderModel
_t5_to_hf_key = _block_mapper(_T5_TOP, _T5_BLOCK, "blocks.", "encoder.block.")
_t5_from_hf_key_base = _block_mapper(_invert(_T5_TOP), _invert(_T5_BLOCK), "encoder.block.", "blocks.")


def _t5_from_hf_key(key: str) -> str | None:
    return "token_embedding.weight" if key == T5_TIED_KEY else _t5_from_hf_key_base(key)


def t5_keys_from_wan(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Wan ``models_t5_umt5-xxl-enc-bf16.pth`` names -> transformers ``UMT5EncoderModel`` names.

    The token embedding is emitted under both tied names, ``shared.weight`` and
    ``encoder.embed_tokens.weight`` (one tensor), so a strict ``load_state_dict`` succeeds.
    """
    out = _rename(sd, _t5_to_hf_key, _t5_from_hf_key, "text encoder (Wan -> transformers names)")
    if "shared.weight" in out:
        out[T5_TIED_KEY] = out["shared.weight"]
    return out


def t5_keys_to_wan(sd: Mapping[str, Any]) -> dict[str, Any]:
    """transformers ``UMT5EncoderModel`` names -> Wan T5 encoder names.

    The tied pair ``shared.weight``/``encoder.embed_tokens.weight`` becomes one
    ``token_embedding.weight``; either name alone is accepted (saved HF files keep only one).
    """
    sd = dict(sd)
    if "shared.weight" in sd and T5_TIED_KEY in sd:
        a, b = sd["shared.weight"], sd.pop(T5_TIED_KEY)
        if (isinstance(a, Tensor) and isinstance(b, Tensor) and a is not b and not a.is_meta and not b.is_meta and (
                a.shape != b.shape or (a.data_ptr() != b.data_ptr() and not torch.equal(a, b)))):
            raise CheckpointError("text encoder: shared.weight and encoder.embed_tokens.weight differ, but "
                                  "UMT5EncoderModel ties them; the state dict is inconsistent. " + FIX_HINT)
    return _rename(sd, _t5_from_hf_key, _t5_to_hf_key, "text encoder (transformers -> Wan names)")


# ------------------------------------------------------------------------------------------------
# Tiny preview decoder (TAEHV family: taew2_1, lighttaew2_1)
# ------------------------------------------------------------------------------------------------

# The published files hold a whole TAEHV autoencoder; only its decoder is used, the encoder part is dropped.
TAE_ENCODER_PREFIX = "encoder."


def expected_tae_decoder_shapes(latent_channels: int, channels: tuple[int, ...], blocks_per_stage: int,
                                time_strides: tuple[int, ...], image_channels: int = 3) -> dict[str, tuple[int, ...]]:
    """Every tensor of a TAEHV decoder as named in the published files (``decoder.<Sequential index>...``).

    Written from the layer sequence of ``madebyollin/taehv`` ``taehv.py`` (``TAEHV.decoder``): Clamp,
    conv3x3(latent -> c0) + bias, ReLU; per stage s (three): ``blocks_per_stage`` MemBlocks (convs
    ``conv.0`` 2c->c, ``conv.2``, ``conv.4`` c->c, all 3x3 with bias; no skip weight, widths are equal),
    Upsample, TGrow (1x1 conv c -> c*stride, no bias), conv3x3(c_s -> c_{s+1}, no bias); then ReLU,
    conv3x3(c3 -> image_channels) + bias. Parameter-free layers keep their index but have no keys.
    """
    if len(channels) != 4 or len(time_strides) != 3:
        raise ValueError(f"a TAEHV decoder has 4 widths and 3 temporal strides, got {channels}, {time_strides}")
    spec: dict[str, tuple[int, ...]] = {}

    def conv3(index: int, cin: int, cout: int, bias: bool, sub: str = "") -> None:
        spec[f"decoder.{index}.{sub}weight"] = (cout, cin, 3, 3)
        if bias:
            spec[f"decoder.{index}.{sub}bias"] = (cout,)

    conv3(1, latent_channels, channels[0], True)
    index = 3
    for stage, stride in enumerate(time_strides):
        c = channels[stage]
        for _ in range(blocks_per_stage):
            conv3(index, 2 * c, c, True, "conv.0.")
            conv3(index, c, c, True, "conv.2.")
            conv3(index, c, c, True, "conv.4.")
            index += 1
        spec[f"decoder.{index + 1}.conv.weight"] = (c * stride, c, 1, 1)  # index is the Upsample
        conv3(index + 2, c, channels[stage + 1], False)
        index += 3
    conv3(index + 1, channels[3], image_channels, True)  # index is the final ReLU
    return spec


def tae_keys_from_file(sd: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A published TAEHV state dict -> (the decoder's tensors, in the module's names; the encoder keys dropped).

    The module keeps the published names, so decoder keys pass unchanged; ``encoder.*`` keys are the
    autoencoder's other half and are returned separately so the loader can say what it ignored. Any
    other key stays in the dict for the validation to name as unexpected.
    """
    encoder = [k for k in sd if k.startswith(TAE_ENCODER_PREFIX)]
    dropped = set(encoder)
    return {k: v for k, v in sd.items() if k not in dropped}, encoder
