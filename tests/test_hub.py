"""`rwkv-cpu convert OWNER/NAME out.rwkv`: which files are downloaded, the conversion through a fake Hugging Face
Hub (the tests never reach the network: the huggingface_hub module is replaced), and the messages when the
package is missing or the Hub cannot be reached."""
from __future__ import annotations

import os
import shutil
import sys
import types

import numpy as np
import pytest

import rwkv_cpu
from rwkv_cpu.convert import convert, main as convert_main
from rwkv_cpu.convert.hub import parse_repo_source, select_files
from rwkv_cpu.errors import ModelFormatError, RwkvArgumentError, RwkvIOError
from rwkv_cpu.tokenizer import WORLD_VOCAB_PATH
from conftest import fixture_dir


# ---- names --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("src, want", [
    ("RWKV/v5-Eagle-7B-HF", ("RWKV/v5-Eagle-7B-HF", None, None)),
    ("RWKV/v5-Eagle-7B-HF/", ("RWKV/v5-Eagle-7B-HF", None, None)),
    ("hf://RWKV/v5-Eagle-7B-HF@d8cac50", ("RWKV/v5-Eagle-7B-HF", None, "d8cac50")),
    ("BlinkDL/rwkv-5-world/RWKV-5-World-1B5-v2-20231025-ctx4096.pth",
     ("BlinkDL/rwkv-5-world", "RWKV-5-World-1B5-v2-20231025-ctx4096.pth", None)),
    ("BlinkDL/rwkv-5-world/sub/dir/x.pth@main", ("BlinkDL/rwkv-5-world", "sub/dir/x.pth", "main")),
    ("models/eagle.pth", None),                  # a mistyped local path, not a repository
    ("/abs/path/model", None),
    ("../up/x", None),
    ("single", None),
    ("a/../b", None),
])
def test_repository_names(src, want):
    assert parse_repo_source(src) == want


def test_existing_local_paths_are_never_repositories(tmp_path, monkeypatch):
    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_repo_source("owner/name") is None


# ---- which files --------------------------------------------------------------------------------------------------
def test_select_files_takes_only_what_a_conversion_reads():
    files = ["README.md", ".gitattributes", "config.json", "model.safetensors", "pytorch_model.bin",
             "rwkv_vocab_v20230424.txt", "tokenizer_config.json", "modeling_rwkv5.py"]
    assert select_files(files) == ["config.json", "model.safetensors", "rwkv_vocab_v20230424.txt"]
    assert select_files(["config.json", "pytorch_model.bin", "20B_tokenizer.json"]) == \
        ["config.json", "pytorch_model.bin", "20B_tokenizer.json"]
    assert select_files(["a.pth", "README.md"]) == ["a.pth"]


def test_select_files_follows_a_shard_index():
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                            "c": "model-00001-of-00002.safetensors"}}
    files = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
             "model-00002-of-00002.safetensors", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"]
    assert select_files(files, lambda name: index) == ["config.json", "model.safetensors.index.json",
                                                        "model-00001-of-00002.safetensors",
                                                        "model-00002-of-00002.safetensors"]
    with pytest.raises(ModelFormatError, match="lacks"):
        select_files(files[:3], lambda name: index)
    with pytest.raises(ModelFormatError, match="no shards"):
        select_files(files, lambda name: {})


def test_select_files_errors():
    with pytest.raises(RwkvArgumentError, match="name one"):
        select_files(["a.pth", "b.pth"])
    with pytest.raises(ModelFormatError, match="no weights"):
        select_files(["README.md", "config.json"])


