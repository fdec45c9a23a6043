"""package.py: the code channel archive is reproducible byte for byte and holds what train.py needs."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
import tarfile

import pytest

from model import metrics, package


def test_two_builds_are_identical_and_the_digest_is_the_file_sha256(tmp_path):
    first, digest = package.build(tmp_path / "a")
    second, again = package.build(tmp_path / "b")
    assert first.name == second.name == "sourcedir.tar.gz"
    assert first.read_bytes() == second.read_bytes()
    assert digest == again == hashlib.sha256(first.read_bytes()).hexdigest()


def test_entries_are_flat_sorted_and_stripped_of_local_metadata(tmp_path):
    path, _ = package.build(tmp_path)
    raw = path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(path, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {"train.py", "data.py", "net.py", "metrics.py", "inference.py", "evaluate.py"} <= set(names)
    assert "package.py" not in names and not any("/" in n or n.endswith(".pyc") for n in names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_only_a_change_of_the_sources_changes_the_digest(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(package.SOURCE_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    _, before = package.build(tmp_path / "out1", source)
    # bytecode caches and a newer mtime do not count ...
    (source / "__pycache__").mkdir(exist_ok=True)
    (source / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"junk")
    (source / "net.py").touch()
    _, same = package.build(tmp_path / "out2", source)
    assert same == before
    # ... a changed module does
    (source / "net.py").write_text((source / "net.py").read_text() + "\n# changed\n")
    _, after = package.build(tmp_path / "out3", source)
    assert after != before


def test_the_cli_prints_path_and_digest(tmp_path, capsys):
    assert package.main([str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(tmp_path / "sourcedir.tar.gz")
    assert printed["sha256"] == hashlib.sha256((tmp_path / "sourcedir.tar.gz").read_bytes()).hexdigest()
    assert package.main([]) == 2


def test_the_extracted_archive_runs_flat_as_the_training_toolkit_runs_it(tmp_path, monkeypatch):
    # The toolkit extracts sourcedir.tar.gz into /opt/ml/code and runs train.py from there.
    path, _ = package.build(tmp_path)
    code = tmp_path / "code"
    with tarfile.open(path, "r:gz") as tar:
        tar.extractall(code, filter="data")
    names = ("train", "evaluate", "inference", "data", "net", "metrics")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    monkeypatch.syspath_prepend(str(code))
    try:
        flat_train = importlib.import_module("train")
        flat_evaluate = importlib.import_module("evaluate")
        assert flat_train.__file__ == str(code / "train.py")
        assert flat_train.metrics.METRIC_DEFINITIONS == metrics.METRIC_DEFINITIONS
        assert flat_evaluate.inference.__file__ == str(code / "inference.py")
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def test_a_folder_without_modules_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no modules to package"):
        package.build(tmp_path / "out", tmp_path / "missing")


def test_the_pulumi_program_can_import_metrics_and_package_without_torch():
    # The Pulumi programs install requirements.txt only (no torch): what they import must not need it.
    import subprocess
    code = "import sys, model.metrics, model.package; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=package.SOURCE_DIR.parent)
