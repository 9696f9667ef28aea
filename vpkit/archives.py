"""Unpacking what vpkit downloads (the datasets' .tgz/.zip archives, the paper's released-prompt zip): every
member is checked to land inside the target folder before anything is written, a zip's CRCs are checked, and a
damaged archive is one FetchError naming it."""
from __future__ import annotations

import tarfile
import zipfile
import zlib
from pathlib import Path

from vpkit.hub import FetchError
from vpkit.progress import tqdm


def unpack(path: Path, target: Path, name: str) -> None:
    """Unpack a .tgz/.tar or .zip archive into `target`, refusing members that would land outside it."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as bundle:
                members = bundle.infolist()
                for member in members:
                    _inside(target, member.filename, path, name)
                damaged = bundle.testzip()
                if damaged is not None:
                    raise zipfile.BadZipFile(f"member {damaged} fails its CRC check")
                for member in tqdm(members, desc=f"unpacking {name}", unit="file"):
                    bundle.extract(member, target)
            return
        with tarfile.open(path, "r:*") as bundle:
            for member in tqdm(bundle, desc=f"unpacking {name}", unit="file"):
                _inside(target, member.name, path, name)
                if not (member.isfile() or member.isdir()):
                    continue  # links and devices have no place in an image dataset or a prompt archive
                # the "data" filter (where this Python has it) also refuses odd permissions and special files
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                bundle.extract(member, target, set_attrs=False, **extra)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise FetchError(f"{path} ({name}): damaged archive ({type(error).__name__}: {error}); delete it from the "
                         "Hugging Face cache (`hf cache rm` or that file) and run the command again") from None


def _inside(target: Path, member: str, path: Path, name: str) -> None:
    if not (target / member).resolve().is_relative_to(target.resolve()):
        raise FetchError(f"{path} ({name}): member {member!r} points outside the archive; refusing to unpack it")
