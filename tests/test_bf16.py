"""The GPU dtype path (bf16 weights, caches and VAE) runs end to end and tracks fp32.

CI has no GPU; this runs the same bf16 arithmetic on the CPU so dtype mix-ups (an fp32 tensor
meeting a bf16 weight, a cast lost on the way) fail here rather than on the first GPU run.
"""

import torch

from engine_core import TINY, ShotStreamEngine


def _story_latents(dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    engine = ShotStreamEngine.random(TINY, device="cpu", dtype=dtype, seed=0)
    story = engine.open_story("A lighthouse in a storm.", seed=4)
    latents, frames = [], []
    for prompt in ("Waves crash on the rocks.", "A ship's light appears."):
        story.start_shot(prompt, num_chunks=2)
        while story.shot_in_progress:
            chunk = story.step()
            assert chunk.latents.dtype == dtype and chunk.frames.dtype == torch.uint8
            latents.append(chunk.latents.float())
            frames.append(chunk.frames)
    story.close()
    return latents, frames


def test_bf16_story_runs_and_stays_close_to_fp32():
    lo, lo_frames = _story_latents(torch.bfloat16)
    hi, _ = _story_latents(torch.float32)
    for a, b in zip(lo, hi):
        assert torch.isfinite(a).all()
        # bf16 keeps ~3 significant digits; four sampling steps and a history round trip stay close
        assert (a - b).abs().mean() < 0.02 * b.abs().mean()  # measured: 0.4%
    assert all(f.shape[1:] == (TINY.stream.height, TINY.stream.width, 3) for f in lo_frames)
