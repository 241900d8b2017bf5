"""Model and stream configurations: the real Wan2.1-T2V-1.3B student and a tiny twin for tests.

Both configurations drive exactly the same code; only sizes differ. Numbers for the real model
come from the ShotStream reference (see ``shotstream-inference.md``: model table, ``shotstream.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DiTConfig:
    """The Wan2.1 diffusion transformer (key names follow the original Wan checkpoint)."""

    dim: int = 1536
    num_heads: int = 12
    num_layers: int = 30
    ffn_dim: int = 8960
    freq_dim: int = 256
    in_dim: int = 16
    out_dim: int = 16
    text_len: int = 512
    text_dim: int = 4096
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim {self.head_dim} must be even and >= 6 for 3-axis RoPE")


@dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 causal 3D VAE, as diffusers' ``AutoencoderKLWan`` takes it."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # diffusers' spelling
    # None = diffusers' defaults, which are the published Wan2.1 statistics.
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    temporal_stride: int = 4
    spatial_stride: int = 8


@dataclass(frozen=True)
class TextConfig:
    """UMT5 encoder (transformers ``UMT5EncoderModel``)."""

    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    text_len: int = 512


@dataclass(frozen=True)
class StreamConfig:
    """Geometry and sampler of causal multi-shot generation (``shotstream.yaml``)."""

    height: int = 480
    width: int = 832
    frames_per_chunk: int = 3  # latent frames per causal block (num_frame_per_block)
    chunks_per_shot: int = 7  # 21 latent frames = 81 video frames
    context_frames: int = 6  # global context cache size in latent frames (max_context_frames)
    denoising_steps: tuple[int, ...] = (1000, 740, 500, 260)  # warped at run time
    timestep_shift: float = 8.0
    num_train_timesteps: int = 1000
    rope_shot_phase: float = 1.0 / 6.0  # RoPE discontinuity indicator: radians per shot index
    fps: int = 16
    max_prompt_chars: int = 10_000


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dit: DiTConfig
    vae: VAEConfig
    text: TextConfig
    stream: StreamConfig = field(default_factory=StreamConfig)
    random_weights_only: bool = False  # True for configs that exist only to exercise code paths

    @property
    def latent_height(self) -> int:
        return self.stream.height // self.vae.spatial_stride

    @property
    def latent_width(self) -> int:
        return self.stream.width // self.vae.spatial_stride

    @property
    def tokens_per_frame(self) -> int:
        _, ph, pw = self.dit.patch_size
        return (self.latent_height // ph) * (self.latent_width // pw)

    @property
    def max_latent_frames(self) -> int:
        return self.stream.frames_per_chunk * self.stream.chunks_per_shot

    def pixel_frames(self, num_chunks: int) -> int:
        """Video frames produced by ``num_chunks`` chunks: 1 + 4 per latent frame after the first."""
        latents = num_chunks * self.stream.frames_per_chunk
        return 1 + self.vae.temporal_stride * (latents - 1)

    def __post_init__(self) -> None:
        s, v, d = self.stream, self.vae, self.dit
        if s.height % (v.spatial_stride * d.patch_size[1]) or s.width % (v.spatial_stride * d.patch_size[2]):
            raise ValueError(f"{s.height}x{s.width} is not divisible by the VAE stride times the patch size")
        if v.z_dim != d.in_dim or v.z_dim != d.out_dim:
            raise ValueError(f"VAE z_dim {v.z_dim} must equal DiT in/out dims {d.in_dim}/{d.out_dim}")
        if self.text.d_model != d.text_dim:
            raise ValueError(f"text encoder width {self.text.d_model} must equal DiT text_dim {d.text_dim}")
        if self.text.text_len != d.text_len:
            raise ValueError("text encoder and DiT disagree on text_len")


WAN_1_3B = ModelConfig(name="wan2.1-t2v-1.3b", dit=DiTConfig(), vae=VAEConfig(), text=TextConfig())

# Same code paths, random weights, CPU-fast. 32x48 pixels -> 4x6 latents -> 2x3 = 6 tokens per frame;
# non-square on purpose so a height/width mix-up cannot pass the tests.
TINY = ModelConfig(
    name="tiny",
    dit=DiTConfig(dim=48, num_heads=2, num_layers=2, ffn_dim=96, freq_dim=32, in_dim=4, out_dim=4,
                  text_len=32, text_dim=32),
    vae=VAEConfig(base_dim=8, z_dim=4, dim_mult=(1, 1, 1, 1), num_res_blocks=1,
                  latents_mean=(0.1, -0.2, 0.3, 0.0), latents_std=(1.5, 0.8, 1.2, 1.0)),
    text=TextConfig(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16, text_len=32),
    stream=StreamConfig(height=32, width=48),
    random_weights_only=True,
)

CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (WAN_1_3B, TINY)}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None
