"""Zoo entries: ``<zoo>/<name>.pt`` (weights) + ``<zoo>/<name>.json`` (manifest).

The weights file is a plain dict read with ``torch.load(weights_only=True)``::

    {"format": "b3f-zoo-1", "name": ..., "method": plugin name, "hyper_parameters": model init
     args, "state_dict": {name: tensor (float16 when exported with fp16)}}

(``hyper_parameters`` + ``state_dict`` also make it a checkpoint that
``b3f_methods.deep3d``'s ``load_rnet_checkpoint`` reads, so C-Net trains on a zoo R-Net.)

The manifest (JSON) holds: ``name``, ``method``, ``file``, ``sha256`` and ``bytes`` of the
weights file, ``dtype``, ``recipe`` (path, sha256 of its text, the resolved config),
``git_commit`` (+ ``git_dirty``), ``steps``, ``wall_time_s`` (summed over every resumed
session), ``hardware``, ``created_at`` and ``validation`` (the fixed sample: mode, size,
image_size, seed; ``true_error_mm`` = mean true error over the samples the model scored,
``n``, ``n_failed``, ``tolerance_mm``). :func:`verify_entry` checks all of it and recomputes
the validation error.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORMAT = "b3f-zoo-1"
ZOO_ENV = "B3F_ZOO_DIR"
MANIFEST_FIELDS = ("name", "method", "file", "sha256", "bytes", "dtype", "recipe", "git_commit", "steps",
                   "wall_time_s", "hardware", "created_at", "validation")


class ZooError(ValueError):
    """A zoo entry is unusable (the message names the file and the problem)."""


def default_zoo_dir() -> Path:
    """``$B3F_ZOO_DIR``, else ``./zoo`` when it exists, else the repository's ``zoo/``."""
    if os.environ.get(ZOO_ENV):
        return Path(os.environ[ZOO_ENV])
    if Path("zoo").is_dir():
        return Path("zoo")
    return Path(__file__).resolve().parents[3] / "zoo"


@dataclass
class ZooEntry:
    name: str
    manifest_path: Path
    manifest: dict[str, Any]

    @property
    def weights_path(self) -> Path:
        return self.manifest_path.parent / str(self.manifest.get("file") or f"{self.name}.pt")

    @property
    def method(self) -> str:
        return str(self.manifest.get("method", ""))

    @property
    def row_name(self) -> str:
        """The leaderboard row of this entry: ``<name>@zoo``."""
        return f"{self.name}@zoo"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def zoo_entries(zoo_dir: str | Path | None = None) -> list[ZooEntry]:
    """Every ``*.json`` manifest of the zoo directory (sorted by name; [] without a directory).
    A manifest that is not JSON raises :class:`ZooError` naming the file."""
    d = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        try:
            manifest = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ZooError(f"{p}: not a readable zoo manifest ({exc})") from exc
        if not isinstance(manifest, dict):
            raise ZooError(f"{p}: a zoo manifest must be a JSON object")
        out.append(ZooEntry(str(manifest.get("name") or p.stem), p, manifest))
    return out


def find_entry(name: str, zoo_dir: str | Path | None = None) -> ZooEntry:
    for e in zoo_entries(zoo_dir):
        if e.name == name:
            return e
    d = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    raise ZooError(f"no zoo entry {name!r} in {d} (b3f zoo list shows them)")


def _git_commit() -> tuple[str, bool]:
    import subprocess

    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root,
                                timeout=5).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=root, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "", False
    return commit, dirty


def hardware() -> dict[str, Any]:
    import platform

    hw: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
        hw["gpus"] = torch.cuda.device_count()
    return hw


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ------------------------------------------------------------------ loading
def read_weights(path: Path) -> dict[str, Any]:
    """The weights dict of a zoo file, loaded with ``weights_only=True``."""
    from ..training.checkpoints import load_checkpoint

    blob = load_checkpoint(path, weights_only=True, hint="zoo files hold tensors and plain values only")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("state_dict"), dict):
        raise ZooError(f"{path}: not a zoo weights file (expected a dict with format {FORMAT!r} and a state_dict)")
    return blob


def resolve_zoo_args(args: dict[str, Any], zoo_dir: str | Path | None = None) -> dict[str, Any]:
    """Model arguments with every ``"zoo:NAME"`` string replaced by that entry's weights file
    (checked against its manifest's sha256 first)."""
    out = dict(args)
    for k, v in args.items():
        if isinstance(v, str) and v.startswith("zoo:"):
            entry = find_entry(v[4:], zoo_dir)
            check_file(entry)
            out[k] = str(entry.weights_path)
    return out


