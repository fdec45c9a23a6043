#!/usr/bin/env bash
# Build the image_ingest Lambda layer (Pillow for python3.12) reproducibly:
#   tools/build_layer.sh [arm64|x86_64]      (or ARCH=...; default arm64)
# Installs the hash-pinned wheels of functions/image_ingest/layer-requirements.txt for the target
# platform (never this machine's), then zips python/ with sorted entries, fixed timestamps and
# modes, so two builds give byte-identical zips: build/layers/image_ingest-<arch>.zip.
#
# Bytecode: /opt is read-only in Lambda, so a layer without .pyc files recompiles Pillow at every
# cold start (measured ~+100 ms here). .pyc files must come from a 3.12 interpreter: set
# PYC_PYTHON=/path/to/python3.12 and they are compiled as unchecked-hash pycs (PEP 552: no
# source mtime inside, so still reproducible). Without it the layer ships sources only.
set -euo pipefail

ARCH="${1:-${ARCH:-arm64}}"
case "$ARCH" in
  arm64) PLATFORM=manylinux2014_aarch64 ;;
  x86_64) PLATFORM=manylinux2014_x86_64 ;;
  *) echo "ARCH must be arm64 or x86_64, got '$ARCH'" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
REQUIREMENTS="$REPO/functions/image_ingest/layer-requirements.txt"
OUT="$REPO/build/layers/image_ingest-$ARCH.zip"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

# --no-compile: pip would compile with this machine's Python (wrong version, mtime-stamped pycs).
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile --no-deps \
  --require-hashes --only-binary=:all: \
  --platform "$PLATFORM" --python-version 3.12 --implementation cp --abi cp312 \
  --target "$STAGE/python" -r "$REQUIREMENTS"

if [ -n "${PYC_PYTHON:-}" ]; then
  "$PYC_PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
    || { echo "PYC_PYTHON must be a Python 3.12 interpreter (the Lambda runtime's)" >&2; exit 2; }
  # -d: record /opt/python (where Lambda mounts the layer) as the source path, not the temp dir.
  "$PYC_PYTHON" -m compileall -q --invalidation-mode unchecked-hash -d /opt/python "$STAGE/python"
else
  echo "note: PYC_PYTHON unset, layer ships without .pyc (slower cold start)" >&2
fi

mkdir -p "$(dirname "$OUT")"
"$PYTHON" - "$STAGE" "$OUT" <<'PY'
import os
import sys
import zipfile

stage, out = sys.argv[1], sys.argv[2]
paths = []
for root, _dirs, files in os.walk(os.path.join(stage, "python")):
    paths += [os.path.join(root, f) for f in files]
with zipfile.ZipFile(out + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for path in sorted(paths, key=lambda p: os.path.relpath(p, stage)):
        info = zipfile.ZipInfo(os.path.relpath(path, stage), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as fh:
            zf.writestr(info, fh.read(), compresslevel=9)
os.replace(out + ".tmp", out)
PY
echo "$OUT $(sha256sum "$OUT" | cut -d' ' -f1) $(du -k "$OUT" | cut -f1) KiB"
