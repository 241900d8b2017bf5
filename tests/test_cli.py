"""Story files, the ``shotstream story`` command end to end (tiny random model, CPU) and the MP4 writer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.story_file import ShotSpec, StoryFileError, load_story, parse_story
from service.video_io import Mp4Writer

STORIES = sorted((Path(__file__).resolve().parents[1] / "examples" / "stories").glob("*.json"))


# -- story files --------------------------------------------------------------------------------


def test_reference_stories_are_present():
    assert len(STORIES) >= 6


@pytest.mark.parametrize("path", STORIES, ids=lambda p: p.name)
def test_reference_story_files_load(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    n = sum(1 for k in data if re.fullmatch(r"shot\d+", k))
    assert n >= 1
    spec = load_story(path)
    assert spec.global_caption == data["global_caption"]
    assert len(spec.shots) == n
    assert [s.prompt for s in spec.shots] == [data[f"shot{i}"] for i in range(1, n + 1)]
    assert all(s.chunks is None for s in spec.shots)  # full-length shots
    assert spec.seed is None


def test_reference_shots_are_ordered_numerically(tmp_path):
    data = {"global_caption": "g", **{f"shot{i}": f"prompt {i}" for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9, 11)}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert [s.prompt for s in load_story(path).shots] == [f"prompt {i}" for i in range(1, 12)]


def test_our_format(tmp_path):
    path = tmp_path / "ours.json"
    path.write_text(json.dumps({"global_caption": "A city.", "seed": 7,
                                "shots": ["plain shot", {"prompt": "short one", "chunks": 2},
                                          {"prompt": "full one"}]}))
    spec = load_story(path)
    assert spec.global_caption == "A city."
    assert spec.seed == 7
    assert spec.shots == (ShotSpec("plain shot"), ShotSpec("short one", 2), ShotSpec("full one"))


def test_our_format_in_yaml(tmp_path):
    path = tmp_path / "ours.yaml"
    path.write_text("global_caption: A city.\nseed: 7\nshots:\n  - plain shot\n"
                    "  - {prompt: short one, chunks: 2}\n  - prompt: full one\n")
    spec = load_story(path)
    assert (spec.global_caption, spec.seed) == ("A city.", 7)
    assert spec.shots == (ShotSpec("plain shot"), ShotSpec("short one", 2), ShotSpec("full one"))
    bad = tmp_path / "bad.yml"
    bad.write_text("shots: [unclosed\n")
    with pytest.raises(StoryFileError, match=r"bad\.yml.*YAML"):
        load_story(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(StoryFileError, match="object"):
        load_story(listed)


@pytest.mark.parametrize("content, needle", [
    ("{not json", "JSON"),
    ('["a", "b"]', "object"),
    ('"just a string"', "object"),
    ('{"global_caption": "g", "shot1": "a", "shot3": "c"}', "gaps"),
    ('{"global_caption": "g", "shot2": "b"}', "gaps"),
    ('{"global_caption": "g", "shot1": 5}', "shot1"),
    ('{"global_caption": "g", "shots": [{"prompt": "a", "chunks": "3"}]}', "chunks"),
    ('{"global_caption": "g", "shots": [{"prompt": "a", "chunks": 2.5}]}', "chunks"),
    ('{"global_caption": "g", "shots": [{"prompt": "a", "chunks": true}]}', "chunks"),
    ('{"global_caption": "g", "shots": [{"chunks": 2}]}', "prompt"),
    ('{"global_caption": "g", "shots": [3]}', "prompt"),
    ('{"global_caption": "g", "shots": "a"}', "list"),
    ('{"global_caption": "g", "shots": []}', "no shots"),
    ('{"global_caption": "g"}', "no shots"),
    ('{"shot1": "a"}', "global_caption"),
    ('{"global_caption": 3, "shot1": "a"}', "global_caption"),
    ('{"global_caption": "g", "seed": "7", "shot1": "a"}', "seed"),
    ('{"global_caption": "g", "seed": true, "shot1": "a"}', "seed"),
])
def test_bad_story_files(tmp_path, content, needle):
    path = tmp_path / "bad story.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(StoryFileError) as exc:
        load_story(path)
    assert str(path) in str(exc.value)
    assert needle in str(exc.value)


def test_missing_and_undecodable_files(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(StoryFileError, match="no such story file") as exc:
        load_story(missing)
    assert str(missing) in str(exc.value)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StoryFileError) as exc:
        load_story(binary)
    assert str(binary) in str(exc.value)


def test_story_file_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_story([])


# -- the CLI end to end -------------------------------------------------------------------------


def _write_story(tmp_path: Path) -> Path:
    path = tmp_path / "story.json"
    path.write_text(json.dumps({"global_caption": "A small test story.", "seed": 11,
                                "shots": [{"prompt": "first shot", "chunks": 1},
                                          {"prompt": "second shot", "chunks": 2}]}))
    return path


def _read_mp4(path: Path) -> tuple[dict, list[np.ndarray]]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    return meta, frames


def test_cli_renders_a_story(tmp_path, capsys):
    story = _write_story(tmp_path)
    out, report_path = tmp_path / "out" / "story.mp4", tmp_path / "report.json"
    rc = main(["story", str(story), "--out", str(out), "--report", str(report_path), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err

    assert out.is_file() and out.stat().st_size > 1000
    meta, frames = _read_mp4(out)
    assert tuple(meta["size"]) == (48, 32)
    assert len(frames) == 9 + 21
    assert np.std(np.stack(frames).astype(np.float32)) > 1.0  # not a blank video

    report = json.loads(report_path.read_text())
    assert report["frames"] == 30
    assert report["random_weights"] is True
    assert report["model"] == "tiny"
    assert report["seed"] == 11  # the file's seed
    assert report["device"] == "cpu"
    assert (report["width"], report["height"]) == (48, 32)
    assert report["video"] == str(out)
    shots = report["shots"]
    assert [s["index"] for s in shots] == [0, 1]
    assert [s["chunks"] for s in shots] == [1, 2]
    assert [s["frames"] for s in shots] == [9, 21]
    assert [(c["shot"], c["chunk"], c["frames"], c["first_frame"]) for c in report["chunks"]] == [
        (0, 0, 9, 0), (1, 0, 9, 0), (1, 1, 12, 9)]
    for c in report["chunks"]:
        assert min(c["commit_ms"], c["denoise_ms"], c["decode_ms"]) >= 0 and c["denoise_ms"] > 0
        assert c["queue_ms"] is None and c["transport_ms"] is None and c["copy_ms"] is None  # nothing in between
    assert report["transport"] == "in-process" and report["server"] is None
    assert shots[1]["context_frames"] == [[0, 0], [0, 2], [0, 3], [0, 5], [0, 6], [0, 8]]

    assert "random weights" in captured.err
    assert "noise-like" in captured.err
    assert "shot 1 chunk 1: 12 frames" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""  # the report went to the file


def test_cli_report_on_stdout_and_seed_override(tmp_path, capsys):
    story = _write_story(tmp_path)
    out = tmp_path / "a.mp4"
    rc = main(["story", str(story), "--out", str(out), "--seed", "3", "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert report["seed"] == 3 and report["frames"] == 30
    assert "chunk 0:" not in captured.err  # --quiet


def _layout(report: dict) -> tuple[list[str], set[tuple[str, ...]], set[tuple[str, ...]]]:
    """The keys of a timings report at every level: top, each shot, each chunk."""
    return (sorted(report), {tuple(sorted(s)) for s in report["shots"]},
            {tuple(sorted(c)) for c in report["chunks"]})


def test_local_and_server_reports_share_one_schema(tmp_path, capsys):
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.report import SCHEMA, ChunkTimings, ShotTimings, TimingsReport
    from service.settings import ServerSettings

    story = _write_story(tmp_path)
    local, remote = tmp_path / "local.json", tmp_path / "remote.json"
    assert main(["story", str(story), "--out", str(tmp_path / "l.mp4"), "--report", str(local), "--device", "cpu",
                 "--quiet"]) == 0, capsys.readouterr().err
    (tmp_path / "rings").mkdir()
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, ring_dir=tmp_path / "rings",
                              takes_dir=tmp_path / "takes")
    with BackgroundServer(ShotStreamEngine.random(TINY, device="cpu", seed=0), settings) as server:
        assert main(["story", str(story), "--out", str(tmp_path / "r.mp4"), "--report", str(remote), "--server",
                     server.address, "--quiet"]) == 0, capsys.readouterr().err
    a, b = json.loads(local.read_text()), json.loads(remote.read_text())

    documented = (sorted(TimingsReport.__annotations__), {tuple(sorted(ShotTimings.__annotations__))},
                  {tuple(sorted(ChunkTimings.__annotations__))})
    assert _layout(a) == _layout(b) == documented
    assert a["schema"] == b["schema"] == SCHEMA
    assert (a["transport"], b["transport"]) == ("in-process", "shared_memory")
    assert a["server"] is None and b["server"] == server.address and b["session_id"]
    for key in ("model", "random_weights", "seed", "width", "height", "video_fps", "frames"):
        assert a[key] == b[key], key
    same = ("index", "event_id", "prompt", "chunks", "frames", "prompt_tokens", "truncated_tokens", "cut")
    assert [[s[k] for k in same] for s in a["shots"]] == [[s[k] for k in same] for s in b["shots"]]
    rows = ("shot", "chunk", "frames", "first_frame")
    assert [[c[k] for k in rows] for c in a["chunks"]] == [[c[k] for k in rows] for c in b["chunks"]]
    for report in (a, b):
        assert report["delivered_fps"] > 0 and report["generated_fps"] > 0 and report["video"]
        assert all(s["first_frame_ms"] > 0 for s in report["shots"])
    # what only a server path measures is null in-process, and the other way round
    assert [s["server_first_frame_ms"] for s in a["shots"]] == [None, None]
    assert all(s["server_first_frame_ms"] > 0 for s in b["shots"])
    assert a["transport_ms_mean"] is None and b["transport_ms_mean"] is not None
    assert all(c["copy_ms"] is not None and c["queue_ms"] is not None for c in b["chunks"])
    assert [s["context_frames"] for s in b["shots"]] == [None, None] and a["shots"][1]["context_frames"]


@pytest.mark.parametrize("content", ['{"global_caption": "g", "shot1": "a", "shot3": "c"}', "{oops"])
def test_cli_bad_story_file(tmp_path, capsys, content):
    story = tmp_path / "bad.json"
    story.write_text(content)
    out = tmp_path / "never.mp4"
    rc = main(["story", str(story), "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith("error: ")
    assert str(story) in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not out.exists()


def test_cli_missing_story_file(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    rc = main(["story", str(missing), "--out", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no such story file" in err and str(missing) in err


# -- the MP4 writer -----------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [
    np.zeros((2, 48, 32, 3), np.uint8),  # height and width swapped
    np.zeros((2, 32, 48, 4), np.uint8),  # RGBA
    np.zeros((32, 48, 3), np.uint8),  # a single frame without the batch axis
    np.zeros((2, 32, 48, 3), np.float32),
    np.zeros((2, 32, 48, 3), np.uint16),
], ids=["swapped", "rgba", "no-batch", "float32", "uint16"])
def test_mp4_writer_rejects_bad_frames(tmp_path, frames):
    path = tmp_path / "w.mp4"
    with Mp4Writer(path, 48, 32, 16) as writer:
        good = np.full((3, 32, 48, 3), 128, np.uint8)
        writer.write(good)
        with pytest.raises(ValueError, match=r"uint8 \[n, 32, 48, 3\]"):
            writer.write(frames)
        assert writer.frames == 3
    _, back = _read_mp4(path)
    assert len(back) == 3


def test_cli_engine_flags_choose_how_the_engine_runs(tmp_path, capsys, caplog):
    story = _write_story(tmp_path)
    with caplog.at_level("INFO", logger="engine_core.engine"):
        rc = main(["story", str(story), "--out", str(tmp_path / "a.mp4"), "--device", "cpu", "--quiet",
                   "--attention", "math", "--eager", "--fp8"])
    assert rc == 0, capsys.readouterr().err
    logged = caplog.text
    assert "attention: math" in logged and "fast path: eager" in logged and "fp8 block linears" in logged
    with pytest.raises(SystemExit):  # argparse refuses a kernel it does not know
        main(["story", str(story), "--out", str(tmp_path / "b.mp4"), "--attention", "warp-drive"])