def check_dependencies(entry: ZooEntry) -> None:
    """The zoo entries this one was trained on are the same files (sha256) as then."""
    for name, sha in (entry.manifest.get("depends_on") or {}).items():
        dep = find_entry(name, entry.manifest_path.parent)
        if dep.manifest.get("sha256") != sha:
            raise ZooError(f"{entry.manifest_path}: trained on zoo entry {name!r} with sha256 {str(sha)[:12]}..., "
                           f"but {dep.manifest_path} now holds {str(dep.manifest.get('sha256'))[:12]}...")


def build_model(method: str, hyper_parameters: dict[str, Any], zoo_dir: str | Path | None = None):
    """An instance of the installed method plugin ``method`` with these init args."""
    from ..methods.registry import installed_methods

    installed = installed_methods()
    if method not in installed:
        raise ZooError(f"zoo entry needs the method plugin {method!r}, which is not installed "
                       f"(installed: {', '.join(sorted(installed))})")
    cls = installed[method].load()
    return cls(**resolve_zoo_args(hyper_parameters, zoo_dir))


def load_entry_model(entry: ZooEntry, zoo_dir: str | Path | None = None):
    """The entry's model (weights checked against the manifest's sha256, loaded with
    ``weights_only=True``), in eval mode on the CPU."""
    check_file(entry)
    check_dependencies(entry)
    blob = read_weights(entry.weights_path)
    model = build_model(str(blob.get("method") or entry.method), dict(blob.get("hyper_parameters") or {}),
                        zoo_dir if zoo_dir is not None else entry.manifest_path.parent)
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    excluded = tuple(str(x) for x in blob.get("excluded_prefixes") or ())
    missing = [k for k in missing if not (excluded and k.startswith(excluded))]  # from the zoo entry they name
    if missing:
        raise ZooError(f"{entry.weights_path}: {len(missing)} weights missing for {entry.method} (e.g. {missing[:3]})")
    if unexpected:
        raise ZooError(f"{entry.weights_path}: {len(unexpected)} unexpected weights (e.g. {unexpected[:3]})")
    return model.eval()


def check_file(entry: ZooEntry) -> None:
    """The weights file exists and matches the manifest's sha256."""
    p = entry.weights_path
    if not p.is_file():
        raise ZooError(f"{entry.manifest_path}: its weights file {p.name} is missing")
    want = entry.manifest.get("sha256")
    got = sha256_of(p)
    if got != want:
        raise ZooError(f"{p}: sha256 {got[:12]}... does not match the manifest's {str(want)[:12]}...")


# ------------------------------------------------------------------ validation
def validation_error(model, spec, validation: dict[str, Any]) -> dict[str, Any]:
    """True error (mm) of ``model`` on the fixed validation sample, through the one evaluation
    path: ``true_error_mm`` = mean per-sample true error over the scored samples, with ``n``
    scored and ``n_failed``."""
    from ..data.datamodules import SyntheticDataModule
    from ..evaluation.landmarks import build_landmark_source
    from ..evaluation.loop import EvaluationPlan, run_evaluation

    v = validation
    dm = SyntheticDataModule(mode=v["mode"], image_size=int(v["image_size"]), train_size=0, val_size=0,
                             test_size=int(v["size"]), seed=int(v["seed"]), batch_size=int(v["batch_size"]),
                             num_workers=0, facemodel=str((getattr(model, "hparams", None) or {}).get("facemodel", "procedural")),
                             options=dict(v.get("options") or {}), drop_last=False)
    dm.setup("test")
    inputs = tuple(spec.inputs)
    source = build_landmark_source("detector") if any(i in ("lm68", "lm5") for i in inputs) else None
    plan = EvaluationPlan(protocols={"true_error": {}}, inputs=inputs, landmark_source=source, owner=spec.name)
    if v["mode"] == "set":
        from ..evaluation.datasets import synthetic_targets

        plan.targets = lambda b: synthetic_targets(b, "set", dm.facemodel)
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    results, _, _ = run_evaluation(model, dm.datasets["test"], plan, batch_size=int(v["batch_size"]),
                                   accelerator=accelerator)
    res = results["true_error"]
    values = list(res.per_sample.get("mean", {}).values())
    return {"true_error_mm": float(sum(values) / len(values)) if values else None, "n": len(values),
            "n_failed": len(res.failures)}


