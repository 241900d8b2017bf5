"""Tiny random checkpoints in the three published layouts, for tests (no network, well under a second).

    weights = write_tiny_wan_folder(tmp_path / "wan", seed=0)        # original Wan2.1 folder
    weights = write_tiny_diffusers_folder(tmp_path / "diff", seed=0) # diffusers folder
    student = write_tiny_student(tmp_path / "shotstream_merged.pt", seed=1)

Each writer returns the source modules/state so a test can compare what the loaders give back.
Every parameter is random (norm scales included, unlike a fresh init), so a wrong key mapping
changes the outputs.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine_core.checkpoint_writers import save_diffusers_layout, save_student_checkpoint, save_wan_layout
from engine_core.checkpoints import umt5_config
from engine_core.key_maps import expected_dit_shapes
from engine_core.config import TINY, DiTConfig, ModelConfig, TextConfig, VAEConfig

CORPUS = [
    "a knight rides through a misty forest at dawn",
    "shot1: close-up of the knight's face, rain falling",
    "the castle gate opens slowly; torches flicker in the wind",
    "a dragon circles above the mountains, wide shot",
    "shot2: the princess looks out of the tower window",
    "camera pans across a crowded market full of colourful stalls",
    "night falls over the city, neon lights reflect on wet streets",
    "Ein Ritter reitet durch den Wald. Un chevalier traverse la forêt.",
]


@dataclass
class TinyWeights:
    """What a tiny folder was written from (``dit`` in original Wan names, float32)."""

    path: Path | None
    cfg: ModelConfig
    dit: dict[str, Tensor]
    vae: Any  # diffusers AutoencoderKLWan
    text_encoder: Any  # transformers UMT5EncoderModel
    tokenizer: Any


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_like(name: str, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    if name.endswith("gamma") or (len(shape) == 1 and "norm" in name):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)  # norm scales near 1
    if len(shape) == 1:
        return 0.1 * torch.randn(shape, generator=gen)  # biases
    fan_in = math.prod(shape[1:]) if "modulation" not in name else 1
    return torch.randn(shape, generator=gen) * (0.5 / math.sqrt(max(fan_in, 1)))


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = _generator(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(_random_like(name, tuple(p.shape), gen))
    return module.eval().requires_grad_(False)


def tiny_dit_state(cfg: DiTConfig = TINY.dit, seed: int = 0) -> dict[str, Tensor]:
    """A random DiT state dict in original Wan names (float32)."""
    gen = _generator(seed)
    return {k: _random_like(k, shape, gen) for k, shape in expected_dit_shapes(cfg).items()}


def tiny_vae(cfg: VAEConfig = TINY.vae, seed: int = 0):
    from engine_core.vae import build_vae

    return _randomize(build_vae(cfg), seed + 1000)


def seeded_wan_vae(cfg: VAEConfig = TINY.vae, seed: int = 0, device: str = "cpu",
                   dtype: torch.dtype = torch.float32):
    """A :class:`~engine_core.vae.WanVAE` with the default init under ``seed`` (the decode tests' VAE)."""
    from engine_core.vae import WanVAE, build_vae

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return WanVAE(torch.nn.Module.to(build_vae(cfg), device=device, dtype=dtype))


def tiny_text_encoder(cfg: TextConfig = TINY.text, seed: int = 0):
    from transformers import UMT5EncoderModel

    return _randomize(UMT5EncoderModel(umt5_config(cfg)), seed + 2000)


def _write_tokenizer_fallback(path: Path, corpus: list[str]) -> Path:
    """Used only if tests/fixtures_text.py is unavailable: a Unigram T5 tokenizer trained offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.train_from_iterator(corpus, trainer=trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tok = T5TokenizerFast(tokenizer_object=unigram, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                          extra_ids=0)
    tok.save_pretrained(path)
    return path


def tiny_tokenizer(corpus: list[str] | None = None):
    """A tiny T5 tokenizer (vocabulary <= 120 pieces, fits TINY.text.vocab_size)."""
    from transformers import AutoTokenizer

    corpus = list(corpus or CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from fixtures_text import write_test_tokenizer  # tests/ is on sys.path under pytest
        except ImportError:
            try:
                from tests.fixtures_text import write_test_tokenizer
            except ImportError:
                write_test_tokenizer = _write_tokenizer_fallback
        folder = write_test_tokenizer(Path(tmp) / "tok", corpus)
        return AutoTokenizer.from_pretrained(folder)


def make_tiny_weights(seed: int = 0, cfg: ModelConfig = TINY) -> TinyWeights:
    """Random tiny DiT state, VAE, text encoder and tokenizer (nothing written)."""
    return TinyWeights(path=None, cfg=cfg, dit=tiny_dit_state(cfg.dit, seed), vae=tiny_vae(cfg.vae, seed),
                       text_encoder=tiny_text_encoder(cfg.text, seed), tokenizer=tiny_tokenizer())


def write_tiny_wan_folder(path: Path, seed: int = 0, cfg: ModelConfig = TINY,
                          max_shard_bytes: int | None = None) -> TinyWeights:
    """The original Wan2.1 layout (``config.json``, DiT safetensors, ``Wan2.1_VAE.pth``, T5 ``.pth``,
    ``google/umt5-xxl/``). ``max_shard_bytes`` writes the DiT sharded, with an index."""
    w = make_tiny_weights(seed, cfg)
    w.path = save_wan_layout(Path(path), w.dit, w.vae, w.text_encoder, w.tokenizer, dit_cfg=cfg.dit,
                             max_shard_bytes=max_shard_bytes)
    return w


def write_tiny_diffusers_folder(path: Path, seed: int = 0, cfg: ModelConfig = TINY) -> TinyWeights:
    """The diffusers layout (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``)."""
    w = make_tiny_weights(seed, cfg)
    w.path = save_diffusers_layout(Path(path), w.dit, w.vae, w.text_encoder, w.tokenizer, dit_cfg=cfg.dit)
    return w


def write_tiny_student(path: Path, seed: int = 1, cfg: DiTConfig = TINY.dit, with_ema: bool = False,
                       extra: dict[str, Any] | None = None) -> dict[str, dict[str, Tensor]]:
    """A ShotStream-style ``shotstream_merged.pt``; returns ``{'generator': sd, ['generator_ema': sd]}``
    with the state dicts in original Wan names."""
    out = {"generator": tiny_dit_state(cfg, seed)}
    if with_ema:
        out["generator_ema"] = tiny_dit_state(cfg, seed + 500)
    save_student_checkpoint(Path(path), out["generator"], ema_sd=out.get("generator_ema"),
                            extra=extra if extra is not None else {"step": 1234})
    return out


def rewrite_json(path: Path, **changes: Any) -> None:
    """Edit a JSON config in place (for tests of config mismatches)."""
    data = json.loads(Path(path).read_text())
    data.update(changes)
    Path(path).write_text(json.dumps(data, indent=2))
