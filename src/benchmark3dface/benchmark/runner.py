"""Train, evaluate and record every selected method on the profile's synthetic test sets.

For each method (an installed plugin): resolve its config for the profile, derive the run key
(method, config hash, seed, dataset, split, protocol), skip it when the store already holds
finished runs for every protocol, otherwise train it (trainable methods; resuming from the last
checkpoint of an interrupted run), evaluate it with the protocols of its input kind on the
shared test set, and store one leaderboard run per protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..methods.registry import installed_methods
from .profile import BenchmarkProfile


@dataclass
class MethodOutcome:
    method: str
    status: str  # "done" | "skipped" | "failed" | "incompatible"
    message: str = ""
    train_seconds: float = 0.0
    eval_seconds_per_sample: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)  # protocol -> ProtocolResult


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def hardware() -> dict[str, Any]:
    hw = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
          "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
        hw["gpus"] = torch.cuda.device_count()
    return hw


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def method_config(cls, profile: str) -> tuple[dict[str, Any], Path | None]:
    """The method's LightningCLI-style config for ``profile`` ({} when it declares none)."""
    rel = cls.spec.configs.get(profile)
    if rel is None:
        return {}, None
    path = Path(rel)
    if not path.is_absolute():
        path = (Path(importlib.import_module(cls.__module__).__file__).parent / rel).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"method {cls.spec.name!r}: config for profile {profile!r} not found at {path}")
    return yaml.safe_load(path.read_text()) or {}, path


