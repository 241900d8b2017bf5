"""Issue 12 (engine half): a story snapshot between shots, restored, continues exactly like the original.

Tiny configuration on the CPU, fp32 and bf16; the check is bit equality of frames and latents.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine_core import TINY, ShotStreamEngine
from engine_core.snapshot import SnapshotError, StorySnapshot

CAPTION, SEED = "A lighthouse on a stormy coast.", 7
PROMPTS = ["The keeper climbs.", "A wave breaks.", "A gull cries.", "The lamp turns.", "Rain on glass.",
           "A ship passes.", "Dawn.", "The keeper sleeps.", "Calm sea.", "The lamp goes out.", "Fog rolls in."]


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0, tae=True)


def play(story, prompts, chunks: int = 1) -> list:
    out = []
    for prompt in prompts:
        story.start_shot(prompt, chunks)
        while story.shot_in_progress:
            out.append(story.step())
    return out


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.shot_index, x.chunk_index) == (y.shot_index, y.chunk_index)
        assert torch.equal(x.latents, y.latents) and torch.equal(x.frames, y.frames)


@pytest.mark.parametrize("shots", [1, 3, 9])
def test_restored_story_continues_exactly(engine, shots):
    original = engine.open_story(CAPTION, SEED)
    play(original, PROMPTS[:shots])
    data = original.snapshot().to_bytes()
    after = PROMPTS[shots:shots + 2]
    expected = play(original, after)
    restored = engine.restore_story(data)
    assert restored.shot_lengths == original.shot_lengths[:shots]
    assert_same(play(restored, after), expected)


def test_restored_story_continues_exactly_in_bf16():
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0, dtype=torch.bfloat16)
    original = engine.open_story(CAPTION, SEED)
    play(original, PROMPTS[:2])
    restored = engine.restore_story(original.snapshot().to_bytes())
    assert_same(play(restored, PROMPTS[2:4]), play(original, PROMPTS[2:4]))


def test_snapshot_after_a_cut(engine):
    original = engine.open_story(CAPTION, SEED, decoder="tae")
    play(original, PROMPTS[:2])
    original.start_shot(PROMPTS[2], 3)
    original.step()  # one chunk of three, then the cut
    original.end_shot()
    snap = original.snapshot()
    assert snap.shot_lengths[-1] == TINY.pixel_frames(1) and snap.identity.decoder == "tae"
    restored = engine.restore_story(snap.to_bytes())
    assert restored.decoder == "tae"
    assert_same(play(restored, PROMPTS[3:5], 2), play(original, PROMPTS[3:5], 2))


def test_a_snapshot_mid_shot_is_refused(engine):
    story = engine.open_story(CAPTION, SEED)
    story.start_shot(PROMPTS[0], 2)
    story.step()
    with pytest.raises(RuntimeError, match="between shots"):
        story.snapshot()
    story.step()
    assert story.snapshot().shot_lengths == (TINY.pixel_frames(2),)  # the shot's last chunk: a boundary


def snapshot_bytes(engine) -> bytes:
    story = engine.open_story(CAPTION, SEED)
    play(story, PROMPTS[:2])
    return story.snapshot().to_bytes()


def test_other_weights_config_or_decoder_are_named(engine):
    data = snapshot_bytes(engine)
    with pytest.raises(SnapshotError, match="another model: fingerprint"):
        ShotStreamEngine.random(TINY, device="cpu", seed=1).restore_story(data)
    renamed = dataclasses.replace(TINY, name="tiny-b")
    base = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    other = ShotStreamEngine(renamed, base.dit, base.vae, base.text, base.weights_label)
    with pytest.raises(SnapshotError, match="config: the snapshot has 'tiny', this engine 'tiny-b'"):
        other.restore_story(data)
    story = engine.open_story(CAPTION, SEED, decoder="tae")
    play(story, PROMPTS[:1])
    with pytest.raises(SnapshotError, match="decodes with 'tae', which this engine has not got"):
        base.restore_story(story.snapshot().to_bytes())


def test_damaged_snapshots_are_refused(engine):
    data = snapshot_bytes(engine)
    with pytest.raises(SnapshotError, match="truncated"):
        StorySnapshot.from_bytes(data[:-10])
    tampered = bytearray(data)
    tampered[-5] ^= 0xFF
    with pytest.raises(SnapshotError, match="checksum"):
        StorySnapshot.from_bytes(bytes(tampered))
    with pytest.raises(SnapshotError, match="not a ShotStream story snapshot"):
        StorySnapshot.from_bytes(b"PK\x03\x04" + data[4:])
    newer = bytearray(data)
    newer[8] = 9
    with pytest.raises(SnapshotError, match="version 9 is not supported"):
        StorySnapshot.from_bytes(bytes(newer))


# -- the headless story: save after some shots, continue later ---------------------------------------


def test_render_story_continues_from_a_saved_snapshot(engine):
    from service.render import render_story
    from service.story_file import ShotSpec, StorySpec

    shots = tuple(ShotSpec(p, 1) for p in PROMPTS[:4])
    whole: list = []
    render_story(engine, StorySpec(CAPTION, shots), SEED, whole.append)
    saved: list[bytes] = []
    first: list = []
    render_story(engine, StorySpec(CAPTION, shots[:2]), SEED, first.append,
                 on_end=lambda story: saved.append(story.snapshot().to_bytes()))
    rest: list = []
    report = render_story(engine, StorySpec(CAPTION, shots[2:]), 0, rest.append,
                          snapshot=StorySnapshot.from_bytes(saved[0]))
    assert_same(first + rest, whole)
    assert [s["index"] for s in report["shots"]] == [2, 3] and report["seed"] == SEED


def test_story_cli_saves_and_continues_a_snapshot(tmp_path, capsys):
    import json

    from service.cli import main

    def story_file(name: str, caption: str, prompts: list[str]) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"global_caption": caption, "seed": SEED,
                                    "shots": [{"prompt": p, "chunks": 1} for p in prompts]}))
        return str(path)

    snap = tmp_path / "saves" / "act1.snap"
    common = ["--device", "cpu", "--quiet"]
    assert main(["story", story_file("a.json", CAPTION, PROMPTS[:2]), "--out", str(tmp_path / "a.mp4"),
                 "--report", str(tmp_path / "a.json.r"), "--save-snapshot", str(snap), *common]) == 0
    assert "saved a snapshot after shot 1" in capsys.readouterr().err
    assert StorySnapshot.from_bytes(snap.read_bytes()).shot_lengths == (TINY.pixel_frames(1),) * 2
    assert [p.name for p in snap.parent.iterdir()] == ["act1.snap"]  # no temporary file left behind
    report = tmp_path / "b.json.r"
    assert main(["story", story_file("b.json", CAPTION, PROMPTS[2:3]), "--out", str(tmp_path / "b.mp4"),
                 "--report", str(report), "--from-snapshot", str(snap), *common]) == 0
    assert [s["index"] for s in json.loads(report.read_text())["shots"]] == [2]
    assert main(["story", story_file("c.json", "Another story.", PROMPTS[2:3]), "--out", str(tmp_path / "c.mp4"),
                 "--from-snapshot", str(snap), *common]) == 2
    assert "global caption differs" in capsys.readouterr().err
    snap.write_bytes(snap.read_bytes()[:-3])
    assert main(["story", story_file("b.json", CAPTION, PROMPTS[2:3]), "--out", str(tmp_path / "d.mp4"),
                 "--from-snapshot", str(snap), *common]) == 2
    assert "truncated" in capsys.readouterr().err
