"""Build the `code` channel, `sourcedir.tar.gz` of model/, byte for byte the same for the same sources.

The training job runs with network isolation, so its code arrives as an input channel (contract 6):
the training toolkit extracts this archive into /opt/ml/code and runs `train.py` there. The archive
holds the modules flat at its root, in sorted order, with a fixed mtime, owner and mode, gzip'd with
mtime 0 and no file name: its SHA-256 changes only when a module's text does, so the Pulumi program
can name or hash the object by it and upload it only when the code changes.

    python -m model.package OUT_DIR   # prints {"path": ..., "sha256": ...}
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

ARCHIVE_NAME = "sourcedir.tar.gz"
SOURCE_DIR = Path(__file__).resolve().parent
# What the containers run; this packaging module itself is not needed there.
EXCLUDED = frozenset({"package.py"})
_MTIME = 0


def source_files(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """The modules that go into the archive, sorted by name (no __pycache__, no subfolders)."""
    return sorted(p for p in source_dir.glob("*.py") if p.is_file() and p.name not in EXCLUDED)


def archive_bytes(source_dir: Path = SOURCE_DIR) -> bytes:
    """The deterministic tar.gz of the modules."""
    files = source_files(source_dir)
    if not files:
        raise FileNotFoundError(f"no modules to package in {source_dir}")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in files:
            content = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size = len(content)
            info.mtime = _MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def build(out_dir: str | os.PathLike, source_dir: Path = SOURCE_DIR) -> tuple[Path, str]:
    """Write `OUT_DIR/sourcedir.tar.gz` (only if its bytes changed) and return its path and SHA-256."""
    content = archive_bytes(source_dir)
    digest = hashlib.sha256(content).hexdigest()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / ARCHIVE_NAME
    if not target.is_file() or target.read_bytes() != content:
        tmp = out / f".{ARCHIVE_NAME}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target)
    return target, digest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m model.package OUT_DIR", file=sys.stderr)
        return 2
    path, digest = build(args[0])
    print(json.dumps({"path": str(path), "sha256": digest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
