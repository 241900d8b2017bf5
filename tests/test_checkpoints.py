"""Checkpoint layouts: the key tables are right (not only invertible), loaders round-trip, errors are clear.

Semantic checks run on the full-size models built on the meta device (no memory, no download):
the DiT and VAE tables are compared with diffusers' own Wan converters and with an independent
enumeration of the original Wan modules (``wan/modules/vae.py``, ``t5.py``); the T5 table is also
checked by running a reimplementation of Wan's T5 encoder forward on Wan-named weights against
transformers' UMT5 on the renamed weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import load_file, save_file
from transformers import UMT5EncoderModel

from engine_core.checkpoint_writers import save_diffusers_layout, save_student_checkpoint
from engine_core.checkpoints import (CheckpointError, detect_layout, dit_keys_from_student, load_dit_state,
                                     load_text_encoder, load_vae, umt5_config, validate_state_dict)
from engine_core.key_maps import (dit_keys_from_diffusers, dit_keys_to_diffusers, expected_dit_shapes,
                                  t5_keys_from_wan, t5_keys_to_wan, vae_keys_from_wan, vae_keys_to_wan)
from engine_core.config import TINY, WAN_1_3B, TextConfig, VAEConfig
from fixtures_weights import (rewrite_json, tiny_dit_state, write_tiny_diffusers_folder, write_tiny_student,
                              write_tiny_wan_folder)

PROMPTS = ["a knight rides through a misty forest at dawn", "shot2: the princess looks out of the tower window"]


# ------------------------------------------------------------------------------------------------
# Independent descriptions of the original Wan modules (from wan/modules/vae.py and t5.py)
# ------------------------------------------------------------------------------------------------


def wan_vae_spec(cfg: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``WanVAE_`` (Wan2.1_VAE.pth) with its shape, following Wan's constructors."""
    spec: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, kernel: tuple[int, ...]) -> None:
        spec[f"{name}.weight"] = (cout, cin, *kernel)
        spec[f"{name}.bias"] = (cout,)

    def residual(name: str, cin: int, cout: int) -> None:  # Sequential(norm, SiLU, conv, norm, SiLU, Dropout, conv)
        spec[f"{name}.residual.0.gamma"] = (cin, 1, 1, 1)
        conv(f"{name}.residual.2", cin, cout, (3, 3, 3))
        spec[f"{name}.residual.3.gamma"] = (cout, 1, 1, 1)
        conv(f"{name}.residual.6", cout, cout, (3, 3, 3))
        if cin != cout:
            conv(f"{name}.shortcut", cin, cout, (1, 1, 1))

    def attention(name: str, d: int) -> None:
        spec[f"{name}.norm.gamma"] = (d, 1, 1)
        conv(f"{name}.to_qkv", d, 3 * d, (1, 1))
        conv(f"{name}.proj", d, d, (1, 1))

    def resample(name: str, d: int, mode: str) -> None:
        if mode.startswith("up"):
            conv(f"{name}.resample.1", d, d // 2, (3, 3))
            if mode == "upsample3d":
                conv(f"{name}.time_conv", d, 2 * d, (3, 1, 1))
        else:
            conv(f"{name}.resample.1", d, d, (3, 3))
            if mode == "downsample3d":
                conv(f"{name}.time_conv", d, d, (3, 1, 1))

    def middle(prefix: str, d: int) -> None:
        residual(f"{prefix}.middle.0", d, d)
        attention(f"{prefix}.middle.1", d)
        residual(f"{prefix}.middle.2", d, d)

    mult, z, n = list(cfg.dim_mult), cfg.z_dim, cfg.num_res_blocks
    dims = [cfg.base_dim * u for u in [1] + mult]
    conv("encoder.conv1", 3, dims[0], (3, 3, 3))
    idx = 0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(n):
            residual(f"encoder.downsamples.{idx}", cin, cout)
            idx, cin = idx + 1, cout
        if i != len(mult) - 1:
            resample(f"encoder.downsamples.{idx}", cout, "downsample3d" if cfg.temperal_downsample[i] else "downsample2d")
            idx += 1
    middle("encoder", dims[-1])
    spec["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.head.2", dims[-1], 2 * z, (3, 3, 3))
    conv("conv1", 2 * z, 2 * z, (1, 1, 1))
    conv("conv2", z, z, (1, 1, 1))
    dims = [cfg.base_dim * u for u in [mult[-1]] + mult[::-1]]
    up = list(cfg.temperal_downsample)[::-1]
    conv("decoder.conv1", z, dims[0], (3, 3, 3))
    middle("decoder", dims[0])
    idx = 0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        if i in (1, 2, 3):
            cin //= 2
        for _ in range(n + 1):
            residual(f"decoder.upsamples.{idx}", cin, cout)
            idx, cin = idx + 1, cout
        if i != len(mult) - 1:
            resample(f"decoder.upsamples.{idx}", cout, "upsample3d" if up[i] else "upsample2d")
            idx += 1
    spec["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.head.2", dims[-1], 3, (3, 3, 3))
    return spec


def wan_t5_spec(cfg: TextConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of Wan's ``T5Encoder`` (umt5_xxl, encoder_only, shared_pos=False) with its shape."""
    d, inner, f = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff
    spec = {"token_embedding.weight": (cfg.vocab_size, d)}
    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        spec.update({p + "norm1.weight": (d,), p + "attn.q.weight": (inner, d), p + "attn.k.weight": (inner, d),
                     p + "attn.v.weight": (inner, d), p + "attn.o.weight": (d, inner), p + "norm2.weight": (d,),
                     p + "ffn.gate.0.weight": (f, d), p + "ffn.fc1.weight": (f, d), p + "ffn.fc2.weight": (d, f),
                     p + "pos_embedding.embedding.weight": (cfg.relative_attention_num_buckets, cfg.num_heads)})
    spec["norm.weight"] = (d,)
    return spec


def wan_t5_forward(sd: dict[str, torch.Tensor], cfg: TextConfig, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Wan's T5Encoder forward (t5.py: T5LayerNorm, T5Attention without scaling, per-layer bidirectional
    relative buckets, gated tanh-GELU FFN), written against Wan key names."""

    def norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

    def buckets(rel: torch.Tensor) -> torch.Tensor:
        nb = cfg.relative_attention_num_buckets // 2
        out = (rel > 0).long() * nb
        rel = rel.abs()
        exact = nb // 2
        large = exact + (torch.log(rel.float() / exact) / math.log(cfg.relative_attention_max_distance / exact)
                         * (nb - exact)).long()
        return out + torch.where(rel < exact, rel, large.clamp(max=nb - 1))

    b, length = ids.shape
    h, c = cfg.num_heads, cfg.d_kv
    x = F.embedding(ids, sd["token_embedding.weight"])
    rel = buckets(torch.arange(length)[None, :] - torch.arange(length)[:, None])
    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        bias = F.embedding(rel, sd[p + "pos_embedding.embedding.weight"]).permute(2, 0, 1)[None]
        y = norm(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(y, sd[p + f"attn.{n}.weight"]).view(b, length, h, c) for n in "qkv")
        att = torch.einsum("binc,bjnc->bnij", q, k) + bias
        att = att.masked_fill(mask.view(b, 1, 1, length) == 0, torch.finfo(x.dtype).min).softmax(-1)
        x = x + F.linear(torch.einsum("bnij,bjnc->binc", att, v).reshape(b, length, h * c), sd[p + "attn.o.weight"])
        y = norm(x, sd[p + "norm2.weight"])
        gate = F.gelu(F.linear(y, sd[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + F.linear(F.linear(y, sd[p + "ffn.fc1.weight"]) * gate, sd[p + "ffn.fc2.weight"])
    return norm(x, sd["norm.weight"])


def _shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def _meta_wan_transformer_1_3b() -> WanTransformer3DModel:
    with torch.device("meta"):
        return WanTransformer3DModel(num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                                     text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                                     qk_norm="rms_norm_across_heads", eps=1e-6)


def _meta_vae(cfg: VAEConfig) -> AutoencoderKLWan:
    from engine_core.vae import build_vae

    with torch.device("meta"):
        return build_vae(cfg)


# ------------------------------------------------------------------------------------------------
# DiT
# ------------------------------------------------------------------------------------------------


def test_expected_dit_shapes_is_the_1_3b_model() -> None:
    shapes = expected_dit_shapes(WAN_1_3B.dit)
    assert len(shapes) == 825
    assert sum(math.prod(s) for s in shapes.values()) == 1_418_996_800  # reference doc, counted on the meta device
    assert shapes["patch_embedding.weight"] == (1536, 16, 1, 2, 2)
    assert shapes["time_projection.1.weight"] == (9216, 1536)
    assert shapes["head.head.weight"] == (64, 1536)
    assert shapes["blocks.29.modulation"] == (1, 6, 1536)
    assert shapes["head.modulation"] == (1, 2, 1536)


@pytest.mark.parametrize("cfg", [TINY.dit, WAN_1_3B.dit], ids=["tiny", "1.3b"])
def test_expected_dit_shapes_match_causal_transformer(cfg) -> None:
    transformer = pytest.importorskip("engine_core.transformer")
    with torch.device("meta"):
        model = transformer.CausalWanTransformer(cfg)
    assert _shapes(model.state_dict()) == expected_dit_shapes(cfg)


def test_dit_diffusers_names_match_wan_transformer_3d_model() -> None:
    ours = expected_dit_shapes(WAN_1_3B.dit)
    theirs = _shapes(_meta_wan_transformer_1_3b().state_dict())
    mapped = dit_keys_to_diffusers(ours)
    assert len(mapped) == 825
    assert mapped == theirs  # same key set and the same shape under every key
    assert dit_keys_from_diffusers(theirs) == ours  # and back, exactly


def test_dit_diffusers_known_correspondences() -> None:
    known = {  # scripts/convert_wan_to_diffusers.py, TRANSFORMER_KEYS_RENAME_DICT
        "time_embedding.0.weight": "condition_embedder.time_embedder.linear_1.weight",
        "time_embedding.2.bias": "condition_embedder.time_embedder.linear_2.bias",
        "text_embedding.0.weight": "condition_embedder.text_embedder.linear_1.weight",
        "text_embedding.2.weight": "condition_embedder.text_embedder.linear_2.weight",
        "time_projection.1.weight": "condition_embedder.time_proj.weight",
        "head.modulation": "scale_shift_table",
        "head.head.bias": "proj_out.bias",
        "patch_embedding.weight": "patch_embedding.weight",
        "blocks.7.modulation": "blocks.7.scale_shift_table",
        "blocks.7.self_attn.q.weight": "blocks.7.attn1.to_q.weight",
        "blocks.7.self_attn.o.bias": "blocks.7.attn1.to_out.0.bias",
        "blocks.7.self_attn.norm_k.weight": "blocks.7.attn1.norm_k.weight",
        "blocks.7.cross_attn.v.weight": "blocks.7.attn2.to_v.weight",
        "blocks.7.cross_attn.norm_q.weight": "blocks.7.attn2.norm_q.weight",
        "blocks.7.norm3.weight": "blocks.7.norm2.weight",  # Wan's affine cross-attn norm
        "blocks.7.ffn.0.weight": "blocks.7.ffn.net.0.proj.weight",
        "blocks.7.ffn.2.bias": "blocks.7.ffn.net.2.bias",
    }
    ours = expected_dit_shapes(WAN_1_3B.dit)
    mapped = dit_keys_to_diffusers({k: ours[k] for k in known})
    assert mapped == {known[k]: ours[k] for k in known}


def test_dit_table_agrees_with_diffusers_converter() -> None:
    convert = pytest.importorskip("diffusers.loaders.single_file_utils").convert_wan_transformer_to_diffusers
    theirs = _meta_wan_transformer_1_3b().state_dict()
    wan_named = dit_keys_from_diffusers(theirs)
    converted = convert(dict(wan_named))  # diffusers' own Wan -> diffusers renaming
    assert converted.keys() == theirs.keys()
    assert all(converted[k] is theirs[k] for k in theirs)  # every tensor lands where diffusers puts it


def test_dit_mixed_layout_is_rejected() -> None:
    with pytest.raises(CheckpointError, match=r"blocks\.0\.self_attn\.q\.weight"):
        dit_keys_from_diffusers({"proj_out.weight": torch.zeros(1), "blocks.0.self_attn.q.weight": torch.zeros(1)})


# ------------------------------------------------------------------------------------------------
# VAE
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [WAN_1_3B.vae, TINY.vae], ids=["full", "tiny"])
def test_vae_names_match_wan_vae_structure(cfg: VAEConfig) -> None:
    theirs = _shapes(_meta_vae(cfg).state_dict())
    wan_named = vae_keys_to_wan(theirs)
    assert wan_named == wan_vae_spec(cfg)  # every AutoencoderKLWan tensor has its Wan name and shape
    assert vae_keys_from_wan(wan_named) == theirs  # exact inverse (num_res_blocks inferred from the keys)
    if cfg is WAN_1_3B.vae:
        assert len(theirs) == 194


def test_vae_known_correspondences() -> None:
    known = {  # scripts/convert_wan_to_diffusers.py, convert_vae()
        "encoder.conv1.weight": "encoder.conv_in.weight",
        "decoder.conv1.bias": "decoder.conv_in.bias",
        "encoder.downsamples.0.residual.0.gamma": "encoder.down_blocks.0.norm1.gamma",
        "encoder.downsamples.3.residual.6.weight": "encoder.down_blocks.3.conv2.weight",
        "encoder.downsamples.3.shortcut.weight": "encoder.down_blocks.3.conv_shortcut.weight",
        "encoder.downsamples.5.time_conv.weight": "encoder.down_blocks.5.time_conv.weight",
        "encoder.middle.0.residual.3.gamma": "encoder.mid_block.resnets.0.norm2.gamma",
        "encoder.middle.1.to_qkv.weight": "encoder.mid_block.attentions.0.to_qkv.weight",
        "decoder.middle.1.proj.bias": "decoder.mid_block.attentions.0.proj.bias",
        "decoder.middle.2.residual.2.weight": "decoder.mid_block.resnets.1.conv1.weight",
        "decoder.upsamples.2.residual.0.gamma": "decoder.up_blocks.0.resnets.2.norm1.gamma",
        "decoder.upsamples.3.time_conv.weight": "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
        "decoder.upsamples.3.resample.1.weight": "decoder.up_blocks.0.upsamplers.0.resample.1.weight",
        "decoder.upsamples.4.shortcut.weight": "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
        "decoder.upsamples.6.residual.6.bias": "decoder.up_blocks.1.resnets.2.conv2.bias",
        "decoder.upsamples.11.resample.1.bias": "decoder.up_blocks.2.upsamplers.0.resample.1.bias",
        "decoder.upsamples.14.residual.3.gamma": "decoder.up_blocks.3.resnets.2.norm2.gamma",
        "encoder.head.0.gamma": "encoder.norm_out.gamma",
        "decoder.head.2.weight": "decoder.conv_out.weight",
        "conv1.weight": "quant_conv.weight",
        "conv2.bias": "post_quant_conv.bias",
    }
    spec = wan_vae_spec(WAN_1_3B.vae)
    assert vae_keys_from_wan({k: spec[k] for k in known}, num_res_blocks=2) == {known[k]: spec[k] for k in known}
    theirs = _shapes(_meta_vae(WAN_1_3B.vae).state_dict())
    assert all(theirs[v] == spec[k] for k, v in known.items())


def test_vae_table_agrees_with_diffusers_converter() -> None:
    convert = pytest.importorskip("diffusers.loaders.single_file_utils").convert_wan_vae_to_diffusers
    theirs = _meta_vae(WAN_1_3B.vae).state_dict()
    converted = convert(vae_keys_to_wan(theirs))
    assert converted.keys() == theirs.keys()
    assert all(converted[k] is theirs[k] for k in theirs)


# ------------------------------------------------------------------------------------------------
# Text encoder
# ------------------------------------------------------------------------------------------------


def test_t5_names_match_wan_t5_structure_full_size() -> None:
    with torch.device("meta"):
        model = UMT5EncoderModel(umt5_config(WAN_1_3B.text))
    theirs = _shapes(model.state_dict())
    assert len(theirs) == 243  # 24 layers x 10 + shared + tied embed_tokens + final norm
    wan_named = t5_keys_to_wan(theirs)
    assert wan_named == wan_t5_spec(WAN_1_3B.text)  # 242 Wan tensors, per-layer pos embeddings
    assert wan_named["blocks.23.pos_embedding.embedding.weight"] == (32, 64)
    assert t5_keys_from_wan(wan_named) == theirs  # embedding under both tied names
    assert t5_keys_to_wan({k: v for k, v in theirs.items() if k != "encoder.embed_tokens.weight"}) == wan_named


def test_t5_known_correspondences() -> None:
    known = {
        "token_embedding.weight": "shared.weight",
        "norm.weight": "encoder.final_layer_norm.weight",
        "blocks.3.norm1.weight": "encoder.block.3.layer.0.layer_norm.weight",
        "blocks.3.attn.q.weight": "encoder.block.3.layer.0.SelfAttention.q.weight",
        "blocks.3.attn.o.weight": "encoder.block.3.layer.0.SelfAttention.o.weight",
        "blocks.3.pos_embedding.embedding.weight": "encoder.block.3.layer.0.SelfAttention.relative_attention_bias.weight",
        "blocks.3.norm2.weight": "encoder.block.3.layer.1.layer_norm.weight",
        "blocks.3.ffn.gate.0.weight": "encoder.block.3.layer.1.DenseReluDense.wi_0.weight",
        "blocks.3.ffn.fc1.weight": "encoder.block.3.layer.1.DenseReluDense.wi_1.weight",
        "blocks.3.ffn.fc2.weight": "encoder.block.3.layer.1.DenseReluDense.wo.weight",
    }
    mapped = t5_keys_from_wan({k: k for k in known})
    assert mapped.pop("encoder.embed_tokens.weight") == "token_embedding.weight"
    assert mapped == {v: k for k, v in known.items()}


def test_t5_mapping_reproduces_wan_t5_forward() -> None:
    torch.manual_seed(0)
    cfg = TINY.text
    model = UMT5EncoderModel(umt5_config(cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    wan_sd = t5_keys_to_wan(model.state_dict())
    length = cfg.text_len  # 32 > relative_attention_max_distance: the log buckets are exercised
    ids = torch.randint(3, cfg.vocab_size, (2, length))
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, 20:] = 0
    with torch.no_grad():
        ref = wan_t5_forward(wan_sd, cfg, ids, mask)
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # and a wrong table (gate and fc1 swapped) would be caught:
    swapped = dict(wan_sd)
    swapped["blocks.0.ffn.gate.0.weight"], swapped["blocks.0.ffn.fc1.weight"] = (wan_sd["blocks.0.ffn.fc1.weight"],
                                                                                  wan_sd["blocks.0.ffn.gate.0.weight"])
    with torch.no_grad():
        assert not torch.allclose(wan_t5_forward(swapped, cfg, ids, mask), out, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Round trips through files
# ------------------------------------------------------------------------------------------------


def _video(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 5, TINY.stream.height, TINY.stream.width, generator=g) * 2 - 1


def _assert_same_vae(loaded, source) -> None:
    assert _shapes(loaded.state_dict()) == _shapes(source.state_dict())
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with torch.no_grad():
        x = _video()
        z_a, z_b = loaded.encode(x).latent_dist.mean, source.encode(x).latent_dist.mean
        assert torch.equal(z_a, z_b)
        assert torch.equal(loaded.decode(z_a).sample, source.decode(z_b).sample)
    assert list(loaded.config.latents_mean) == pytest.approx(list(TINY.vae.latents_mean))


def _assert_same_text(loaded, tokenizer, source, source_tokenizer) -> None:
    enc = tokenizer(PROMPTS, padding="max_length", max_length=TINY.text.text_len, truncation=True,
                    return_tensors="pt")
    ref = source_tokenizer(PROMPTS, padding="max_length", max_length=TINY.text.text_len, truncation=True,
                           return_tensors="pt")
    assert torch.equal(enc.input_ids, ref.input_ids)
    with torch.no_grad():
        a = loaded(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
        b = source(input_ids=ref.input_ids, attention_mask=ref.attention_mask).last_hidden_state
    assert torch.equal(a, b)
    assert loaded.shared.weight.data_ptr() == loaded.encoder.embed_tokens.weight.data_ptr()


def _assert_same_dit(loaded: dict, source: dict) -> None:
    assert loaded.keys() == source.keys() == expected_dit_shapes(TINY.dit).keys()
    for k, v in source.items():
        assert torch.equal(loaded[k], v), k


@pytest.mark.parametrize("shard", [None, 40_000], ids=["single", "sharded"])
def test_roundtrip_wan_layout(tmp_path: Path, shard: int | None) -> None:
    src = write_tiny_wan_folder(tmp_path / "wan", seed=0, max_shard_bytes=shard)
    files = {p.name for p in (tmp_path / "wan").iterdir()}
    assert {"config.json", "Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google"} <= files
    if shard:
        assert "diffusion_pytorch_model.safetensors.index.json" in files
        assert len([f for f in files if re.fullmatch(r"diffusion_pytorch_model-\d+-of-\d+\.safetensors", f)]) > 1
    assert detect_layout(src.path) == "wan"
    _assert_same_dit(load_dit_state(src.path, None, TINY.dit, torch.float32), src.dit)
    # the DiT file really is in original Wan names, the VAE/T5 files in Wan's own names
    assert set(torch.load(src.path / "Wan2.1_VAE.pth", weights_only=True)) == set(wan_vae_spec(TINY.vae))
    assert set(torch.load(src.path / "models_t5_umt5-xxl-enc-bf16.pth", weights_only=True)) == set(
        wan_t5_spec(TINY.text))
    _assert_same_vae(load_vae(src.path, TINY.vae, torch.float32, "cpu"), src.vae)
    model, tok = load_text_encoder(src.path, TINY.text, torch.float32, "cpu")
    _assert_same_text(model, tok, src.text_encoder, src.tokenizer)


def test_roundtrip_diffusers_layout(tmp_path: Path) -> None:
    src = write_tiny_diffusers_folder(tmp_path / "diff", seed=3)
    assert detect_layout(src.path) == "diffusers"
    _assert_same_dit(load_dit_state(src.path, None, TINY.dit, torch.float32), src.dit)
    _assert_same_vae(load_vae(src.path, TINY.vae, torch.float32, "cpu"), src.vae)
    model, tok = load_text_encoder(src.path, TINY.text, torch.float32, "cpu")
    _assert_same_text(model, tok, src.text_encoder, src.tokenizer)
    # the written transformer/ folder is a genuine diffusers checkpoint: diffusers' module built from its
    # config.json loads its safetensors strictly (from_pretrained itself would need accelerate here)
    config = json.loads((src.path / "transformer" / "config.json").read_text())
    transformer = WanTransformer3DModel.from_config(config)
    transformer.load_state_dict(load_file(str(src.path / "transformer" / "diffusion_pytorch_model.safetensors")),
                                strict=True)
    theirs = transformer.state_dict()
    for k, v in dit_keys_to_diffusers(src.dit).items():
        assert torch.equal(theirs[k], v), k


def test_same_weights_load_identically_from_both_folder_layouts(tmp_path: Path) -> None:
    src = write_tiny_wan_folder(tmp_path / "wan", seed=5)
    save_diffusers_layout(tmp_path / "diff", src.dit, src.vae, src.text_encoder, src.tokenizer, dit_cfg=TINY.dit)
    a, b = (load_dit_state(tmp_path / d, None, TINY.dit, torch.bfloat16) for d in ("wan", "diff"))
    assert all(a[k].dtype == torch.bfloat16 and torch.equal(a[k], b[k]) for k in a)
    va, vb = (load_vae(tmp_path / d, TINY.vae) for d in ("wan", "diff"))
    with torch.no_grad():
        assert torch.equal(va.encode(_video(1)).latent_dist.mean, vb.encode(_video(1)).latent_dist.mean)


def test_roundtrip_student(tmp_path: Path) -> None:
    folder = write_tiny_wan_folder(tmp_path / "wan", seed=0)
    path = tmp_path / "ckpts" / "shotstream_merged.pt"
    saved = write_tiny_student(path, seed=1, with_ema=True)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"generator", "generator_ema", "step"}
    assert all(k.startswith("model.") and v.dtype == torch.float32 for k, v in raw["generator"].items())
    assert len(raw["generator"]) == len(expected_dit_shapes(TINY.dit))
    # the student overrides the folder's DiT
    _assert_same_dit(load_dit_state(folder.path, path, TINY.dit, torch.float32), saved["generator"])
    _assert_same_dit(load_dit_state(None, path, TINY.dit, torch.float32), saved["generator"])
    _assert_same_dit(load_dit_state(None, path.parent, TINY.dit, torch.float32), saved["generator"])  # snapshot dir
    _assert_same_dit(load_dit_state(None, path, TINY.dit, torch.float32, use_ema=True), saved["generator_ema"])
    bf16 = load_dit_state(None, path, TINY.dit, torch.bfloat16)
    assert all(v.dtype == torch.bfloat16 for v in bf16.values())
    assert torch.equal(bf16["head.modulation"], saved["generator"]["head.modulation"].bfloat16())


def test_student_use_ema_falls_back_to_generator(tmp_path: Path) -> None:
    saved = write_tiny_student(tmp_path / "s.pt", seed=2)
    _assert_same_dit(load_dit_state(None, tmp_path / "s.pt", TINY.dit, None, use_ema=True), saved["generator"])


def test_dit_keys_from_student_strips_prefix() -> None:
    sd = {"model.blocks.0.modulation": torch.zeros(1), "model.head.head.weight": torch.ones(1)}
    assert set(dit_keys_from_student({"generator": sd})) == {"blocks.0.modulation", "head.head.weight"}


# ------------------------------------------------------------------------------------------------
# Clear errors
# ------------------------------------------------------------------------------------------------


def _edit_dit_file(folder: Path, edit) -> Path:
    path = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(path))
    edit(sd)
    save_file(sd, str(path))
    return path


@pytest.fixture
def wan_folder(tmp_path: Path):
    return write_tiny_wan_folder(tmp_path / "wan", seed=0)


def test_error_missing_dit_key(wan_folder) -> None:
    path = _edit_dit_file(wan_folder.path, lambda sd: sd.pop("blocks.1.cross_attn.norm_k.weight"))
    with pytest.raises(CheckpointError) as err:
        load_dit_state(wan_folder.path, None, TINY.dit, torch.float32)
    msg = str(err.value)
    assert "blocks.1.cross_attn.norm_k.weight" in msg and "1 missing keys" in msg
    assert str(path) in msg and "layout: wan" in msg and "fetch" in msg
    assert err.value.missing == ["blocks.1.cross_attn.norm_k.weight"]


def test_error_unexpected_dit_key(wan_folder) -> None:
    def add(sd):
        sd["blocks.0.img_emb.weight"] = torch.zeros(3)
        sd["img_emb.proj.0.weight"] = torch.zeros(3)

    _edit_dit_file(wan_folder.path, add)
    with pytest.raises(CheckpointError, match=r"2 unexpected keys: .*img_emb") as err:
        load_dit_state(wan_folder.path, None, TINY.dit, torch.float32)
    assert sorted(err.value.unexpected) == ["blocks.0.img_emb.weight", "img_emb.proj.0.weight"]


def test_error_wrong_dit_shape(wan_folder) -> None:
    def shrink(sd):
        sd["blocks.1.ffn.0.weight"] = sd["blocks.1.ffn.0.weight"][:50].contiguous()

    _edit_dit_file(wan_folder.path, shrink)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.ffn\.0\.weight: file has \[50, 48\], model expects \[96, 48\]"):
        load_dit_state(wan_folder.path, None, TINY.dit, torch.float32)


def test_error_dit_config_disagrees(wan_folder) -> None:
    rewrite_json(wan_folder.path / "config.json", num_heads=4)
    with pytest.raises(CheckpointError, match=r"num_heads: file 4, config 2") as err:
        load_dit_state(wan_folder.path, None, TINY.dit, torch.float32)
    assert "config.json" in str(err.value)
    wrong_cfg = dataclasses.replace(TINY.dit, ffn_dim=64)
    (wan_folder.path / "config.json").unlink()  # without a config.json the shapes still catch it
    with pytest.raises(CheckpointError, match=r"shape mismatches: blocks\.0\.ffn\.0\.weight"):
        load_dit_state(wan_folder.path, None, wrong_cfg, torch.float32)


def test_error_missing_vae_and_t5_keys_named_as_in_file(wan_folder) -> None:
    vae_path = wan_folder.path / "Wan2.1_VAE.pth"
    sd = torch.load(vae_path, weights_only=True)
    del sd["decoder.upsamples.2.time_conv.weight"]
    torch.save(sd, vae_path)
    with pytest.raises(CheckpointError, match=r"decoder\.upsamples\.2\.time_conv\.weight") as err:
        load_vae(wan_folder.path, TINY.vae)
    assert "Wan2.1_VAE.pth" in str(err.value) and "layout: wan" in str(err.value)
    t5_path = wan_folder.path / "models_t5_umt5-xxl-enc-bf16.pth"
    sd = torch.load(t5_path, weights_only=True)
    del sd["blocks.1.pos_embedding.embedding.weight"]
    torch.save(sd, t5_path)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.pos_embedding\.embedding\.weight"):
        load_text_encoder(wan_folder.path, TINY.text)


def test_error_missing_shard(tmp_path: Path) -> None:
    src = write_tiny_wan_folder(tmp_path / "wan", max_shard_bytes=40_000)
    shard = sorted(src.path.glob("diffusion_pytorch_model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=re.escape(shard.name)):
        load_dit_state(src.path, None, TINY.dit, torch.float32)


def test_error_missing_file_in_wan_folder(wan_folder) -> None:
    (wan_folder.path / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth not found"):
        load_vae(wan_folder.path, TINY.vae)
    shutil.rmtree(wan_folder.path / "google")
    with pytest.raises(CheckpointError, match=r"google/umt5-xxl not found"):
        load_text_encoder(wan_folder.path, TINY.text)


def test_error_diffusers_text_config_disagrees(tmp_path: Path) -> None:
    src = write_tiny_diffusers_folder(tmp_path / "diff")
    with pytest.raises(CheckpointError, match=r"num_layers: file 2, config 3"):
        load_text_encoder(src.path, dataclasses.replace(TINY.text, num_layers=3))
    with pytest.raises(CheckpointError, match=r"num_res_blocks: file 1, config 2"):
        load_vae(src.path, dataclasses.replace(TINY.vae, num_res_blocks=2))


def test_error_student_without_generator(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": {"model.blocks.0.modulation": torch.zeros(1)}, "step": 3}, path)
    with pytest.raises(CheckpointError) as err:
        load_dit_state(None, path, TINY.dit, torch.float32)
    msg = str(err.value)
    assert "no 'generator' entry" in msg and "state_dict" in msg and str(path) in msg and "layout: student" in msg
    torch.save({"model.blocks.0.modulation": torch.zeros(1)}, path)  # a bare, unwrapped state dict
    with pytest.raises(CheckpointError, match="looks like a bare DiT state dict"):
        load_dit_state(None, path, TINY.dit, torch.float32)


def test_error_student_keys_without_model_prefix(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"generator": {f"module.{k}": v for k, v in tiny_dit_state().items()}}, path)
    with pytest.raises(CheckpointError, match=r"do not start with 'model\.'.*module\.patch_embedding\.weight"):
        load_dit_state(None, path, TINY.dit, torch.float32)


def test_error_student_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / "s.pt"
    save_student_checkpoint(path, tiny_dit_state(dataclasses.replace(TINY.dit, num_layers=3)))
    with pytest.raises(CheckpointError, match=r"27 unexpected keys: blocks\.2\.") as err:
        load_dit_state(None, path, TINY.dit, torch.float32)
    assert "layout: student" in str(err.value)


def test_error_student_with_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "s.pt"
    torch.save({"generator": {}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_dit_state(None, path, TINY.dit, torch.float32)


def test_error_unrecognizable_folder(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.ckpt").write_bytes(b"x")
    with pytest.raises(CheckpointError) as err:
        detect_layout(tmp_path / "weights")
    msg = str(err.value)
    assert str(tmp_path / "weights") in msg and "model.ckpt" in msg
    assert "Wan2.1_VAE.pth" in msg and "transformer/" in msg and "model_index.json" in msg
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vae(tmp_path / "nowhere", TINY.vae)
    with pytest.raises(CheckpointError, match="no DiT weights given"):
        load_dit_state(None, None, TINY.dit, torch.float32)


def test_validate_state_dict_lists_first_ten_and_counts() -> None:
    expected = {f"k{i}": (2,) for i in range(15)}
    with pytest.raises(CheckpointError) as err:
        validate_state_dict({"k0": torch.zeros(3), "x": torch.zeros(1)}, expected, "thing", "some/file")
    msg = str(err.value)
    assert "14 missing keys" in msg and "(+4 more)" in msg and "1 unexpected keys: x" in msg
    assert "k0: file has [3], model expects [2]" in msg and msg.startswith("thing in some/file")
    assert isinstance(err.value, ValueError)


def test_writers_match_published_file_names(tmp_path: Path) -> None:
    src = write_tiny_diffusers_folder(tmp_path / "diff")
    names = {p.relative_to(src.path).as_posix() for p in src.path.rglob("*") if p.is_file()}
    assert {"model_index.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
            "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json"} <= names
    index = json.loads((src.path / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]


# ------------------------------------------------------------------------------------------------
# fetch (offline: snapshot_download is replaced by a stub that writes the files it was asked for)
# ------------------------------------------------------------------------------------------------


def test_fetch_weights_asks_only_for_needed_files(tmp_path: Path, monkeypatch, capsys) -> None:
    hub = pytest.importorskip("huggingface_hub")
    from engine_core import fetch

    calls = []

    def fake_snapshot_download(repo_id, local_dir, allow_patterns):
        calls.append((repo_id, list(allow_patterns)))
        root = Path(local_dir)
        names = (["shotstream_merged.pt"] if repo_id == fetch.STUDENT_REPO else
                 ["config.json", "diffusion_pytorch_model.safetensors", "Wan2.1_VAE.pth",
                  "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json"])
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
        return str(root)

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    paths = fetch.fetch_weights(tmp_path)
    assert paths == {"weights": tmp_path / "Wan2.1-T2V-1.3B", "student": tmp_path / "ShotStream" / "shotstream_merged.pt"}
    assert calls[0][0] == "Wan-AI/Wan2.1-T2V-1.3B" and "Wan2.1_VAE.pth" in calls[0][1]
    assert calls[1] == ("KlingTeam/ShotStream", ["shotstream_merged.pt"])
    assert fetch.main([str(tmp_path), "--no-student"]) == 0
    assert "weights: " in capsys.readouterr().out

    def offline(**kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(fetch.FetchError, match="Wan-AI/Wan2.1-T2V-1.3B.*network unreachable"):
        fetch.fetch_weights(tmp_path / "x")
    assert fetch.main([str(tmp_path / "y")]) == 1
