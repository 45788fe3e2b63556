"""Train, evaluate and record every selected method on the profile's synthetic test sets.

For each method (an installed plugin): resolve its config for the profile, derive the run key
(method, config hash, seed, dataset, split, protocol), skip it when the store already holds
finished runs for every protocol, otherwise train it (trainable methods; resuming from the last
checkpoint of an interrupted run), evaluate it on every test set its ``MethodSpec.eval_kinds``
names (default: the test set of its input kind; e.g. ``fitting`` also on the multi-view
triplets, the baselines also on the weak-perspective ``single_weak`` set) with that test set's
protocols, and store one leaderboard run per (test set, protocol): each test set is its own
leaderboard dataset (``profile.dataset_name(key)``). Training annotations (``requires``) are
checked against the training data, never against the test sets.

Every model-zoo entry (``zoo/<name>.pt`` + manifest, docs/zoo.md) of a selected method is
evaluated too, as its own row ``<name>@zoo`` (no training; the weights checked against the
manifest's sha256 and loaded with ``weights_only=True``) on the same test sets.
"""

from __future__ import annotations

import importlib
import json
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..evaluation.inputs import uses_ground_truth
from ..evaluation.landmarks import ROW_SUFFIX
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
    dataset: str = ""  # the leaderboard dataset (test set) of this outcome


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
    from ..training.configs import resolve_config

    return resolve_config(path), path


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
        zoo_dir: model-zoo directory whose entries become ``<name>@zoo`` rows (default:
            ``$B3F_ZOO_DIR``, ./zoo, the repository's zoo/; ``False``: none).
    """

    def __init__(self, profile: BenchmarkProfile, store, out_dir: str | Path, force: bool = False,
                 max_train_steps: int | None = None, accelerator: str = "auto", devices: Any = 1,
                 progress: bool = True, use_wandb: bool = True,
                 variants: dict[str, tuple[str | Path, str]] | None = None, zoo_dir: Any = None):
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
        self._landmark_sources: dict[str, Any] = {}
        self._gallery_ids: dict[str, list[str]] = {}
        self.zoo_dir = zoo_dir

    # ------------------------------------------------------------------ public
    def plan(self, methods: list[str] | None = None) -> list[str]:
        """What ``run(methods)`` will do, as lines for the terminal."""
        installed = installed_methods()
        names = methods or list(installed)
        lines = []
        for key, ts in self.profile.test_sets.items():
            protos = ", ".join(self.profile.protocol_specs(key)) or "-"
            opts = f" ({', '.join(f'{k}={v}' for k, v in ts.options.items())})" if ts.options else ""
            lines.append(f"test set {self.profile.dataset_name(key)}: {ts.size} {self.profile.kind_of(key)} "
                         f"samples{opts}; protocols: {protos}")
        src = self.profile.landmarks
        lines.append(f"test-time landmarks: {src if isinstance(src, str) else json.dumps(src)} "
                     "(ground-truth landmarks only in rows marked ORACLE)")
        rows = []
        for n in names:
            if n not in installed:
                continue
            try:
                keys = self.test_keys(installed[n].load().spec)
            except Exception:  # a broken plugin is reported by run()
                keys = []
            rows.append(f"{n} [{' '.join(keys) or 'no test set'}]")
            rows += [f"{n}{ROW_SUFFIX.get(_source_name(v), '')}" for v in self.profile.input_variants.get(n, [])]
        try:
            rows += [f"{e.row_name} (zoo checkpoint, {e.manifest.get('steps')} steps)" for e in self.zoo_entries(names)]
        except Exception as exc:  # reported by run()
            rows.append(f"zoo: {exc}")
        lines.append(f"methods ({len(rows)} rows): {', '.join(rows)}")
        return lines

    def run(self, methods: list[str] | None = None) -> list[MethodOutcome]:
        self._installed = installed_methods()
        names = methods or list(self._installed)
        missing = [n for n in names if n not in self._installed]
        if missing:
            raise ValueError(f"methods not installed: {missing}; installed: {sorted(self._installed)}")
        outcomes = []
        jobs = [(name, None) for name in names]
        for name in names:  # oracle-input variants named in the profile (e.g. fitting with GT landmarks)
            jobs += [(name, lm) for lm in self.profile.input_variants.get(name, [])]
        for name, landmarks in jobs:
            label = name if landmarks is None else f"{name}{ROW_SUFFIX.get(_source_name(landmarks), '')}"
            try:
                cls = self._installed[name].load()
                keys = self.test_keys(cls.spec, landmarks)
            except Exception as exc:
                outcomes.append(self._failed(label, "", exc))
                continue
            if not keys:
                outcomes.append(MethodOutcome(label, "incompatible", f"profile {self.profile.name!r} has no test set "
                                              f"among its eval kinds {list(cls.spec.eval_kinds)}"))
            for key in keys:
                try:
                    outcomes.append(self.run_method(cls, landmarks=landmarks, key=key))
                except Exception as exc:  # one broken method never stops the board
                    outcomes.append(self._failed(label, self.profile.dataset_name(key), exc))
        outcomes += self.run_zoo(names)
        return outcomes

    # ------------------------------------------------------------------ model zoo
    def zoo_entries(self, methods: list[str] | None = None) -> list[Any]:
        """The zoo entries whose method is among ``methods`` (all when None)."""
        if self.zoo_dir is False:
            return []
        from ..zoo import zoo_entries

        return [e for e in zoo_entries(self.zoo_dir) if methods is None or e.method in methods]

    def run_zoo(self, methods: list[str] | None = None) -> list[MethodOutcome]:
        """Evaluate every zoo entry of the selected methods as its own row ``<name>@zoo`` on the
        test sets its method is evaluated on; a broken entry is a failed row."""
        outcomes = []
        try:
            entries = self.zoo_entries(methods)
        except Exception as exc:  # an unreadable manifest: one failed row, the board goes on
            return [self._failed("zoo", "", exc)]
        installed = getattr(self, "_installed", None) or installed_methods()
        for entry in entries:
            try:
                cls = installed[entry.method].load()
                keys = self.test_keys(cls.spec)
            except Exception as exc:
                outcomes.append(self._failed(entry.row_name, "", exc))
                continue
            for key in keys:
                try:
                    outcomes.append(self.run_zoo_entry(entry, cls, key))
                except Exception as exc:
                    outcomes.append(self._failed(entry.row_name, self.profile.dataset_name(key), exc))
        return outcomes

    def run_zoo_entry(self, entry: Any, cls: Any, key: str) -> MethodOutcome:
        """Evaluate one zoo entry on test set ``key`` and record one run per protocol."""
        from ..leaderboard.records import RunInfo
        from ..zoo import load_entry_model

        spec, name = cls.spec, entry.row_name
        dataset = self.profile.dataset_name(key)
        m = entry.manifest
        run_config = {"method": name, "plugin": spec.name, "version": spec.version, "profile": self.profile.name,
                      "inputs": self.inputs_record(spec),
                      "zoo": {"sha256": m.get("sha256"), "file": m.get("file"), "steps": m.get("steps"),
                              "recipe_sha256": (m.get("recipe") or {}).get("sha256")},
                      "test": self.profile.test_config(key), "protocols": self.profile.protocol_specs(key)}
        protocols = run_config["protocols"]
        infos = {p: RunInfo(method=name, dataset=dataset, protocol=p, split="test", config=run_config,
                            seed=self.profile.seed, method_version=spec.version, git_commit=git_commit(),
                            hardware=hardware(), checkpoint=str(entry.weights_path)) for p in protocols}
        if not self.force and infos and all(self.store.find_finished(i) for i in infos.values()):
            return MethodOutcome(name, "skipped", "finished runs in the store (use --force to re-run)", dataset=dataset)
        model = load_entry_model(entry)
        t1 = time.perf_counter()
        if self.progress:
            print(f"  {name}: evaluating the zoo checkpoint on {dataset} ({', '.join(protocols)}) ...", flush=True)
        run_dir = self.out_dir / name / str(m.get("sha256", ""))[:12]
        run_dir.mkdir(parents=True, exist_ok=True)
        results, n = self.evaluate(model, key, protocols, spec=spec, name=name, gallery=run_dir / "gallery.pt")
        for p, info in infos.items():
            self.store.record_run(info, results[p], on_duplicate="replace")
        return MethodOutcome(name, "done", f"zoo checkpoint {entry.weights_path.name} ({m.get('steps')} steps)", 0.0,
                             (time.perf_counter() - t1) / max(n, 1), results, dataset=dataset)

    def _failed(self, label: str, dataset: str, exc: Exception) -> MethodOutcome:
        where = self.out_dir / label
        where.mkdir(parents=True, exist_ok=True)
        (where / (f"error-{dataset}.log" if dataset else "error.log")).write_text(traceback.format_exc())
        return MethodOutcome(label, "failed", f"{type(exc).__name__}: {exc}", dataset=dataset)

    def test_keys(self, spec, landmarks: Any = None) -> list[str]:
        """The profile's test sets a method is evaluated on (``MethodSpec.eval_kinds``); an
        oracle-input landmark variant runs on the test set of its input kind only."""
        keys = self.profile.test_sets_for(spec)
        if landmarks is not None:
            keys = [k for k in keys if k == spec.input_kind]
        return keys

    def prepare(self, cls, variant: bool = True, landmarks: Any = None, key: str | None = None) -> dict[str, Any]:
        """Resolve a method's config for the profile (or its variant's config): model/data/
        trainer config, the leaderboard name, the run config (what identifies its leaderboard
        runs on test set ``key``, default its input kind's), its hash and run directory."""
        from ..leaderboard.records import config_hash

        spec = cls.spec
        kind = key or spec.input_kind
        name = spec.name
        if variant and spec.name in self.variants:
            path, name = self.variants[spec.name]
            if not path.is_file():
                raise FileNotFoundError(f"config {path} for method {spec.name!r} not found")
            from ..training.configs import resolve_config

            cfg = resolve_config(path)
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
        if landmarks is not None:
            name = f"{name}{ROW_SUFFIX[_source_name(landmarks)]}"
        run_config = {"method": name, "plugin": spec.name, "version": spec.version, "profile": self.profile.name,
                      "inputs": self.inputs_record(spec, landmarks),
                      "model": model_args, "data": cfg.get("data"), "trainer": cfg.get("trainer"),
                      "max_train_steps": self.max_train_steps,
                      "test": self.profile.test_config(kind) if kind in self.profile.test_sets else None,
                      "protocols": self.profile.protocol_specs(kind)}
        chash = config_hash(json.loads(json.dumps(run_config, default=str)))
        return {"cfg": cfg, "model_args": model_args, "run_config": run_config, "hash": chash, "name": name,
                "run_dir": self.out_dir / name / chash[:12], "landmarks": landmarks}

    def inputs_record(self, spec, landmarks: Any = None) -> dict[str, Any]:
        """What a run's method saw at test time (stored with every leaderboard run)."""
        rec: dict[str, Any] = {"declared": list(spec.inputs)}
        if any(i in ("lm68", "lm5") for i in spec.inputs):
            src = self.landmark_source(landmarks)
            rec["landmarks"] = src.describe()
        gt = uses_ground_truth(tuple(spec.inputs))
        if gt or (landmarks is not None and _source_name(landmarks) != "detector"):
            rec["oracle_input"] = gt + (["landmarks"] if landmarks is not None and _source_name(landmarks) != "detector" else [])
        return rec

    def landmark_source(self, spec: Any = None):
        """The profile's landmark source (or ``spec``), built once per distinct spec."""
        from ..evaluation.landmarks import build_landmark_source

        spec = self.profile.landmarks if spec is None else spec
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in self._landmark_sources:
            self._landmark_sources[key] = build_landmark_source(spec)
        return self._landmark_sources[key]

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

    def run_method(self, cls, landmarks: Any = None, key: str | None = None) -> MethodOutcome:
        """Train (or reuse) and evaluate one method on test set ``key`` (default: the test set
        of its input kind) and record one leaderboard run per protocol."""
        from ..leaderboard.records import RunInfo

        spec = cls.spec
        key = key or spec.input_kind
        if key not in self.profile.test_sets:
            return MethodOutcome(spec.name, "incompatible", f"profile {self.profile.name!r} has no {key!r} test set")
        kind = self.profile.kind_of(key)
        dataset = self.profile.dataset_name(key)
        test_dm = self.test_datamodule(key)
        missing = [a for a in uses_ground_truth(tuple(spec.inputs)) if a not in test_dm.provides]
        if missing:
            return MethodOutcome(spec.name, "incompatible",
                                 f"its test-time inputs need ground truth {missing}, the {key} test set provides "
                                 f"{test_dm.provides}", dataset=dataset)
        if landmarks is not None and not any(i in ("lm68", "lm5") for i in spec.inputs):
            return MethodOutcome(spec.name, "incompatible", f"variant {landmarks!r}: the method takes no landmark input",
                                 dataset=dataset)
        prep = self.prepare(cls, landmarks=landmarks, key=key)
        run_config, run_dir, model_args, name = prep["run_config"], prep["run_dir"], prep["model_args"], prep["name"]
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
            return MethodOutcome(name, "skipped", "finished runs in the store (use --force to re-run)", dataset=dataset)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(run_config, indent=2, default=str))

        t0 = time.perf_counter()
        if spec.trainable:
            # one training per method config: the test sets beyond its input kind's reuse it
            train_dir = run_dir if key == spec.input_kind else self.prepare(cls, landmarks=landmarks)["run_dir"]
            train_dir.mkdir(parents=True, exist_ok=True)
            model, ckpt = self.train(cls, model_args, prep["cfg"], train_dir)
            if name == spec.name:
                self._checkpoints[spec.name] = ckpt
        else:
            model, ckpt = cls(**model_args), None
        train_s = time.perf_counter() - t0
        warnings = list(getattr(model, "config_warnings", []) or [])

        t1 = time.perf_counter()
        if self.progress:
            print(f"  {name}: evaluating on {dataset} ({', '.join(protocols)}) ...", flush=True)
        results, n = self.evaluate(model, key, protocols, spec=spec, landmarks=landmarks, name=name,
                                   gallery=run_dir / "gallery.pt")
        eval_s = (time.perf_counter() - t1) / max(n, 1)
        if self.progress:
            print(f"  {name}: evaluated {n} {kind} samples in {time.perf_counter() - t1:.0f}s", flush=True)
        for p, info in infos.items():
            info.checkpoint = str(ckpt) if ckpt else None
            info.config = dict(run_config, warnings=warnings) if warnings else run_config
            self.store.record_run(info, results[p], on_duplicate="replace")
        if warnings:
            noted.write_text(json.dumps(warnings))
        elif noted.is_file():
            noted.unlink()
        return MethodOutcome(name, "done", "; ".join(warnings), train_s, eval_s, results, dataset=dataset)

    # ------------------------------------------------------------------ stages
    def test_datamodule(self, key: str):
        """The synthetic data module of test set ``key`` (built once)."""
        if key not in self._test_modules:
            from ..data.datamodules import SyntheticDataModule

            ts = self.profile.test_sets[key]
            dm = SyntheticDataModule(mode=self.profile.kind_of(key), image_size=ts.image_size, train_size=0, val_size=0,
                                     test_size=ts.size, seed=self.profile.seed, batch_size=ts.batch_size,
                                     num_workers=self.profile.num_workers, facemodel=self.profile.facemodel,
                                     facemodel_path=self.profile.facemodel_path, options=ts.options,
                                     drop_last=False)
            dm.setup("test")
            self._test_modules[key] = dm
        return self._test_modules[key]

    def train(self, cls, model_args: dict[str, Any], cfg: dict[str, Any], run_dir: Path):
        import lightning as L
        from lightning.pytorch.callbacks import ModelCheckpoint

        from ..threads import training_threads
        from ..training.loggers import LogVersionCheckpoint, default_loggers

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
            torch.set_num_threads(training_threads(workers))  # or the user's --threads
        seed = (cfg.get("seed_everything") if isinstance(cfg.get("seed_everything"), int) else self.profile.seed)
        L.seed_everything(seed, workers=True, verbose=False)
        ckdir = run_dir / "checkpoints"
        last = ckdir / "last.ckpt"
        resume = str(last) if last.is_file() else None  # a resumed run continues its CSV log version
        callbacks = [ModelCheckpoint(dirpath=str(ckdir), save_last=True, save_top_k=0), LogVersionCheckpoint()]
        if self.progress:  # one line per phase with ETA instead of Lightning's bar
            from .progress import PhaseProgress

            callbacks.append(PhaseProgress(run_dir.parent.name))
        loggers = default_loggers(run_dir, cls.spec.name, use_wandb=self.use_wandb, resume_from=resume)
        trainer = L.Trainer(default_root_dir=str(run_dir), enable_progress_bar=False, logger=loggers,
                            callbacks=callbacks, enable_model_summary=False, **trainer_args)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
        finally:
            torch.set_num_threads(threads)
            finish_wandb(loggers)
        trainer.save_checkpoint(str(last), weights_only=False)  # the full state (a save, not a load)
        done.write_text(json.dumps({"checkpoint": str(last), "global_step": trainer.global_step}))
        return model, last

    def evaluate(self, model, key: str, protocols: dict[str, dict[str, Any]], spec=None, landmarks: Any = None,
                 name: str | None = None, gallery: Path | None = None):
        """Score ``model`` on the profile's test set ``key`` through the one evaluation path
        (benchmark3dface.evaluation.loop); returns (results by protocol, samples seen)."""
        from ..evaluation.datasets import synthetic_targets
        from ..evaluation.loop import EvaluationPlan, run_evaluation

        spec = spec or model.spec
        kind = self.profile.kind_of(key)
        dm = self.test_datamodule(key)
        needs_scan = any(p in SCAN_PROTOCOLS for p in protocols)
        uses_lm = any(i in ("lm68", "lm5") for i in spec.inputs)
        plan = EvaluationPlan(
            protocols=protocols, inputs=tuple(spec.inputs), owner=name or spec.name,
            landmark_source=self.landmark_source(landmarks) if uses_lm else None,
            targets=lambda b: synthetic_targets(b, kind, dm.facemodel, self.profile.scan_stride, needs_scan))
        test = dm.datasets["test"]
        if gallery is not None and self.profile.gallery:
            plan.capture = tuple(self.gallery_ids(key))
        accelerator = "gpu" if torch.cuda.is_available() and self.accelerator != "cpu" else "cpu"
        results, n, _ = run_evaluation(model, test, plan, batch_size=self.profile.test_sets[key].batch_size,
                                       accelerator=accelerator, devices=1)
        if gallery is not None and plan.capture:
            from ..evaluation.gallery import gallery_record, save_gallery

            save_gallery(gallery, gallery_record(name or spec.name, self.profile.dataset_name(key), plan.captured,
                                                 plan.capture))
        return results, n

    def gallery_ids(self, key: str) -> list[str]:
        """The fixed test samples every method on test set ``key`` shows in the report's
        gallery: the first ``profile.gallery`` ids of the test set."""
        if key not in self._gallery_ids:
            test = self.test_datamodule(key).datasets["test"]
            self._gallery_ids[key] = [str(test[i].sample_id) for i in range(min(self.profile.gallery, len(test)))]
        return self._gallery_ids[key]


def finish_wandb(loggers: list) -> None:
    """End the wandb run of a training run, so the next method's training gets its own run
    (otherwise wandb reuses the one in progress)."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            try:
                lg.experiment.finish()
            except Exception:  # a logging back-end failing at the end never fails the benchmark
                pass


def _source_name(spec: Any) -> str:
    return next(iter(spec)) if isinstance(spec, dict) else str(spec)


#: protocols that score against a scan (``Sample.scan_vertices``)
SCAN_PROTOCOLS = ("micc", "now", "now_metrical")
