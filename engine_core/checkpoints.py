"""Reading the published Wan2.1 / ShotStream weights, validated against the model config.

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

Every loader returns the DiT in original Wan names (what our DiT uses) and the VAE / text encoder as
diffusers / transformers modules; the renaming is in :mod:`.key_maps`, the writers of these layouts
in :mod:`.checkpoint_writers`. Loading never needs a GPU and avoids holding two copies of the
weights: safetensors files are read tensor by tensor, ``.pth``/``.pt`` files are memory-mapped
(``torch.load(mmap=True, weights_only=True)``), and modules are built on the meta device and filled
with ``assign=True``.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .config import DiTConfig, TextConfig, VAEConfig
from .key_maps import (FIX_HINT, STUDENT_PREFIX, T5_TIED_KEY, CheckpointError, dit_keys_from_diffusers,
                       dit_keys_to_diffusers, expected_dit_shapes, preview_keys, t5_keys_from_wan, t5_keys_to_wan,
                       vae_keys_from_wan, vae_keys_to_wan)

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


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def _key_problems(missing: list[str], unexpected: list[str]) -> list[str]:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {preview_keys(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {preview_keys(unexpected)}")
    return parts


def validate_state_dict(sd: Mapping[str, Any], expected_shapes: Mapping[str, tuple[int, ...]], what: str,
                        source: str, *, layout: str | None = None, hint: str | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly the expected keys and shapes."""
    missing = [k for k in expected_shapes if k not in sd]
    unexpected = [k for k in sd if k not in expected_shapes]
    mismatched = [(k, tuple(sd[k].shape), tuple(expected_shapes[k])) for k in expected_shapes
                  if k in sd and tuple(sd[k].shape) != tuple(expected_shapes[k])]
    if not (missing or unexpected or mismatched):
        return
    parts = _key_problems(missing, unexpected)
    if mismatched:
        shown = "; ".join(f"{k}: file has {list(got)}, model expects {list(exp)}" for k, got, exp in mismatched[:10])
        more = f" (+{len(mismatched) - 10} more)" if len(mismatched) > 10 else ""
        parts.append(f"{len(mismatched)} shape mismatches: {shown}{more}")
    where = f"{source} (layout: {layout})" if layout else source
    raise CheckpointError(
        f"{what} in {where} does not match the model config ({len(sd)} tensors in the file, "
        f"{len(expected_shapes)} expected): " + "; ".join(parts) + ". " + (hint or FIX_HINT),
        source=source, layout=layout, missing=missing, unexpected=unexpected, mismatched=mismatched)


def _validate_and_rename(raw: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]],
                         to_file_names: Callable[[Mapping[str, Any]], dict[str, Any]],
                         from_file_names: Callable[[Mapping[str, Any]], dict[str, Any]], source: str, layout: str,
                         what: str, what_renamed: str | None = None) -> dict[str, Any]:
    """``raw`` renamed into the module's names, validated before and after renaming.

    Validating first in the file's own names makes the error name keys as they are in the file.
    """
    validate_state_dict(raw, to_file_names(expected), what, source, layout=layout)
    sd = from_file_names(raw)
    validate_state_dict(sd, expected, what_renamed or what, source, layout=layout)
    return sd


def _config_mismatch(path: Path, layout: str, what: str, pairs: list[tuple[str, Any, Any]]) -> None:
    bad = [(name, got, want) for name, got, want in pairs if got != want]
    if bad:
        shown = "; ".join(f"{name}: file {got!r}, config {want!r}" for name, got, want in bad)
        raise CheckpointError(f"{what}: {path} (layout: {layout}) describes a different model than the engine's "
                              f"config: {shown}. Use the weights that belong to this model config. " + FIX_HINT,
                              source=str(path), layout=layout)


def _assert_materialized(module: torch.nn.Module, what: str) -> None:
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{what}: {len(left)} tensors were not filled from the checkpoint: {preview_keys(left)}")


