"""The engine: loaded models shared by every story, and the ways to build it.

``ShotStreamEngine.load()`` with no weights gives the built-in ``tiny`` configuration with random
weights (the default when no checkpoints are present); its output is noise-like and the engine
says so in ``weights_label``. With weights it loads the published Wan2.1-T2V-1.3B folder (original
or diffusers layout) and, optionally, the ShotStream student checkpoint over its DiT.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from .attention import select_attention
from .config import TINY, WAN_1_3B, ModelConfig
from .fast_path import FastPath, compile_blocks
from .fp8 import Fp8Report, enable_fp8
from .graphs import ChunkGraphs
from .kv_cache import SelfAttentionCache
from .rope import RotaryEmbedding
from .sampler import FlowMatchSchedule
from .snapshot import ModelIdentity, SnapshotError, StorySnapshot, weights_fingerprint
from .story import Story
from .tae import LIGHT_TAEW2_1, TAEW2_1, TINY_TAE, TinyDecoder, TinyDecoderConfig, load_tae_decoder, random_tae_decoder
from .text import TextEncoder, build_byte_tokenizer, build_text_encoder
from .transformer import CausalWanTransformer, TimeCond
from .vae import WanVAE, build_vae, tune_for_cuda

log = logging.getLogger(__name__)

RANDOM_LABEL = "random weights (no checkpoint): output is noise-like, for tests and wiring only"
DECODERS = ("wan", "tae")  # the Wan VAE (exact) and the tiny TAEHV preview decoder
TAE_KINDS = {"taew2_1": TAEW2_1, "lighttaew2_1": LIGHT_TAEW2_1}  # the published tiny decoders, by file stem


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPU, as the reference runs; fp32 on CPU, where bf16 matmuls are slow."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def random_dit(cfg: ModelConfig, seed: int, device: torch.device, dtype: torch.dtype) -> CausalWanTransformer:
    """A DiT with reproducible random weights whose activations stay in a sane range."""
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        dit = CausalWanTransformer(cfg.dit)
        for name, p in dit.named_parameters():
            if name.endswith("modulation"):
                p.data.normal_(0.0, cfg.dit.dim ** -0.5)  # Wan's own init for modulations
            elif "norm" in name and name.endswith("weight"):
                p.data.normal_(1.0, 0.1)
    return dit.to(dtype).eval()


class ShotStreamEngine:
    """Models and sampler shared by all stories. Open stories with :meth:`open_story`."""

    def __init__(self, config: ModelConfig, dit: CausalWanTransformer, vae: WanVAE, text: TextEncoder | None,
                 weights_label: str, *, attention: str = "auto", fp8: bool = False, fast: FastPath | None = None,
                 tae: TinyDecoder | None = None, tae_label: str = ""):
        """``attention``: "auto" or a forced kernel (engine_core.attention.NAMES); ``fp8``: fp8 block linears;
        ``fast``: the speed levers (default: all on CUDA, eager on the CPU; ``FastPath.eager()`` is exact);
        ``tae``: the tiny preview decoder stories may choose (``decoder="tae"``), ``tae_label`` what it is."""
        self.config = config
        self.dit = dit
        self.vae = vae
        self.text = text
        self.weights_label = weights_label
        if tae is not None and tae.config.latent_channels != config.vae.z_dim:
            raise ValueError(f"the tiny decoder {tae.config.name} takes {tae.config.latent_channels} latent channels, "
                             f"but {config.name}'s latents have {config.vae.z_dim}")
        self.tae = tae.to(dit.device) if tae is not None else None
        self.tae_label = tae_label if tae is not None else ""
        self.rope = RotaryEmbedding(config.dit.head_dim, config.stream.rope_shot_phase)
        stream = config.stream
        self.schedule = FlowMatchSchedule(stream.denoising_steps, stream.timestep_shift, stream.num_train_timesteps)
        self.attention = select_attention(dit.device, dit.dtype, config.dit.head_dim, attention)
        dit.attention = self.attention
        log.info("attention: %s", self.attention.describe())
        self.fp8_report: Fp8Report | None = enable_fp8(dit) if fp8 else None
        if self.fp8_report is not None:
            log.info("fp8 block linears: %s", self.fp8_report.summary())
        self.fast = FastPath.for_device(dit.device) if fast is None else fast
        self.fast.check(dit.device)
        tune_for_cuda(vae)  # cudnn.benchmark (fixed shapes per chunk position) and a channels-last decoder
        if self.fast.compile:
            compile_blocks(dit, self.fast.compile_backend)
        self._graph_pool = torch.cuda.graph_pool_handle() if self.fast.cuda_graphs else None
        # Per-step constants live on the device: no tensors built from Python scalars per forward.
        self.step_sigmas = self.schedule.step_sigmas.to(dit.device)
        self._time_conds = {float(t): dit.time_conditioning(float(t)) for t in [*self.schedule.steps.tolist(), 0.0]}
        self._fingerprints: dict[str, str] = {}  # per decoder, computed on the first snapshot
        log.info("fast path: %s", self.fast.describe())

    @property
    def decoders(self) -> tuple[str, ...]:
        """The decoders a story may use: always "wan", and "tae" when a tiny decoder is loaded."""
        return DECODERS if self.tae is not None else DECODERS[:1]

    def stream_decoder(self, decoder: str = "wan"):
        """A fresh per-shot streaming decoder of ``decoder`` (both stream 1, then 4 frames per latent)."""
        if decoder not in self.decoders:
            raise ValueError(f"decoder {decoder!r} is not available here; this engine has {list(self.decoders)}"
                             + ("" if self.tae is not None else " (load a tiny decoder, e.g. `--tae taew2_1.pth`)"))
        return self.tae.stream_decoder() if decoder == "tae" else self.vae.stream_decoder()

    def time_cond(self, timestep: float) -> TimeCond:
        """The precomputed conditioning of one of the sampler's timesteps (or 0, the cache passes)."""
        return self._time_conds[float(timestep)]

    def chunk_graphs(self, cache: SelfAttentionCache) -> ChunkGraphs | None:
        """CUDA graphs for a story's chunk forwards over ``cache``, or None on the eager path."""
        return ChunkGraphs(self.dit, cache, self._graph_pool) if self.fast.cuda_graphs else None

    @property
    def fp8(self) -> bool:
        """Whether the DiT's block linears run in fp8 (``fp8_report`` says how)."""
        return self.fp8_report is not None

    @property
    def device(self) -> torch.device:
        return self.dit.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.dtype

    @property
    def random_weights(self) -> bool:
        return self.weights_label == RANDOM_LABEL

    def open_story(self, global_caption: str, seed: int = 0, decoder: str = "wan") -> Story:
        """A new story; ``decoder`` ("wan" or, when loaded, "tae") decodes its frames."""
        return Story(self, global_caption, seed, decoder)

    def identity(self, decoder: str = "wan") -> ModelIdentity:
        """What a snapshot records of this engine (and must find again to be restored here)."""
        if decoder not in self._fingerprints:  # the text encoder is left out: captions travel as embeddings
            self._fingerprints[decoder] = weights_fingerprint(self.dit, self.vae.vae,
                                                              self.tae if decoder == "tae" else None)
        return ModelIdentity(config=self.config.name, weights=self.weights_label,
                             fingerprint=self._fingerprints[decoder], decoder=decoder, dtype=str(self.dtype))

    def restore_story(self, snapshot: StorySnapshot | bytes) -> Story:
        """A story that continues ``snapshot`` (a :class:`StorySnapshot` or its bytes): given the same cues,
        its next shots equal the original's. Raises :class:`SnapshotError` naming any mismatch."""
        if not isinstance(snapshot, StorySnapshot):
            snapshot = StorySnapshot.from_bytes(snapshot)
        self.check_snapshot(snapshot)
        story = Story(self, snapshot.global_caption, snapshot.seed, snapshot.identity.decoder)
        try:
            story.restore(snapshot)
        except BaseException:
            story.close()
            raise
        return story

    def check_snapshot(self, snapshot: StorySnapshot) -> None:
        """Raises :class:`SnapshotError` unless this engine made ``snapshot``'s kind of story (model, weights,
        decoder, dtype)."""
        decoder = snapshot.identity.decoder
        if decoder not in self.decoders:
            raise SnapshotError(f"the snapshot's story decodes with {decoder!r}, which this engine has not got "
                                f"({list(self.decoders)})")
        wrong = snapshot.identity.mismatches(self.identity(decoder))
        if wrong:
            raise SnapshotError("the snapshot was made by another model: " + "; ".join(wrong))

    @classmethod
    def random(cls, config: ModelConfig = TINY, *, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None, seed: int = 0, with_text_encoder: bool = True,
               attention: str = "auto", fp8: bool = False, fast: FastPath | None = None,
               tae: bool = False) -> ShotStreamEngine:
        """Random weights at any configuration (the tiny default, or the full 1.3B for benchmarks).

        ``with_text_encoder=False`` skips building UMT5 (5.7 B parameters at full size); stories
        then take caller-supplied text embeddings. ``tae=True`` adds a random tiny decoder of the
        published shape (for the tiny config, a tiny one).
        """
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        dit = random_dit(config, seed, device, dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            # nn.Module.to: diffusers' ModelMixin.to warns about fp32-only modules, which Wan's VAE has none of.
            vae = WanVAE(torch.nn.Module.to(build_vae(config.vae), device=device, dtype=dtype))
            text = None
            if with_text_encoder:
                text = TextEncoder(build_text_encoder(config.text).to(device, dtype), build_byte_tokenizer(),
                                   config.text.text_len, config.stream.max_prompt_chars)
        tiny_decoder = None
        if tae:
            tae_config = TINY_TAE if config.vae.z_dim == TINY_TAE.latent_channels else TAEW2_1
            tiny_decoder = random_tae_decoder(tae_config, seed + 2, device, dtype)
        return cls(config, dit, vae, text, RANDOM_LABEL, attention=attention, fp8=fp8, fast=fast, tae=tiny_decoder,
                   tae_label=f"{tiny_decoder.config.name}: {RANDOM_LABEL}" if tiny_decoder is not None else "")

    @classmethod
    def load(cls, weights: str | Path | None = None, student: str | Path | None = None, *,
             device: torch.device | str | None = None, dtype: torch.dtype | None = None,
             use_ema: bool = False, attention: str = "auto", fp8: bool = False,
             fast: FastPath | None = None, tae: str | Path | bool | None = None,
             tae_kind: str | None = None) -> ShotStreamEngine:
        """Load real weights; with neither ``weights`` nor ``student``, the tiny random default.

        ``weights``: a Wan2.1-T2V-1.3B folder, original or diffusers layout (DiT, VAE, UMT5, tokenizer).
        ``student``: ``shotstream_merged.pt``; its DiT replaces the folder's.
        ``tae``: a published tiny decoder file (taew2_1 or lighttaew2_1, ``.pth``/``.safetensors``);
        ``tae_kind`` says which (default: from the file name). With no weights, ``tae=True`` gives a
        random tiny one.
        """
        if weights is None and student is None:
            if tae not in (None, False, True):
                raise ValueError("a tiny decoder file needs the Wan2.1-T2V-1.3B weights too (its latents are "
                                 "Wan's): pass weights=<folder>, or tae=True for the random tiny default")
            log.warning("no weights given: using the built-in tiny configuration with %s", RANDOM_LABEL)
            return cls.random(TINY, device=device, dtype=dtype, attention=attention, fp8=fp8, fast=fast,
                              tae=bool(tae))
        if weights is None:
            raise ValueError("a student checkpoint needs the Wan2.1-T2V-1.3B folder too (its VAE, UMT5 and "
                             "tokenizer): pass weights=<folder>; `python -m engine_core.fetch DEST` downloads both")
        from .checkpoints import load_dit_state, load_text_encoder, load_vae

        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        cfg = WAN_1_3B
        weights, student = Path(weights), Path(student) if student is not None else None
        state = load_dit_state(weights, student, cfg.dit, dtype, use_ema=use_ema)
        with torch.device("meta"):
            dit = CausalWanTransformer(cfg.dit)
        dit.load_state_dict(state, strict=True, assign=True)
        dit = dit.to(device).eval()
        vae = WanVAE(load_vae(weights, cfg.vae, dtype, device))
        model, tokenizer = load_text_encoder(weights, cfg.text, dtype, device)
        text = TextEncoder(model, tokenizer, cfg.text.text_len, cfg.stream.max_prompt_chars)
        label = f"{student.name} over {weights.name}" if student else weights.name
        tiny_decoder, tae_label = None, ""
        if tae is True:
            raise ValueError("with real weights the tiny decoder needs its file: pass tae=<taew2_1.pth> (`shotstream "
                             "fetch-weights DEST --decoder taew2_1` downloads it)")
        if tae:
            tae_config = tae_config_for(Path(tae), tae_kind, cfg)
            tiny_decoder = load_tae_decoder(tae, tae_config, dtype, device)
            tae_label = f"{tae_config.name} ({Path(tae).name})"
        return cls(cfg, dit, vae, text, label, attention=attention, fp8=fp8, fast=fast, tae=tiny_decoder,
                   tae_label=tae_label)


def tae_config_for(path: Path, kind: str | None, cfg: ModelConfig) -> TinyDecoderConfig:
    """The tiny decoder config for a published file: ``kind`` ("taew2_1"/"lighttaew2_1"), else its name.

    lighttaew2_1 decodes raw latents, so it gets the loaded model's own latent statistics."""
    if kind is None:
        stem = path.name.lower()
        kind = "lighttaew2_1" if stem.startswith("lighttae") else "taew2_1"
    if kind not in TAE_KINDS:
        raise ValueError(f"tiny decoder kind {kind!r} is unknown; use one of {sorted(TAE_KINDS)}")
    base = TAE_KINDS[kind]
    if base.latent_space == "raw" and cfg.vae.latents_mean is not None:
        base = dataclasses.replace(base, latents_mean=cfg.vae.latents_mean, latents_std=cfg.vae.latents_std)
    return base
