"""The code channel (contract 6): model/ packed as sourcedir.tar.gz, byte-for-byte the same for the same files.

The archive holds every ``.py`` file under ``model/`` (tests and caches left out) with fixed owners, modes
and times, so its hash changes only when the code does; the object key carries the hash, so a code
change is a new object (and a new state machine definition), never an overwrite of what a running job reads.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "model"
ENTRY_POINT = "train.py"


@dataclass(frozen=True)
class CodePackage:
    data: bytes
    sha256: str
    files: tuple[str, ...]

    @property
    def base64(self) -> str:
        # Sent as the object's content: no build file to keep next to the program.
        return base64.b64encode(self.data).decode()

    @property
    def key(self) -> str:
        # SageMaker puts a channel's object at /opt/ml/input/data/code/<name>: the name must stay
        # sourcedir.tar.gz (sagemaker_submit_directory), so the hash goes into the folder.
        return f"code/{self.sha256[:16]}/sourcedir.tar.gz"

    @property
    def has_entry_point(self) -> bool:
        return ENTRY_POINT in self.files


def _sources(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.py")
                  if not any(part in ("tests", "__pycache__") or part.startswith(".")
                             for part in p.relative_to(folder).parts))


def archive_bytes(folder: Path) -> tuple[bytes, tuple[str, ...]]:
    """A deterministic tar.gz of the folder's modules (paths relative to it)."""
    raw = io.BytesIO()
    names = []
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _sources(folder):
            name = path.relative_to(folder).as_posix()
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
            names.append(name)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return packed.getvalue(), tuple(names)


def code_package(folder: Path = MODEL_DIR) -> CodePackage:
    """Pack ``folder``; an absent folder packs to an empty archive (the component warns: no train.py)."""
    data, names = archive_bytes(folder)
    return CodePackage(data, hashlib.sha256(data).hexdigest(), names)
