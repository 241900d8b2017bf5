"""Writing weights in the published layouts that :mod:`.checkpoints` reads.

For converting one's own weights into a folder the engine loads, and for the tests' tiny
checkpoints: whatever these write must read back through the loaders unchanged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoints import WAN_DIT_CONFIG, WAN_DIT_STEM, WAN_T5_FILE, WAN_TOKENIZER_DIR, WAN_VAE_FILE
from .config import DiTConfig
from .key_maps import STUDENT_PREFIX, dit_keys_to_diffusers, t5_keys_to_wan, vae_keys_to_wan


def _infer_dit_dims(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    w = sd["patch_embedding.weight"]
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"^blocks\.(\d+)\.(.+)$", k))}
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


def _save_pth(sd: Mapping[str, Tensor], path: Path) -> None:
    torch.save({k: v.detach().clone() for k, v in sd.items()}, path)


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
        _save_pth(vae_keys_to_wan(vae_module.state_dict(), num_res_blocks=vae_module.config.num_res_blocks),
                  directory / WAN_VAE_FILE)
    if text_module is not None:
        _save_pth(t5_keys_to_wan(text_module.state_dict()), directory / WAN_T5_FILE)
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
        return {STUDENT_PREFIX + k: (v.detach().float() if fp32 and v.is_floating_point() else v.detach()).contiguous()
                for k, v in sd.items()}

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = dict(extra or {})
    ckpt["generator"] = wrap(dit_sd)
    if ema_sd is not None:
        ckpt["generator_ema"] = wrap(ema_sd)
    torch.save(ckpt, path)
    return path