# ---- conversion through a fake Hub -----------------------------------------------------------------------------------
class FakeHub(types.ModuleType):
    """A stand-in for huggingface_hub serving a local directory as repository `repo`, into a cache directory."""

    def __init__(self, repo: str, root: str, cache: str):
        super().__init__("huggingface_hub")
        self.repo, self.root, self.cache = repo, root, cache
        self.downloaded, self.listed = [], 0

    def list_repo_files(self, repo_id, revision=None, **kw):
        self.listed += 1
        if repo_id != self.repo:
            raise FileNotFoundError(f"404 repository {repo_id} not found")
        return sorted(os.path.relpath(os.path.join(d, f), self.root).replace(os.sep, "/")
                      for d, _, fs in os.walk(self.root) for f in fs)

    def hf_hub_download(self, repo_id, filename, revision=None, **kw):
        src = os.path.join(self.root, filename)
        if repo_id != self.repo or not os.path.isfile(src):
            raise FileNotFoundError(f"404 {repo_id}/{filename}")
        self.downloaded.append(filename)
        dst = os.path.join(self.cache, "snapshots", revision or "main", filename)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        return dst


@pytest.fixture
def fake_repo(tmp_path):
    """RWKV/fake-5v2: the random-5v2 fixture in HF layout, a vocab, and files a conversion must not download."""
    root = tmp_path / "repo"
    shutil.copytree(os.path.join(fixture_dir("random-5v2"), "hf"), root)
    shutil.copyfile(WORLD_VOCAB_PATH, root / "rwkv_vocab_v20230424.txt")
    shutil.copyfile(os.path.join(fixture_dir("random-5v2"), "model.pth"), root / "pytorch_model.bin")
    (root / "README.md").write_text("# fake\n")
    (root / "modeling_rwkv5.py").write_text("raise SystemExit('never run')\n")
    return str(root)


def test_convert_from_a_repository_id(fake_repo, tmp_path, monkeypatch, converted):
    hub = FakeHub("RWKV/fake-5v2", fake_repo, str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    out = tmp_path / "out.rwkv"
    summary = convert("RWKV/fake-5v2", str(out), dtype="f32", progress=False)
    assert sorted(hub.downloaded) == ["config.json", "model.safetensors", "rwkv_vocab_v20230424.txt"]
    assert summary["tokenizer"] == "world" and summary["arch"]
    model = rwkv_cpu.Model(str(out), n_threads=1)
    assert model.metadata["source"] == "hf://RWKV/fake-5v2"
    local = rwkv_cpu.Model(converted("random-5v2", "hf"), n_threads=1)
    ids = model.tokenizer.encode("Hello from the Hub")
    assert np.array_equal(model.forward(ids)[0], local.forward(ids)[0])


def test_convert_one_file_at_a_revision(fake_repo, tmp_path, monkeypatch):
    hub = FakeHub("BlinkDL/fake", fake_repo, str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    out = tmp_path / "one.rwkv"
    assert convert_main(["BlinkDL/fake/pytorch_model.bin@v1", str(out), "--quiet"]) == 0
    assert hub.downloaded == ["pytorch_model.bin"] and hub.listed == 0
    assert rwkv_cpu.Model(str(out)).metadata["source"] == "hf://BlinkDL/fake/pytorch_model.bin@v1"


def test_missing_package_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)        # import fails
    assert convert_main(["RWKV/v5-Eagle-7B-HF", str(tmp_path / "o.rwkv")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'rwkv_cpu[hub]'" in err and "config.json" in err and "RWKV/v5-Eagle-7B-HF" in err
    assert not os.listdir(tmp_path)


def test_offline_or_unknown_repository(monkeypatch, tmp_path, fake_repo):
    hub = FakeHub("RWKV/fake-5v2", fake_repo, str(tmp_path / "cache"))

    def offline(*a, **kw):
        raise ConnectionError("Name or service not known")

    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    with pytest.raises(RwkvIOError, match="no such local file or directory.*cannot list.*FileNotFoundError"):
        convert("RWKV/no-such-repo", str(tmp_path / "o.rwkv"), progress=False)
    hub.list_repo_files = offline
    with pytest.raises(RwkvIOError, match="ConnectionError.*when offline, download"):
        convert("RWKV/fake-5v2", str(tmp_path / "o.rwkv"), progress=False)
    assert not (tmp_path / "o.rwkv").exists()


def test_pyproject_declares_the_extra():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    assert 'hub = ["huggingface_hub' in text