class BenchmarkRunner:
    """See the module docstring.

    Args:
        profile: test sets and protocols.
        store: a ``leaderboard.ResultsStore``.
        out_dir: checkpoints, logs and reports go here (``<out>/<method>/<config-hash>/``).
        force: re-run methods even when the store has finished runs.
        max_train_steps: cap every method's training (quick smoke runs and tests).
        accelerator / devices: passed to the Lightning Trainer.
        variants: method name -> (config file, leaderboard name): run that method with another
            config (e.g. a loss ablation) and record its runs under the given name.
    """

    def __init__(self, profile: BenchmarkProfile, store, out_dir: str | Path, force: bool = False,
                 max_train_steps: int | None = None, accelerator: str = "auto", devices: Any = 1,
                 progress: bool = True, use_wandb: bool = True,
                 variants: dict[str, tuple[str | Path, str]] | None = None):
        self.profile = profile
        self.store = store
        self.out_dir = Path(out_dir)
        self.force = force
        self.max_train_steps = max_train_steps
        self.accelerator = accelerator
        self.devices = devices
        self.progress = progress
        self.use_wandb = use_wandb
        self.variants = {k: (Path(v[0]), v[1]) for k, v in (variants or {}).items()}
        self._test_modules: dict[str, Any] = {}
        self._checkpoints: dict[str, Path] = {}

    # ------------------------------------------------------------------ public
    def run(self, methods: list[str] | None = None) -> list[MethodOutcome]:
        self._installed = installed_methods()
        names = methods or list(self._installed)
        missing = [n for n in names if n not in self._installed]
        if missing:
            raise ValueError(f"methods not installed: {missing}; installed: {sorted(self._installed)}")
        outcomes = []
        for name in names:
            try:
                outcomes.append(self.run_method(self._installed[name].load()))
            except Exception as exc:  # one broken method never stops the board
                outcomes.append(MethodOutcome(name, "failed", f"{type(exc).__name__}: {exc}"))
                (self.out_dir / name).mkdir(parents=True, exist_ok=True)
                (self.out_dir / name / "error.log").write_text(traceback.format_exc())
        return outcomes

    def prepare(self, cls, variant: bool = True) -> dict[str, Any]:
        """Resolve a method's config for the profile (or its variant's config): model/data/
        trainer config, the leaderboard name, the run config (what identifies its leaderboard
        runs), its hash and run directory."""
        from ..leaderboard.records import config_hash

        spec = cls.spec
        kind = spec.input_kind
        name = spec.name
        if variant and spec.name in self.variants:
            path, name = self.variants[spec.name]
            if not path.is_file():
                raise FileNotFoundError(f"config {path} for method {spec.name!r} not found")
            cfg = yaml.safe_load(path.read_text()) or {}
        else:
            cfg, _ = method_config(cls, self.profile.name)
        if spec.trainable and not cfg:
            raise ValueError(f"trainable method {spec.name!r} declares no config for profile {self.profile.name!r}")
        model_args = dict((cfg.get("model") or {}).get("init_args") or {})
        model_args.setdefault("facemodel", self.profile.facemodel)
        if self.profile.facemodel_path:
            model_args.setdefault("facemodel_path", self.profile.facemodel_path)
        for arg, dep in spec.checkpoint_args.items():
            model_args[arg] = str(self.checkpoint_of(dep))
        run_config = {"method": name, "plugin": spec.name, "version": spec.version, "profile": self.profile.name,
                      "model": model_args, "data": cfg.get("data"), "trainer": cfg.get("trainer"),
                      "max_train_steps": self.max_train_steps,
                      "test": self.profile.test_config(kind) if kind in self.profile.test_sets else None,
                      "protocols": self.profile.protocol_specs(kind)}
        chash = config_hash(json.loads(json.dumps(run_config, default=str)))
        return {"cfg": cfg, "model_args": model_args, "run_config": run_config, "hash": chash, "name": name,
                "run_dir": self.out_dir / name / chash[:12]}

    def checkpoint_of(self, name: str) -> Path:
        """The trained checkpoint of method ``name`` under this profile: reused when its run
        directory holds one, else trained now (and kept for its own leaderboard run)."""
        if name not in self._checkpoints:
            installed = getattr(self, "_installed", None) or installed_methods()
            if name not in installed:
                raise ValueError(f"needs the trained checkpoint of method {name!r}, which is not installed")
            cls = installed[name].load()
            if not cls.spec.trainable:
                raise ValueError(f"method {name!r} is not trainable: it has no checkpoint to give")
            prep = self.prepare(cls, variant=False)
            prep["run_dir"].mkdir(parents=True, exist_ok=True)
            _, ckpt = self.train(cls, prep["model_args"], prep["cfg"], prep["run_dir"])
            self._checkpoints[name] = ckpt
        return self._checkpoints[name]

    def run_method(self, cls) -> MethodOutcome:
        from ..leaderboard.records import RunInfo

        spec = cls.spec
        kind = spec.input_kind
        if kind not in self.profile.test_sets:
            return MethodOutcome(spec.name, "incompatible", f"profile {self.profile.name!r} has no {kind!r} test set")
        test_dm = self.test_datamodule(kind)
        missing = [a for a in spec.requires if a not in test_dm.provides]
        if missing:
            return MethodOutcome(spec.name, "incompatible", f"needs {missing}, the {kind} test set provides {test_dm.provides}")
        prep = self.prepare(cls)
        run_config, run_dir, model_args, name = prep["run_config"], prep["run_dir"], prep["model_args"], prep["name"]
        dataset = self.profile.dataset_name(kind)
        protocols = run_config["protocols"]
        infos = {p: RunInfo(method=name, dataset=dataset, protocol=p, split="test", config=run_config,
                            seed=self.profile.seed, method_version=spec.version, git_commit=git_commit(),
                            hardware=hardware()) for p in protocols}
        # a run's stored config also holds the method's configuration warnings (e.g. "perceptual
        # loss off"), known only once the model is built; they are kept beside the checkpoints
        noted = run_dir / "warnings.json"
        if noted.is_file():
            for info in infos.values():
                info.config = dict(run_config, warnings=json.loads(noted.read_text()))
        if not self.force and infos and all(self.store.find_finished(i) for i in infos.values()):
            return MethodOutcome(name, "skipped", "finished runs in the store (use --force to re-run)")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(run_config, indent=2, default=str))

        t0 = time.perf_counter()
        if spec.trainable:
            model, ckpt = self.train(cls, model_args, prep["cfg"], run_dir)
            if name == spec.name:
                self._checkpoints[spec.name] = ckpt
        else:
            model, ckpt = cls(**model_args), None
        train_s = time.perf_counter() - t0
        warnings = list(getattr(model, "config_warnings", []) or [])

        t1 = time.perf_counter()
        results, n = self.evaluate(model, kind, protocols)
        eval_s = (time.perf_counter() - t1) / max(n, 1)
        for p, info in infos.items():
            info.checkpoint = str(ckpt) if ckpt else None
            info.config = dict(run_config, warnings=warnings) if warnings else run_config
            self.store.record_run(info, results[p], on_duplicate="replace")
        if warnings:
            noted.write_text(json.dumps(warnings))
        elif noted.is_file():
            noted.unlink()
        return MethodOutcome(name, "done", "; ".join(warnings), train_s, eval_s, results)

    # ------------------------------------------------------------------ stages
    def test_datamodule(self, kind: str):
        if kind not in self._test_modules:
            from ..data.datamodules import SyntheticDataModule

            ts = self.profile.test_sets[kind]
            dm = SyntheticDataModule(mode=kind, image_size=ts.image_size, train_size=0, val_size=0,
                                     test_size=ts.size, seed=self.profile.seed, batch_size=ts.batch_size,
                                     num_workers=self.profile.num_workers, facemodel=self.profile.facemodel,
                                     facemodel_path=self.profile.facemodel_path, options=ts.options,
                                     drop_last=False)
            dm.setup("test")
            self._test_modules[kind] = dm
        return self._test_modules[kind]

    def train(self, cls, model_args: dict[str, Any], cfg: dict[str, Any], run_dir: Path):
        import lightning as L
        from lightning.pytorch.callbacks import ModelCheckpoint

        from ..training.loggers import default_loggers

        model = cls(**model_args)
        done = run_dir / "trained.json"
        if done.is_file():
            ckpt = Path(json.loads(done.read_text())["checkpoint"])
            state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
            model.load_state_dict(state)
            return model, ckpt
        data_cfg = cfg.get("data") or {}
        dm = _import(data_cfg["class_path"])(**(data_cfg.get("init_args") or {}))
        trainer_args = dict(cfg.get("trainer") or {})
        for k in ("logger", "callbacks", "default_root_dir", "enable_progress_bar"):
            trainer_args.pop(k, None)
        if self.max_train_steps is not None:
            trainer_args["max_steps"] = min(int(trainer_args.get("max_steps", -1)) if int(trainer_args.get("max_steps", -1)) > 0
                                            else self.max_train_steps, self.max_train_steps)
            trainer_args.pop("max_epochs", None)
            trainer_args["max_epochs"] = -1
        trainer_args.setdefault("accelerator", self.accelerator)
        trainer_args.setdefault("devices", self.devices)
        workers = int((data_cfg.get("init_args") or {}).get("num_workers", 0) or 0)
        threads = torch.get_num_threads()
        if trainer_args["accelerator"] == "cpu" or (trainer_args["accelerator"] == "auto" and not torch.cuda.is_available()):
            # data workers get their own cores: 2 cores + 1 worker -> 1 training thread
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
        seed = (cfg.get("seed_everything") if isinstance(cfg.get("seed_everything"), int) else self.profile.seed)
        L.seed_everything(seed, workers=True, verbose=False)
        ckdir = run_dir / "checkpoints"
        trainer = L.Trainer(default_root_dir=str(run_dir), enable_progress_bar=self.progress,
                            logger=default_loggers(run_dir, cls.spec.name, use_wandb=self.use_wandb),
                            callbacks=[ModelCheckpoint(dirpath=str(ckdir), save_last=True, save_top_k=0)],
                            enable_model_summary=False, **trainer_args)
        last = ckdir / "last.ckpt"
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
        finally:
            torch.set_num_threads(threads)
        trainer.save_checkpoint(str(last))
        done.write_text(json.dumps({"checkpoint": str(last), "global_step": trainer.global_step}))
        return model, last

    def evaluate(self, model, kind: str, protocols: dict[str, dict[str, Any]]):
        from ..metrics import build_protocol

        dm = self.test_datamodule(kind)
        metrics = {p: build_protocol(p, **opts) for p, opts in protocols.items()}
        device = torch.device("cuda" if torch.cuda.is_available() and self.accelerator != "cpu" else "cpu")
        model = model.to(device).eval()
        needs_scan = any(p in SCAN_PROTOCOLS for p in protocols)
        n = 0
        with torch.no_grad():
            for batch in dm.test_dataloader():
                batch = model.transfer_batch_to_device(batch, device, 0)
                recs = model.reconstruct(batch)
                target = batch
                if kind == "set":
                    target = with_identity_gt(target, dm.facemodel)
                if needs_scan:
                    target = with_gt_scans(target, self.profile.scan_stride)
                for m in metrics.values():
                    m.update(recs, target)
                n += len(recs)
        return {p: m.compute() for p, m in metrics.items()}, n


