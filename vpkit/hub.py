"""The one place vpkit fetches anything: Hugging Face Hub files and snapshots (models, dataset archives, the
paper's released prompts) through huggingface_hub's own cache and download code, and plain URLs (the paper's
split files) pinned by size and sha256.

huggingface_hub brings the cache (HF_HOME / HF_HUB_CACHE), the token (HF_TOKEN or `hf auth login`), resuming
and progress bars. vpkit reads HF_ENDPOINT and HF_HUB_OFFLINE when a fetch starts (huggingface_hub reads them
once, at import), so a notebook or a test that sets them before fetching is honoured. Every fetch hands back a
`Fetched`: the local path and where it came from (repository, revision asked for, resolved commit, sha256), which
is what a run records as its provenance. huggingface_hub's errors become one-line `FetchError`s naming the
repository or file and the fix.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vpkit.progress import tqdm

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
# ORG/NAME, optionally @REVISION (a branch, tag or commit): how a model on the Hub is named wherever vpkit takes
# a model name. A local folder of the same name wins (see `is_hub_id`).
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_])(?:@(?P<revision>[\w./-]+))?$")
# The files a model needs: its config, tokenizer and processor files, and one copy of the weights.
MODEL_FILES = ("*.json", "*.model", "*.txt", "*.tiktoken", "*.py")
SAFETENSORS_FILES = ("*.safetensors",)
BIN_FILES = ("*.bin",)
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A fetch that failed; the message names the repository / file / URL and the fix, in one line."""


@dataclass(frozen=True)
class Fetched:
    """What a fetch handed back: the local `path` and its source, for provenance.

    `repo_id`, `revision` (as asked; None = the default branch) and `commit` (the resolved commit) for the Hub;
    `url` for a plain URL; `sha256` where vpkit verified or computed the file's digest."""

    path: Path
    repo_id: str | None = None
    repo_type: str | None = None
    revision: str | None = None
    commit: str | None = None
    url: str | None = None
    sha256: str | None = None

    def source(self) -> dict:
        """A JSON-able record of where `path` came from."""
        record = {"repo_id": self.repo_id, "repo_type": self.repo_type, "revision": self.revision,
                  "commit": self.commit, "url": self.url, "sha256": self.sha256}
        return {key: value for key, value in record.items() if value is not None}


# ----------------------------------------------------------------------------- settings read at call time


def endpoint() -> str:
    """The Hub's address: HF_ENDPOINT as set now, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now: use only what the cache holds."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_dir() -> str | None:
    """HF_HUB_CACHE, else HF_HOME/hub, as set now; None: huggingface_hub's default (~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def cache_folder() -> Path:
    """The Hugging Face cache folder a fetch started now uses: `cache_dir()`, else huggingface_hub's default."""
    from huggingface_hub import constants

    return Path(cache_dir() or constants.HF_HUB_CACHE)


# ----------------------------------------------------------------------------- names


def split_hub_id(name: str) -> tuple[str, str | None]:
    """(repo_id, revision or None) of 'ORG/NAME' or 'ORG/NAME@REVISION'."""
    match = HUB_ID.match(str(name))
    if match is None:
        raise FetchError(f"{name!r} is not a Hub id; write ORG/NAME (optionally ORG/NAME@REVISION)")
    return match.group("repo"), match.group("revision")


def is_hub_id(name: str | Path) -> bool:
    """True when `name` reads as ORG/NAME[@REVISION] and no local file or folder has that name (a folder wins)."""
    text = str(name)
    if Path(text).expanduser().exists() or text.startswith((".", "/", "~")):
        return False
    return HUB_ID.match(text) is not None


def with_revision(model: str, revision: str | None) -> str:
    """`model` pinned to `revision` (ORG/NAME@REVISION); a `--revision` for a local folder is an error."""
    if revision is None:
        return model
    if not is_hub_id(model):
        raise FetchError(f"--revision {revision} applies to a Hub id (ORG/NAME); {model!r} is a local folder "
                         "or preset: drop --revision")
    repo_id, pinned = split_hub_id(model)
    if pinned is not None and pinned != revision:
        raise FetchError(f"{model!r} already names revision {pinned}; --revision {revision} disagrees: give one")
    return f"{repo_id}@{revision}"


# ----------------------------------------------------------------------------- Hub fetches


def _api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint())


def _what(repo_id: str, repo_type: str, filename: str | None, revision: str | None) -> str:
    kind = "" if repo_type == "model" else f"{repo_type} "
    at = f" at revision {revision}" if revision else ""
    return f"{filename} of the Hub {kind}repository {repo_id}{at}" if filename else \
        f"the Hub {kind}repository {repo_id}{at}"