# ------------------------------------------------------------------------------------------------
# File reading
# ------------------------------------------------------------------------------------------------


def _torch_load(path: Path, what: str, layout: str) -> Any:
    """``torch.load`` memory-mapped and weights-only (no code execution); falls back to a plain read for
    legacy (non-zip) files, which cannot be memory-mapped."""
    if not path.is_file():
        raise CheckpointError(f"{what}: file {path} not found (layout: {layout}). " + FIX_HINT,
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
            "engine_core.checkpoint_writers.save_student_checkpoint, in a trusted environment.",
            source=str(path), layout=layout) from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{what}: cannot read {path} (layout: {layout}): {exc}. The file may be truncated; "
                              "download it again. " + FIX_HINT, source=str(path), layout=layout) from exc


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
            raise CheckpointError(f"{index} is not a safetensors index (no 'weight_map'): {exc}. " + FIX_HINT,
                                  source=str(index)) from exc
        files = sorted({folder / name for name in weight_map.values()})
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{index} lists {len(absent)} shard files that are missing: "
                                  f"{preview_keys(absent)}. The download is incomplete; fetch it again. " + FIX_HINT,
                                  source=str(index), missing=absent)
        return files, weight_map, index
    raise CheckpointError(f"no {stem}.safetensors or {stem}.safetensors.index.json in {folder}. " + FIX_HINT,
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
                                  + FIX_HINT, source=str(file)) from exc
    if weight_map is not None:
        absent = [k for k in weight_map if k not in out]
        if absent:
            raise CheckpointError(f"{shown}: {len(absent)} keys of the index are in none of the shards: "
                                  f"{preview_keys(absent)}. " + FIX_HINT, source=str(shown), missing=absent)
    return out, str(shown)


