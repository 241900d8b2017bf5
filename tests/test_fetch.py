"""`python -m engine_core.fetch`: the tiny preview decoders (--decoder) next to the Wan weights and the student.

Offline: the Hugging Face Hub cannot be reached from the test machines, so ``hf_hub_download`` and
``snapshot_download`` are replaced by stubs that write small files where the real ones would, and
every socket connect fails, so a call that slipped past a stub would fail the test, not download.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from engine_core import fetch
from engine_core.engine import TAE_KINDS

hub = pytest.importorskip("huggingface_hub")

WAN_FILES = ["config.json", "diffusion_pytorch_model.safetensors", "Wan2.1_VAE.pth",
             "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("tests/test_fetch.py: network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class FakeHub:
    """Records the hub calls and writes what the real hub would write (``local_dir/<filename>``)."""

    def __init__(self) -> None:
        self.files: list[tuple[str, str, Path]] = []
        self.snapshots: list[tuple[str, Path, list[str]]] = []

    def hf_hub_download(self, repo_id: str, filename: str, local_dir, **kwargs) -> str:
        assert not kwargs, f"unexpected arguments {kwargs}"
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{repo_id}/{filename}".encode())
        self.files.append((repo_id, filename, Path(local_dir)))
        return str(path)

    def snapshot_download(self, repo_id: str, local_dir, allow_patterns: list[str]) -> str:
        root = Path(local_dir)
        for name in [fetch.STUDENT_FILE] if repo_id == fetch.STUDENT_REPO else WAN_FILES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
        self.snapshots.append((repo_id, root, list(allow_patterns)))
        return str(root)


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(hub, "snapshot_download", fake.snapshot_download)
    return fake


PUBLISHED = {"taew2_1": ("madebyollin/taehv", "taew2_1.pth"),
             "lighttaew2_1": ("lightx2v/Autoencoders", "lighttaew2_1.safetensors")}


def test_every_engine_tae_kind_has_a_source() -> None:
    assert set(fetch.TAE_SOURCES) == set(TAE_KINDS) == set(PUBLISHED)
    assert {k: s.license for k, s in fetch.TAE_SOURCES.items()} == {"taew2_1": "MIT", "lighttaew2_1": "Apache-2.0"}


@pytest.mark.parametrize("kind", sorted(PUBLISHED))
def test_decoder_only_fetches_the_published_file_into_tae(kind: str, tmp_path: Path, fake_hub: FakeHub,
                                                          capsys) -> None:
    repo, filename = PUBLISHED[kind]
    assert fetch.main([str(tmp_path), "--decoder", kind, "--decoder-only"]) == 0
    assert fake_hub.files == [(repo, filename, tmp_path / "tae")] and fake_hub.snapshots == []
    path = tmp_path / "tae" / filename
    assert path.read_bytes() == f"{repo}/{filename}".encode()
    out = capsys.readouterr()
    assert out.out == f"tae: {path.resolve()}\n" and out.err == ""


def test_decoder_with_the_weights_prints_all_three_paths(tmp_path: Path, fake_hub: FakeHub, capsys) -> None:
    assert fetch.main([str(tmp_path), "--decoder", "lighttaew2_1"]) == 0
    assert [s[0] for s in fake_hub.snapshots] == [fetch.WAN_REPO, fetch.STUDENT_REPO]
    assert fake_hub.files == [("lightx2v/Autoencoders", "lighttaew2_1.safetensors", tmp_path / "tae")]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"weights: {(tmp_path / 'Wan2.1-T2V-1.3B').resolve()}",
                     f"student: {(tmp_path / 'ShotStream' / 'shotstream_merged.pt').resolve()}",
                     f"tae: {(tmp_path / 'tae' / 'lighttaew2_1.safetensors').resolve()}"]


def test_without_decoder_nothing_tiny_is_fetched(tmp_path: Path, fake_hub: FakeHub) -> None:
    paths = fetch.fetch_weights(tmp_path, include_student=False)
    assert set(paths) == {"weights"} and fake_hub.files == []
    assert not (tmp_path / "tae").exists()


def test_a_hub_failure_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    def offline(**kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(fetch.FetchError, match=r"taew2_1\.pth from madebyollin/taehv .*OSError: network unreachable"
                                               r".*huggingface\.co.*re-running resumes"):
        fetch.fetch_tae(tmp_path, "taew2_1")
    assert fetch.main([str(tmp_path), "--decoder", "taew2_1", "--decoder-only"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: downloading taew2_1.pth from madebyollin/taehv")


def test_a_download_that_left_no_file_is_an_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(hub, "hf_hub_download", lambda repo_id, filename, local_dir: str(Path(local_dir) / filename))
    with pytest.raises(fetch.FetchError, match="lightx2v/Autoencoders: lighttaew2_1.safetensors .* no such file"):
        fetch.fetch_tae(tmp_path, "lighttaew2_1")


def test_missing_huggingface_hub_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(fetch.FetchError, match="huggingface_hub is not installed.*pip install huggingface_hub"):
        fetch.fetch_tae(tmp_path, "taew2_1")


def test_bad_decoder_arguments_are_refused_before_any_download(tmp_path: Path, fake_hub: FakeHub, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        fetch.main([str(tmp_path), "--decoder-only"])
    assert exc.value.code == 2 and "--decoder-only needs --decoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        fetch.main([str(tmp_path), "--decoder", "taehv"])
    assert exc.value.code == 2 and "invalid choice: 'taehv'" in capsys.readouterr().err
    with pytest.raises(fetch.FetchError, match="unknown tiny decoder 'taehv'"):
        fetch.fetch_tae(tmp_path, "taehv")
    with pytest.raises(fetch.FetchError, match="name a tiny decoder"):
        fetch.fetch_weights(tmp_path, include_wan=False)
    assert fake_hub.files == [] and fake_hub.snapshots == []


def test_cli_fetch_weights_passes_the_decoder_on(tmp_path, fake_hub, capsys):
    from service.cli import main as cli_main

    assert cli_main(["fetch-weights", str(tmp_path), "--decoder", "taew2_1", "--decoder-only"]) == 0
    assert fake_hub.files == [("madebyollin/taehv", "taew2_1.pth", tmp_path / "tae")] and fake_hub.snapshots == []
    assert capsys.readouterr().out == f"tae: {(tmp_path / 'tae' / 'taew2_1.pth').resolve()}\n"
    assert cli_main(["fetch-weights", str(tmp_path), "--decoder-only"]) == 2
    assert "--decoder-only needs --decoder" in capsys.readouterr().err
