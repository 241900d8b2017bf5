"""History-frame selection for the global context cache (reference §2.1 table)."""

import pytest

from engine_core.history import context_counts, frames_to_keep, plan_context

# k -> (frames taken, flags), for 81-frame shots, straight from the reference table.
TABLE = {
    1: ([(0, i) for i in (0, 16, 32, 48, 64, 80)], [0] * 6),
    2: ([(0, 0), (0, 40), (0, 80), (1, 0), (1, 40), (1, 80)], [0, 0, 0, 1, 1, 1]),
    3: ([(0, 0), (0, 80), (1, 0), (1, 80), (2, 0), (2, 80)], [0, 0, 1, 1, 2, 2]),
    4: ([(0, 0), (1, 0), (2, 0), (2, 80), (3, 0), (3, 80)], [0, 1, 2, 2, 3, 3]),
    5: ([(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (4, 80)], [0, 1, 2, 3, 4, 4]),
    6: ([(s, 0) for s in range(6)], list(range(6))),
    7: ([(s, 0) for s in range(1, 7)], list(range(1, 7))),
    8: ([(s, 0) for s in range(2, 8)], list(range(2, 8))),
}


@pytest.mark.parametrize("k", sorted(TABLE))
def test_plan_matches_reference_table(k):
    plan = plan_context([81] * k)
    frames, flags = TABLE[k]
    assert list(plan.frames) == frames
    assert list(plan.flags) == flags
    assert plan.shot_flag == k


def test_shot_zero_uses_zero_context_and_flag_one_quirk():
    plan = plan_context([])
    assert plan.frames == () and plan.flags == (0,) * 6
    assert plan.shot_flag == 1  # generated frames of shot 0 carry flag 1, not 0


def test_cut_shot_samples_over_its_own_length():
    plan = plan_context([81, 21])  # shot 1 was cut after 2 chunks (9 + 12 frames)
    assert list(plan.frames) == [(0, 0), (0, 40), (0, 80), (1, 0), (1, 10), (1, 20)]


def test_counts_give_remainder_to_recent_shots():
    assert context_counts(4) == [1, 1, 2, 2]
    assert context_counts(9) == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError):
        context_counts(0)


@pytest.mark.parametrize("length", [9, 21, 45, 81])
def test_kept_frames_cover_every_later_plan(length):
    for shot in range(4):
        keep = frames_to_keep(shot, length)
        for later in range(shot + 1, shot + 10):
            lengths = [length] * later
            needed = {i for s, i in plan_context(lengths).frames if s == shot}
            assert needed <= keep
    assert frames_to_keep(0, 81) == {0, 16, 32, 40, 48, 64, 80}