def _from_pretrained(cls: Any, folder: Path, what: str, ignore: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder)`` offline; a failure, or weights that do not match the folder's
    config (which from_pretrained only warns about), raise :class:`CheckpointError`."""
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{what}: {folder / 'config.json'} not found (layout: diffusers). " + FIX_HINT,
                              source=str(folder), layout="diffusers")
    try:
        module, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what}: cannot load {folder} (layout: diffusers): {exc}. " + FIX_HINT,
                              source=str(folder), layout="diffusers") from exc
    missing = sorted(k for k in info.get("missing_keys", []) if k not in ignore)
    unexpected = sorted(info.get("unexpected_keys", []))
    mismatched = [str(tuple(m)) for m in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        parts = _key_problems(missing, unexpected)
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {preview_keys(mismatched)}")
        raise CheckpointError(f"{what} in {folder} (layout: diffusers) does not match its config: " + "; ".join(parts)
                              + ". " + FIX_HINT, source=str(folder), layout="diffusers", missing=missing,
                              unexpected=unexpected)
    return module


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
        raise CheckpointError(f"weights folder {model_dir} does not exist or is not a folder. " + FIX_HINT,
                              source=str(model_dir))
    wan, diff = _wan_markers(model_dir), _diffusers_markers(model_dir)
    if wan and not diff:
        return "wan"
    if diff and not wan:
        return "diffusers"
    if wan and diff:
        raise CheckpointError(f"{model_dir} mixes both layouts (Wan files {wan}, diffusers entries {diff}); keep one "
                              "layout per folder. " + FIX_HINT, source=str(model_dir))
    contents = sorted(p.name + ("/" if p.is_dir() else "") for p in model_dir.iterdir())
    raise CheckpointError(
        f"{model_dir} is not a recognizable Wan2.1 weights folder. Looked for the original layout "
        f"({WAN_DIT_STEM}.safetensors[.index.json], {WAN_VAE_FILE}, {WAN_T5_FILE}) and the diffusers layout "
        f"(model_index.json, {', '.join(n + '/' for n in DIFFUSERS_DIRS)}); the folder contains "
        f"[{preview_keys(contents, 20)}]. " + FIX_HINT, source=str(model_dir))


# ------------------------------------------------------------------------------------------------
# DiT
# ------------------------------------------------------------------------------------------------


def dit_keys_from_student(ckpt: Mapping[str, Any], use_ema: bool = False, *, source: str = "student checkpoint"
                          ) -> dict[str, Any]:
    """The DiT state dict (Wan names) inside a ShotStream checkpoint ``{'generator': {'model.<key>': ...}}``.

    ``use_ema`` prefers ``'generator_ema'`` and falls back to ``'generator'`` (with a warning) when
    the file has no EMA weights.
    """
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{source}: expected a dict with a 'generator' entry, got {type(ckpt).__name__}. "
                              + FIX_HINT, source=source, layout="student")
    entry = "generator"
    if use_ema:
        if "generator_ema" in ckpt:
            entry = "generator_ema"
        else:
            log.warning("%s has no 'generator_ema'; using 'generator'", source)
    if entry not in ckpt:
        top = [str(k) for k in ckpt.keys()]
        looks_flat = any(k.startswith((STUDENT_PREFIX + "blocks.", "blocks.")) for k in top)
        raise CheckpointError(
            f"{source} (layout: student) has no 'generator' entry; its top-level keys are [{preview_keys(top)}]"
            + (". It looks like a bare DiT state dict: wrap it as {'generator': {'model.' + key: tensor}} "
               "(save_student_checkpoint does this)" if looks_flat else "")
            + ". A ShotStream checkpoint is torch.save({'generator': state_dict, ...}). " + FIX_HINT,
            source=source, layout="student", missing=["generator"])
    gen = ckpt[entry]
    if not isinstance(gen, Mapping):
        raise CheckpointError(f"{source}: '{entry}' is a {type(gen).__name__}, not a state dict. " + FIX_HINT,
                              source=source, layout="student")
    bad = [k for k in gen if not str(k).startswith(STUDENT_PREFIX)]
    if bad:
        raise CheckpointError(
            f"{source} (layout: student): {len(bad)} of {len(gen)} keys in '{entry}' do not start with "
            f"{STUDENT_PREFIX!r} (the ShotStream WanDiffusionWrapper prefix): {preview_keys(bad)}. " + FIX_HINT,
            source=source, layout="student", unexpected=bad)
    return {k[len(STUDENT_PREFIX):]: v for k, v in gen.items()}


def _read_dit_config(path: Path) -> dict[str, Any] | None:
    """The folder's DiT config, or ``None`` without one: the tensor shapes still catch a wrong model."""
    if not path.is_file():
        log.info("%s not found; the DiT config is checked by tensor shapes only", path)
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}. " + FIX_HINT, source=str(path)) from exc


def _check_wan_dit_config(path: Path, cfg: DiTConfig) -> None:
    c = _read_dit_config(path)
    if c is None:
        return
    if c.get("model_type", "t2v") != "t2v":
        raise CheckpointError(f"DiT: {path} (layout: wan) is a {c['model_type']!r} model; the engine needs the "
                              "text-to-video (t2v) Wan2.1-T2V-1.3B. " + FIX_HINT, source=str(path), layout="wan")
    fields = ["dim", "num_heads", "num_layers", "ffn_dim", "freq_dim", "in_dim", "out_dim", "text_len", "text_dim",
              "eps"]
    pairs = [(f, c[f], getattr(cfg, f)) for f in fields if f in c]
    if "patch_size" in c:
        pairs.append(("patch_size", tuple(c["patch_size"]), tuple(cfg.patch_size)))
    _config_mismatch(path, "wan", "DiT", pairs)


