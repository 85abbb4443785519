"""Checkpoints named by a Hugging Face Hub repository: `rwkv-cpu convert RWKV/v5-Eagle-7B-HF out.rwkv`.

When SRC is not a local path but looks like a repository id, only the files a conversion reads are downloaded
(into the Hugging Face cache, so a second conversion downloads nothing):

    config.json                                   if the repository has one
    the weights, first of: model.safetensors; model.safetensors.index.json and its shards; pytorch_model.bin;
                           pytorch_model.bin.index.json and its shards; the repository's only .pth file
    the vocabulary, any of: rwkv_vocab_v20230424.txt, 20B_tokenizer.json, tokenizer.json

Forms of SRC: `owner/name`, `owner/name@revision` (a branch, tag or commit), `owner/name/path/in/repo.pth` (one
file, e.g. from BlinkDL/rwkv-5-world, which holds many), and any of these prefixed with `hf://`.

The download needs the optional `huggingface_hub` package (`pip install rwkv_cpu[hub]`). Without it, or without
network, the error says what to install or which files to download by hand.
"""
from __future__ import annotations

import json
import os
import re
from typing import List, Optional, Tuple

from ..errors import ModelFormatError, RwkvArgumentError, RwkvIOError

# owner/name[/path][@revision]; HF names are letters, digits, '-', '_' and '.'
_REPO = re.compile(r"^(?:hf://)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?P<path>(?:/[^@]+?)?)/?(?:@(?P<rev>[\w./-]+))?$")

WEIGHT_FILES = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".json", ".rwkv", ".txt")
VOCAB_FILES = ["rwkv_vocab_v20230424.txt", "20B_tokenizer.json", "tokenizer.json"]
INSTALL_HINT = "pip install 'rwkv_cpu[hub]'  (or: pip install huggingface_hub)"


def parse_repo_source(src: str) -> Optional[Tuple[str, Optional[str], Optional[str]]]:
    """(repo id, path in the repo or None, revision or None) if src names a Hub repository, else None.
    A path that exists locally is never a repository."""
    if os.path.exists(src):
        return None
    m = _REPO.match(src)
    if not m or ".." in src.split("@")[0].split("/"):
        return None
    if not m.group("path") and m.group("repo").lower().endswith(_FILE_SUFFIXES):
        return None           # "dir/model.pth" that does not exist: a mistyped local path, not a repository
    path = m.group("path").strip("/") or None
    return m.group("repo"), path, m.group("rev")


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        return None
    return huggingface_hub


def select_files(files: List[str], index_json=None) -> List[str]:
    """The files of a repository that a conversion needs (see the module docstring). index_json(name) returns
    the parsed content of an index file (to list its shards)."""
    have = set(files)
    chosen = ["config.json"] if "config.json" in have else []
    for name in WEIGHT_FILES:
        if name in have:
            chosen.append(name)
            if name.endswith(".index.json"):
                index = index_json(name) if index_json else {}
                shards = sorted(set((index.get("weight_map") or {}).values())) if isinstance(index, dict) else []
                if not shards:
                    raise ModelFormatError(f"{name} in the repository lists no shards")
                missing = [s for s in shards if s not in have]
                if missing:
                    raise ModelFormatError(f"{name} names shards the repository lacks: {', '.join(missing[:3])}")
                chosen += shards
            break
    else:
        pth = [f for f in files if f.endswith(".pth") and "/" not in f]
        if len(pth) == 1:
            chosen.append(pth[0])
        elif pth:
            raise RwkvArgumentError(
                f"the repository holds {len(pth)} .pth checkpoints ({', '.join(sorted(pth)[:3])}, ...): name one, "
                "e.g. OWNER/NAME/FILE.pth")
        else:
            raise ModelFormatError("the repository has no weights a conversion can read (looked for "
                                   f"{', '.join(WEIGHT_FILES)} and .pth files)")
    chosen += [v for v in VOCAB_FILES if v in have]
    return chosen


def download(repo: str, path: Optional[str] = None, revision: Optional[str] = None) -> str:
    """Download what a conversion of `repo` needs; returns the local directory (or file, when `path` names one)."""
    hub = _hub()
    what = f"{repo}{'/' + path if path else ''}{'@' + revision if revision else ''}"
    if hub is None:
        raise RwkvArgumentError(
            f"{what!r} is not a local file or directory, so it was taken for a Hugging Face Hub repository; "
            f"downloading needs the huggingface_hub package: {INSTALL_HINT}. Or download the repository's "
            f"config.json, weights ({' or '.join(WEIGHT_FILES[:1] + WEIGHT_FILES[2:3])} or a .pth) and "
            f"{VOCAB_FILES[0]} yourself and pass their directory.")

    def fetch(name: str) -> str:
        try:
            return hub.hf_hub_download(repo_id=repo, filename=name, revision=revision)
        except Exception as e:  # network, authentication, missing file: huggingface_hub has many error types
            raise RwkvIOError(f"cannot download {name} from the Hugging Face Hub repository {repo}: "
                              f"{type(e).__name__}: {e}. Offline? Download it yourself and pass the local "
                              "directory.") from None

    if path is not None:
        return fetch(path)
    try:
        files = list(hub.list_repo_files(repo_id=repo, revision=revision))
    except Exception as e:
        raise RwkvIOError(f"cannot list the Hugging Face Hub repository {what}: {type(e).__name__}: {e}. Check the "
                          "name; when offline, download the repository's files yourself and pass the local "
                          "directory.") from None

    def index_json(name: str):
        try:
            with open(fetch(name), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise ModelFormatError(f"{repo}: cannot read {name}: {e}") from None

    local = [fetch(name) for name in select_files(files, index_json)]
    # hf_hub_download keeps the repository layout inside one snapshot directory: the first file's directory
    # (config.json or the weights, both at the top level) is the repository's root
    return os.path.dirname(local[0])


def resolve_source(src: str) -> Tuple[str, Optional[str]]:
    """(local path to convert, the name to record in the metadata or None). Downloads when src names a Hub
    repository (see the module docstring); local paths are returned as they are."""
    parsed = parse_repo_source(src)
    if parsed is None:
        return src, None
    repo, path, revision = parsed
    try:
        local = download(repo, path, revision)
    except RwkvIOError as e:
        raise RwkvIOError(f"{src}: no such local file or directory, and {e}") from None
    return local, f"hf://{repo}{'/' + path if path else ''}{'@' + revision if revision else ''}"


__all__ = ["resolve_source", "parse_repo_source", "select_files", "download"]