@contextmanager
def hub_errors(repo_id: str, repo_type: str = "model", filename: str | None = None,
               revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's errors into one-line FetchErrors naming the repository / file and the fix."""
    from huggingface_hub import errors

    what = _what(repo_id, repo_type, filename, revision)
    try:
        yield
    except errors.GatedRepoError:
        raise FetchError(f"{what}: gated (401); accept its terms on {endpoint()}/{_url_path(repo_id, repo_type)} "
                         "and log in (`hf auth login` or HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise FetchError(f"{what}: revision {revision or 'main'} not found; give an existing branch, tag or "
                         "commit (--revision)") from None
    except errors.RepositoryNotFoundError:
        raise FetchError(f"{what}: repository not found (or private without a token); check the id, or log in "
                         "(`hf auth login` or HF_TOKEN)") from None
    except errors.RemoteEntryNotFoundError:
        raise FetchError(f"{what}: no such file in the repository; check the file name and revision") from None
    except errors.LocalEntryNotFoundError:
        raise FetchError(f"{what}: not in the local Hugging Face cache ({cache_dir() or 'the default cache'}) "
                         f"and {'HF_HUB_OFFLINE is set' if offline() else f'{endpoint()} could not be reached'}; "
                         "connect and unset HF_HUB_OFFLINE to download it, or give a local folder") from None
    except errors.OfflineModeIsEnabled:
        raise FetchError(f"{what}: HF_HUB_OFFLINE is set and it is not cached; unset HF_HUB_OFFLINE to "
                         "download it") from None
    except errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", "?")
        raise FetchError(f"{what}: the Hub answered HTTP {status}; try again later or check HF_ENDPOINT "
                         f"({endpoint()})") from None
    except (ConnectionError, TimeoutError) as error:
        raise FetchError(f"{what}: cannot reach {endpoint()} ({type(error).__name__}); check the connection, "
                         "or set HF_HUB_OFFLINE=1 to use the cache") from None
    except Exception as error:  # httpx transport errors have no common base with ConnectionError
        if type(error).__module__.startswith(("httpx", "httpcore")):
            raise FetchError(f"{what}: cannot reach {endpoint()} ({type(error).__name__}); check the connection, "
                             "or set HF_HUB_OFFLINE=1 to use the cache") from None
        raise


def _url_path(repo_id: str, repo_type: str) -> str:
    return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


def remote_size(repo_id: str, filename: str, *, repo_type: str = "model", revision: str | None = None) -> int | None:
    """The size in bytes of a Hub file (None offline or when the Hub does not say)."""
    if offline():
        return None
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint())
    with hub_errors(repo_id, repo_type, filename, revision):
        return get_hf_file_metadata(url, endpoint=endpoint()).size


def fetch_file(repo_id: str, filename: str, *, repo_type: str = "model", revision: str | None = None,
               sha256: str | None = None, free_space_for: Path | None = None) -> Fetched:
    """One file of a Hub repository, through huggingface_hub's cache (resumed, with a progress bar).

    `sha256`: the file must have this digest (checked after the download). `free_space_for`: a folder whose disk
    must hold the file twice over (downloaded and unpacked) before the download starts."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    if free_space_for is not None:
        size = remote_size(repo_id, filename, repo_type=repo_type, revision=revision)
        if size is not None:
            require_free_space(free_space_for, 2 * size, f"{filename} ({size / 1e9:.2f} GB) and its unpacked copy")
            cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir(), revision=revision,
                                            repo_type=repo_type)
            if not isinstance(cached, str):
                require_free_space(cache_folder(), size, f"{filename} in the Hugging Face cache")
    with hub_errors(repo_id, repo_type, filename, revision):
        path = Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                    cache_dir=cache_dir(), endpoint=endpoint(), local_files_only=offline()))
    digest = file_sha256(path)  # recorded as the file's provenance, and checked against a pin
    if sha256 and digest != sha256.lower():
        raise FetchError(f"{_what(repo_id, repo_type, filename, revision)}: sha256 {digest} is not the pinned "
                         f"{sha256}; the file changed on the Hub or was damaged: delete {path} and fetch again, "
                         "or pin the revision that holds the expected file")
    return Fetched(path, repo_id, repo_type, revision, _commit_of(path), sha256=digest)


def fetch_snapshot(repo_id: str, *, repo_type: str = "model", revision: str | None = None,
                   allow_patterns: Iterable[str] | None = None) -> Fetched:
    """The files of a Hub repository matching `allow_patterns` (all when None), in one cached snapshot folder."""
    from huggingface_hub import snapshot_download

    with hub_errors(repo_id, repo_type, None, revision):
        path = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir(),
                                      endpoint=endpoint(), local_files_only=offline(),
                                      allow_patterns=list(allow_patterns) if allow_patterns else None))
    return Fetched(path, repo_id, repo_type, revision, _commit_of(path))


def _commit_of(path: Path) -> str | None:
    """The commit of a file or folder in huggingface_hub's cache (.../snapshots/<commit>/...)."""
    parts = path.parts
    if "snapshots" in parts:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