#: protocols that score against a scan (``Sample.scan_vertices``)
SCAN_PROTOCOLS = ("micc", "now", "now_metrical")


def with_identity_gt(batch, facemodel) -> list:
    """Per-sample views of a synthetic *set* batch whose GT mesh is the set's identity with a
    neutral expression (model frame, mm): what a set method's aggregated identity is scored
    against (Deng's Table 4 protocol), since the views differ in expression."""
    from ..metrics import as_samples

    out = []
    for s in as_samples(batch):
        if s.coeffs is not None:
            lay = facemodel.layout
            ident = s.coeffs.reshape(-1, lay.size)[0, lay.slice("id")].to(facemodel.mean_shape)
            s.vertices = facemodel.shape(ident[None], torch.zeros(1, lay.exp, dtype=ident.dtype,
                                                                   device=ident.device))[0].to(s.coeffs.device)
        out.append(s)
    return out


def with_gt_scans(batch, stride: int = 1) -> list:
    """Per-sample views of a synthetic batch whose "scan" is the GT mesh (model frame, mm):
    scan vertices/triangles, the 7 NoW landmarks and the nose tip taken from the GT topology.
    ``stride`` keeps every stride-th vertex as a scan point (a sparser "scanner"). Samples that
    already carry a scan are left as they are. This is what lets the scan-based protocols (and
    their metric fidelity against the true error) run on synthetic data."""
    from ..metrics import NOW7_FROM_IBUG68, as_samples

    out = []
    for s in as_samples(batch):
        if s.scan_vertices is None and s.vertices is not None and s.vertices.ndim == 2:
            lm = s.vertices[s.landmark_indices.long()] if s.landmark_indices is not None else None
            s.scan_vertices = s.vertices[::stride].contiguous()
            s.scan_triangles = s.triangles if stride == 1 else None
            if lm is not None:
                s.scan_landmarks7 = lm[torch.as_tensor(NOW7_FROM_IBUG68, device=lm.device)]
                s.meta = dict(s.meta or {}, scan_nose_tip=lm[30])
        out.append(s)
    return out
