"""RoPE with the per-shot phase: angle layout, positions, flags (reference §3)."""

import math

import pytest
import torch

from engine_core.rope import RotaryEmbedding, apply_rotary, axis_dims


def test_axis_split_matches_wan_for_head_dim_128():
    assert axis_dims(128) == (44, 42, 42)  # 22 / 21 / 21 rotation pairs


def test_temporal_angles_carry_position_and_shot_phase():
    rope = RotaryEmbedding(128, shot_phase=1 / 6)
    ang = rope.angles(start=6, flags=[2, 2, 2], height=2, width=3)
    assert ang.shape == (3 * 2 * 3, 64) and ang.dtype == torch.float64
    omega = [10000 ** (-2 * j / 44) for j in range(22)]
    for f, pos in enumerate((6, 7, 8)):
        tok = f * 6  # first token of frame f
        expected = torch.tensor([pos * w + 2 / 6 for w in omega], dtype=torch.float64)
        torch.testing.assert_close(ang[tok, :22], expected, rtol=0, atol=1e-12)
    # height / width angles do not depend on the flag or the frame
    no_flag = rope.angles(start=6, flags=[0, 0, 0], height=2, width=3)
    torch.testing.assert_close(ang[:, 22:], no_flag[:, 22:], rtol=0, atol=0)
    torch.testing.assert_close(ang[:, :22] - no_flag[:, :22], torch.full((18, 22), 2 / 6, dtype=torch.float64))
    # row 1, column 2 of frame 0 -> h angle uses row 1, w angle uses column 2
    tok = 1 * 3 + 2
    torch.testing.assert_close(ang[tok, 22:43], torch.tensor([1 * 10000 ** (-2 * j / 42) for j in range(21)],
                                                              dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(ang[tok, 43:], torch.tensor([2 * 10000 ** (-2 * j / 42) for j in range(21)],
                                                            dtype=torch.float64), rtol=0, atol=1e-12)


def test_flags_per_frame_differ_within_a_run():
    rope = RotaryEmbedding(24, shot_phase=1 / 6)
    ang = rope.angles(start=0, flags=[0, 0, 1, 1, 2, 2], height=1, width=1)
    t_pairs = axis_dims(24)[0] // 2
    assert torch.allclose(ang[3, :t_pairs] - ang[2, :t_pairs], torch.tensor([10000 ** (-2 * j / 8) for j in range(t_pairs)],
                                                                            dtype=torch.float64))
    assert math.isclose(float(ang[4, 0] - ang[3, 0]), 1 + 1 / 6, rel_tol=1e-12)


def test_apply_rotary_equals_complex_multiplication_in_float64():
    rope = RotaryEmbedding(24, shot_phase=1 / 6)
    cos, sin = rope.cos_sin(6, [1, 1, 1], 2, 3, torch.device("cpu"))
    x = torch.randn(1, 18, 2, 24)
    ref = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (-1, 2)))
                             * torch.polar(torch.ones(18, 1, 12, dtype=torch.float64),
                                           rope.angles(6, [1, 1, 1], 2, 3).unsqueeze(1))).flatten(-2)
    torch.testing.assert_close(apply_rotary(x, cos, sin), ref.float(), rtol=1e-6, atol=1e-6)


def test_positions_beyond_table_are_rejected():
    with pytest.raises(ValueError, match="exceed"):
        RotaryEmbedding(24, 1 / 6, max_positions=16).angles(15, [0, 0], 1, 1)