# ------------------------------------------------------------------ export
def export_entry(model, recipe, zoo_dir: str | Path, *, steps: int, wall_time_s: float) -> ZooEntry:
    """Write ``<zoo>/<name>.pt`` and its manifest from a trained model; the validation error
    is measured on the exported weights as :func:`load_entry_model` reads them back."""
    zoo = Path(zoo_dir)
    zoo.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to("cpu").half() if recipe.fp16 and v.is_floating_point() else v.detach().to("cpu"))
             .clone() for k, v in model.state_dict().items() if not k.startswith(recipe.exclude or ("\0",))}
    hp = _json_safe(dict(getattr(model, "hparams", {}) or recipe.model_args))
    for k, v in recipe.model_args.items():  # keep "zoo:NAME" references symbolic
        if isinstance(v, str) and v.startswith("zoo:"):
            hp[k] = v
    blob = {"format": FORMAT, "name": recipe.name, "method": recipe.method, "hyper_parameters": hp, "state_dict": state,
            "excluded_prefixes": list(recipe.exclude)}
    final = zoo / f"{recipe.name}.pt"
    tmp = final.with_suffix(".pt.tmp")
    torch.save(blob, tmp)
    size = tmp.stat().st_size
    if size > recipe.max_mb * 1024 * 1024:
        tmp.unlink()
        raise ZooError(f"{recipe.path}: the exported weights are {size / 2**20:.1f} MB, above zoo.max_mb "
                       f"{recipe.max_mb:g} (use fp16 or a more compact backbone)")
    os.replace(tmp, final)
    commit, dirty = _git_commit()
    manifest: dict[str, Any] = {
        "name": recipe.name, "method": recipe.method, "file": final.name, "sha256": sha256_of(final), "bytes": size,
        "dtype": "float16" if recipe.fp16 else "float32", "max_mb": recipe.max_mb,
        "recipe": {"path": str(recipe.path), "sha256": recipe.text_sha256, "config": _json_safe(recipe.config)},
        "git_commit": commit, "git_dirty": dirty, "steps": int(steps), "wall_time_s": round(float(wall_time_s), 1),
        "hardware": hardware(), "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "validation": dict(recipe.validation, tolerance_mm=recipe.tolerance_mm),
        "depends_on": {v[4:]: find_entry(v[4:], zoo).manifest.get("sha256") for v in recipe.model_args.values()
                       if isinstance(v, str) and v.startswith("zoo:")},
    }
    mpath = zoo / f"{recipe.name}.json"
    entry = ZooEntry(recipe.name, mpath, manifest)
    model_back = load_entry_model(entry, zoo)
    manifest["validation"].update(validation_error(model_back, model_back.spec, recipe.validation))
    tmp_m = mpath.with_suffix(".json.tmp")
    tmp_m.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp_m, mpath)
    return entry


# ------------------------------------------------------------------ verify
def verify_entry(entry: ZooEntry, *, recompute: bool = True) -> list[str]:
    """Problems with a zoo entry (empty: it checks out): manifest fields, sha256, size, a
    ``weights_only`` load, and (``recompute``) the validation error reproduced within the
    recorded tolerance."""
    m = entry.manifest
    problems = [f"{entry.manifest_path}: manifest field {f!r} missing" for f in MANIFEST_FIELDS if f not in m]
    if problems:
        return problems
    try:
        check_file(entry)
    except ZooError as exc:
        return [str(exc)]
    if entry.weights_path.stat().st_size != m["bytes"]:
        problems.append(f"{entry.weights_path}: {entry.weights_path.stat().st_size} bytes, manifest says {m['bytes']}")
    max_mb = float(m.get("max_mb", 25.0))
    if entry.weights_path.stat().st_size > max_mb * 2**20:
        problems.append(f"{entry.weights_path}: {entry.weights_path.stat().st_size / 2**20:.1f} MB, above {max_mb:g} MB")
    val = m.get("validation") or {}
    if val.get("true_error_mm") is None:
        problems.append(f"{entry.manifest_path}: no recorded validation true error")
    if problems or not recompute:
        return problems
    try:
        model = load_entry_model(entry)
        got = validation_error(model, model.spec, val)
    except Exception as exc:  # one line per broken entry
        return problems + [f"{entry.weights_path}: cannot be evaluated: {type(exc).__name__}: {exc}".splitlines()[0]]
    want, tol = float(val["true_error_mm"]), float(val.get("tolerance_mm", 0.02))
    if got["true_error_mm"] is None or not math.isfinite(got["true_error_mm"]) or abs(got["true_error_mm"] - want) > tol:
        problems.append(f"{entry.manifest_path}: validation true error {got['true_error_mm']} mm on the fixed sample, "
                        f"recorded {want:.4f} mm (tolerance {tol:g} mm)")
    if (got["n"], got["n_failed"]) != (val.get("n"), val.get("n_failed")):
        problems.append(f"{entry.manifest_path}: validation scored {got['n']} / failed {got['n_failed']}, "
                        f"recorded {val.get('n')} / {val.get('n_failed')}")
    return problems


__all__ = ["FORMAT", "MANIFEST_FIELDS", "ZOO_ENV", "ZooEntry", "ZooError", "build_model", "check_file",
           "default_zoo_dir", "export_entry", "find_entry", "load_entry_model", "read_weights", "resolve_zoo_args",
           "sha256_of", "validation_error", "verify_entry", "zoo_entries"]