def model_patterns(repo_id: str, revision: str | None = None) -> list[str]:
    """What to download of a model repository: config/tokenizer/processor files and one copy of the weights
    (safetensors where the repository has them, else the .bin files)."""
    with hub_errors(repo_id, "model", None, revision):
        names = [entry.path for entry in _api().list_repo_tree(repo_id, revision=revision, recursive=True)]
    weights = SAFETENSORS_FILES if any(name.endswith(".safetensors") for name in names) else BIN_FILES
    return [*MODEL_FILES, *weights]


def fetch_model(name: str) -> Fetched:
    """The local folder of the Hub model `name` (ORG/NAME or ORG/NAME@REVISION), fetched into the cache when
    needed: only its config, tokenizer and processor files and one copy of its weights. Offline, the cached
    snapshot with safetensors weights, else the one with .bin weights."""
    repo_id, revision = split_hub_id(name)
    if offline():
        try:
            fetched = fetch_snapshot(repo_id, revision=revision, allow_patterns=[*MODEL_FILES, *SAFETENSORS_FILES])
        except FetchError:
            fetched = fetch_snapshot(repo_id, revision=revision, allow_patterns=[*MODEL_FILES, *BIN_FILES])
    else:
        fetched = fetch_snapshot(repo_id, revision=revision, allow_patterns=model_patterns(repo_id, revision))
    if not (fetched.path / "config.json").is_file():
        raise FetchError(f"{_what(repo_id, 'model', None, revision)} has no config.json; it is not a model "
                         "checkpoint vpkit can load")
    return fetched


# ----------------------------------------------------------------------------- plain URLs


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def free_space(folder: str | Path) -> tuple[Path, int]:
    """(where it was measured, free bytes) of the disk that holds `folder`: a folder made on first use is measured
    at its nearest existing parent, the file system it will be made on."""
    probe = Path(folder).expanduser().resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start when the disk holding `folder` (or its nearest existing parent) has less than `needed`."""
    probe, free = free_space(folder)
    if free < needed:
        raise FetchError(f"{probe}: {free / 1e9:.2f} GB free, {needed / 1e9:.2f} GB needed for {what}; free some "
                         "space or choose another folder")


def fetch_url(url: str, target: str | Path, *, sha256: str, size: int | None = None) -> Fetched:
    """Download `url` to `target`, pinned: the file must have `sha256` (and `size`, when given).

    A target already holding the pinned file is kept. The bytes go to TARGET.part first; an interrupted download
    resumes from there (an HTTP Range request), and only a verified file is renamed into place."""
    target = Path(target)
    if target.is_file() and file_sha256(target) == sha256:
        return Fetched(target, url=url, sha256=sha256)
    if offline():
        raise FetchError(f"{url}: HF_HUB_OFFLINE is set and {target} is not there yet; connect and unset it, or "
                         f"copy the file to {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    if size is not None:
        require_free_space(target.parent, max(size - _size(partial), 0), url)
    have = _size(partial)
    if size is not None and have > size:
        partial.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            total = size or (have + int(response.headers.get("Content-Length") or 0)) or None
            with open(partial, "ab" if have else "wb") as out, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=target.name) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as error:
        if error.code == 416 and size is not None and _size(partial) == size:
            pass  # everything was there already
        else:
            raise FetchError(f"{url}: HTTP {error.code} ({error.reason}); check the address "
                             "(VPKIT_PAPER_FILES_URL for the paper's files)") from None
    except (urllib.error.URLError, OSError) as error:
        if isinstance(error, OSError) and not isinstance(error, urllib.error.URLError) and error.filename:
            raise
        reason = getattr(error, "reason", error)
        raise FetchError(f"{url}: cannot download ({reason}); {_size(partial)} bytes kept in {partial}, run the "
                         "command again to resume") from None
    got = _size(partial)
    if size is not None and got != size:
        raise FetchError(f"{url}: {got} bytes arrived of {size}; run the command again to resume")
    digest = file_sha256(partial)
    if digest != sha256:
        partial.unlink()
        raise FetchError(f"{url}: sha256 {digest} is not the pinned {sha256}; the file at that address is not the "
                         "one vpkit pins (check VPKIT_PAPER_FILES_URL); the download was deleted")
    os.replace(partial, target)
    return Fetched(target, url=url, sha256=digest)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