def _check_diffusers_dit_config(path: Path, cfg: DiTConfig) -> None:
    c = _read_dit_config(path)
    if c is None:
        return
    if c.get("added_kv_proj_dim") is not None or c.get("image_dim") is not None:
        raise CheckpointError(f"DiT: {path} (layout: diffusers) is an image-conditioned (I2V/FLF2V) transformer; the "
                              "engine needs Wan2.1-T2V-1.3B. " + FIX_HINT, source=str(path), layout="diffusers")
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
                              "or both. " + FIX_HINT)
    model_dir = Path(model_dir)
    layout = detect_layout(model_dir)
    if layout == "wan":
        _check_wan_dit_config(model_dir / WAN_DIT_CONFIG, cfg)
        sd, source = _read_safetensors(model_dir, WAN_DIT_STEM, dtype)
        validate_state_dict(sd, expected, "DiT", source, layout=layout)
        return sd
    folder = model_dir / "transformer"
    _check_diffusers_dit_config(folder / "config.json", cfg)
    raw, source = _read_safetensors(folder, WAN_DIT_STEM, dtype)
    return _validate_and_rename(raw, expected, dit_keys_to_diffusers, dit_keys_from_diffusers, source, layout, "DiT")


# ------------------------------------------------------------------------------------------------
# VAE
# ------------------------------------------------------------------------------------------------


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
        from .vae import build_vae  # the one place that turns a VAEConfig into AutoencoderKLWan kwargs

        path = model_dir / WAN_VAE_FILE
        with torch.device("meta"):
            vae = build_vae(vae_cfg)
        expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
        to_wan = partial(vae_keys_to_wan, num_res_blocks=vae_cfg.num_res_blocks)
        from_wan = partial(vae_keys_from_wan, num_res_blocks=vae_cfg.num_res_blocks)
        # The raw dict is not kept, so after _cast only one copy of each tensor is referenced.
        sd = _validate_and_rename(_torch_load(path, "VAE", layout), expected, to_wan, from_wan, str(path), layout,
                                  "VAE")
        vae.load_state_dict(_cast(sd, dtype), strict=True, assign=True)
        _assert_materialized(vae, f"VAE from {path}")
    else:
        from diffusers import AutoencoderKLWan

        folder = model_dir / "vae"
        vae = _from_pretrained(AutoencoderKLWan, folder, "VAE", torch_dtype=dtype)
        _check_vae_config(folder / "config.json", vae, vae_cfg)
    return vae.to(device).eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------
# Text encoder
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
        raise CheckpointError(f"tokenizer: folder {folder} not found (layout: {layout}). " + FIX_HINT,
                              source=str(folder), layout=layout)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"tokenizer: cannot load {folder} (layout: {layout}): {exc}. " + FIX_HINT,
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
        sd = _validate_and_rename(_torch_load(path, "text encoder", layout), expected, t5_keys_to_wan,
                                  t5_keys_from_wan, str(path), layout, "text encoder (Wan T5)", "text encoder (UMT5)")
        # As transformers' from_pretrained does: in fp16 the FFN output projections stay fp32 (overflow).
        keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ()) if dtype == torch.float16 else ()
        del sd[T5_TIED_KEY]  # cast the tied embedding once, then put the same tensor under both names
        sd = _cast(sd, dtype, lambda k: any(f".{m}." in f".{k}" for m in keep))
        sd[T5_TIED_KEY] = sd["shared.weight"]
        model.load_state_dict(sd, strict=True, assign=True)
        model.encoder.embed_tokens = model.shared  # keep the tie a tie (one Parameter)
        _assert_materialized(model, f"text encoder from {path}")
        if dtype is not None:
            model.config.dtype = dtype
        tokenizer = _load_tokenizer(model_dir / WAN_TOKENIZER_DIR, layout)
    else:
        folder = model_dir / "text_encoder"
        model = _from_pretrained(UMT5EncoderModel, folder, "text encoder", ignore=(T5_TIED_KEY,),
                                 **_hf_dtype_kwargs(dtype))
        _check_text_config(folder / "config.json", model, text_cfg)
        tokenizer = _load_tokenizer(model_dir / "tokenizer", layout)
    return model.to(device).eval().requires_grad_(False), tokenizer
