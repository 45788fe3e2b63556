"""The one evaluation path: dataset -> input-only view -> method -> Reconstruction -> protocols.

``b3f benchmark``, ``b3f evaluate`` and ``ReconstructionMethod.test_step`` all score through
:func:`evaluate_batch`; :func:`run_evaluation` drives it with a Lightning ``Trainer.test`` so the
same code runs on one process or under DDP (N processes give the same per-sample values as 1:
every protocol keeps per-sample records that are gathered and de-duplicated by sample id).

Per batch:
1. samples the reader could not read (``batch.skipped``) are recorded as failures of every
   protocol (never silently dropped);
2. the landmark source (evaluation/landmarks.py) runs when the method declares ``lm68``/``lm5``;
   a sample whose face it misses is a failure ("no face detected") and the method never sees it;
3. the method's ``reconstruct`` gets an :class:`~.inputs.InputView` (declared inputs only);
   a method error on a batch turns that batch's samples into counted failures (the run goes on;
   the message is kept), except reading ground truth, which stops the run;
4. protocols get the reconstructions and the full sample (plus derived targets); beside them
   the evaluation records each unit's ground-truth |yaw| (evaluation/yaw.py; methods never see
   it), stored with every protocol result for the per-yaw-bin boards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data.sample import Sample
from ..contracts import FaceReconstruction, Reconstruction
from .inputs import GroundTruthAccessError, input_view
from .landmarks import LandmarkSource
from .yaw import YAW_KEY

log = logging.getLogger("benchmark3dface.evaluation")

LANDMARK_INPUTS = ("lm68", "lm5")


@dataclass
class EvaluationPlan:
    """How one method is scored on one dataset.

    Attributes:
        protocols: protocol name -> options (see evaluation/protocols.py).
        inputs: the method's declared test-time inputs (``MethodSpec.inputs``).
        landmark_source: where ``lm68``/``lm5`` inputs come from (None: the method takes none).
        targets: batch -> what the protocols score against (default: the batch itself).
        owner: the method's name, for error messages.
    """

    protocols: dict[str, dict[str, Any]]
    inputs: tuple[str, ...] = ("image",)
    landmark_source: LandmarkSource | None = None
    targets: Callable[[Any], Any] | None = None
    owner: str = "the method"
    errors: list[str] = field(default_factory=list)
    #: sample ids whose reconstruction and sample are kept in ``captured`` (the report gallery)
    capture: tuple[str, ...] = ()
    captured: dict[str, tuple[Reconstruction, Sample]] = field(default_factory=dict)

    def build_metrics(self) -> dict[str, Any]:
        from .protocols import build

        return {name: build(name, **opts) for name, opts in self.protocols.items()}

    @property
    def needs_landmarks(self) -> bool:
        return any(i in LANDMARK_INPUTS for i in self.inputs)


def batch_ids(batch: Sample) -> list[str]:
    sid = batch.sample_id
    return [str(s) for s in sid] if isinstance(sid, list) else ([str(sid)] if sid != "" else [])


def select_rows(view: Sample, rows: list[int], n: int) -> Sample:
    """The rows ``rows`` of a collated batch view of ``n`` samples (tensor fields indexed on their
    first dimension, per-sample lists picked)."""
    idx = torch.as_tensor(rows, dtype=torch.long)
    values = {}
    for name, v in vars(view).items():
        if name.startswith("_"):
            continue
        if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == n:
            values[name] = v[idx.to(v.device)]
        elif isinstance(v, list) and len(v) == n:
            values[name] = [v[i] for i in rows]
        else:
            values[name] = v
    out = object.__new__(type(view))
    out.__dict__.update({k: v for k, v in vars(view).items() if k.startswith("_")})
    out.__dict__.update(values)
    return out


def _failed(sid: str, reason: str) -> Reconstruction:
    return Reconstruction(sid, [FaceReconstruction(None, None, failure=reason)])


def evaluate_batch(reconstruct: Callable[[Sample], list[Reconstruction]], batch: Sample, plan: EvaluationPlan,
                   metrics: dict[str, Any]) -> int:
    """Score one collated batch (see the module docstring); returns the number of samples seen."""
    for k, (path, reason) in enumerate(getattr(batch, "skipped", None) or []):
        sid = f"unreadable/{path}" if path else f"unreadable/{reason}/{id(batch)}-{k}"
        for m in metrics.values():
            m.record_failure([sid], f"unreadable sample ({reason}): {path}")
    ids = batch_ids(batch)
    if not ids:
        return 0
    n = len(ids)
    landmarks: dict[str, Any] = {}
    ok = [True] * n
    if plan.needs_landmarks:
        if plan.landmark_source is None:
            raise ValueError(f"{plan.owner} declares landmark inputs but the evaluation has no landmark source")
        landmarks = plan.landmark_source(batch)
        if landmarks.get("ok") is not None:
            flags = torch.as_tensor(landmarks["ok"]).reshape(n, -1).all(1)
            ok = [bool(x) for x in flags.tolist()]
    view = input_view(batch, plan.inputs, landmarks, owner=plan.owner)
    rows = [i for i in range(n) if ok[i]]
    recs: dict[str, Reconstruction] = {}
    if rows:
        sub = view if len(rows) == n else select_rows(view, rows, n)
        try:
            got = reconstruct(sub)
        except GroundTruthAccessError:
            raise
        except Exception as exc:  # a method failing on a batch: counted failures, run goes on
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            plan.errors.append(msg)
            log.warning("%s failed on a batch of %d sample(s): %s", plan.owner, len(rows), msg)
            got = [_failed(ids[i], f"method error: {msg}") for i in rows]
        for pos, r in zip(rows, got):
            recs[ids[pos]] = r if r.sample_id else Reconstruction(ids[pos], r.faces, r.per_view, r.extras)
    src = plan.landmark_source.name if plan.landmark_source is not None else ""
    out = [recs.get(sid) or _failed(sid, f"no landmarks from the landmark source ({src}): face not detected or not annotated") for sid in ids]
    target = plan.targets(batch) if plan.targets is not None else batch
    for m in metrics.values():
        m.update(out, target)
    if plan.capture:
        wanted = set(plan.capture)
        from ..metrics import as_samples

        for rec, s in zip(out, as_samples(batch)):
            if rec.sample_id in wanted:
                plan.captured[rec.sample_id] = (rec, s)
    return n


def default_plan(spec: Any, datamodule: Any, landmarks: Any = "detector") -> EvaluationPlan:
    """The plan ``b3f test`` uses when nothing was attached: the dataset's default protocols
    (synthetic data module -> the synthetic dataset's, reader data module -> its reader's),
    the detector landmark source, and the synthetic targets."""
    from .datasets import available_datasets, synthetic_targets
    from .landmarks import build_landmark_source
    from .protocols import applicable, available_protocols

    specs = available_datasets()
    reader = getattr(datamodule, "reader_name", None)
    kind = getattr(datamodule, "kind", None) or getattr(spec, "input_kind", "single")
    if reader is None and datamodule is not None and hasattr(datamodule, "facemodel"):
        ds = specs["synthetic"]
        provides = tuple(getattr(datamodule, "provides", ()) or ds.provides) + ("scan_vertices", "scan_landmarks7")
        fm = datamodule.facemodel
        protocols = [p for p in ds.protocols if applicable(p, provides)] if kind == "single" else ["true_error"]
        scan = any(p in ("micc", "now", "now_metrical") for p in protocols)
        targets = (lambda b: synthetic_targets(b, kind, fm, 1, scan))
    else:
        key = str(reader or "").lower().replace("-", "_")
        ds = specs.get(key)
        protocols = list(ds.protocols) if ds is not None else []
        targets = None
    known = available_protocols()
    protocols = [p for p in protocols if p in known]
    if not protocols:
        raise ValueError(f"no evaluation protocol is known for this data module ({type(datamodule).__name__}, "
                         f"reader {reader!r}); use `b3f evaluate --data NAME:ROOT` with a registered dataset")
    inputs = tuple(getattr(spec, "inputs", ("image",)))
    source = build_landmark_source(landmarks) if any(i in LANDMARK_INPUTS for i in inputs) else None
    return EvaluationPlan(protocols={p: {} for p in protocols}, inputs=inputs, landmark_source=source,
                          targets=targets, owner=getattr(spec, "name", "the method"))


# ============================================================================ Lightning driver
def _lightning():
    import lightning as L

    return L


class EvaluationModule(_lightning().LightningModule):
    """Wraps any object with ``reconstruct(view) -> list[Reconstruction]`` (a method, a mesh
    folder) for ``Trainer.test``; protocols live outside the module tree (no state dict)."""

    def __init__(self, predictor: Any, plan: EvaluationPlan) -> None:
        super().__init__()
        if isinstance(predictor, torch.nn.Module):
            self.predictor = predictor
        else:
            object.__setattr__(self, "predictor", predictor)
        self.plan = plan
        self.metrics: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.n_seen = 0
        self.yaw_recorder: Any = None

    def on_test_start(self) -> None:
        from .yaw import GtYawRecorder

        self.metrics = {k: m.to(self.device) for k, m in self.plan.build_metrics().items()}
        # the GT |yaw| of every unit, for the per-yaw-bin boards (evaluation/yaw.py)
        self.yaw_recorder = GtYawRecorder().to(self.device)
        self.n_seen = 0
        if isinstance(self.predictor, torch.nn.Module):
            self.predictor.eval()

    def test_step(self, batch: Sample, batch_idx: int) -> None:
        with torch.no_grad():
            metrics = self.metrics if self.yaw_recorder is None else {**self.metrics, YAW_KEY: self.yaw_recorder}
            self.n_seen += evaluate_batch(self.predictor.reconstruct, batch, self.plan, metrics)

    def on_test_epoch_end(self) -> None:
        from .yaw import attach_sample_yaw

        self.results = {name: m.compute() for name, m in self.metrics.items()}
        if self.yaw_recorder is not None:
            attach_sample_yaw(self.results, self.yaw_recorder.yaws())


def quiet_lightning() -> None:
    """Lightning's info lines (GPU available, LOCAL_RANK ...) out of the way of the tables --
    unless a run log already takes them (benchmark3dface.console.route_library_output)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        lg = logging.getLogger(name)
        if not any(isinstance(h, logging.FileHandler) for h in lg.handlers):
            lg.setLevel(logging.WARNING)


def run_evaluation(predictor: Any, dataset, plan: EvaluationPlan, batch_size: int = 16, num_workers: int = 0,
                   accelerator: str = "auto", devices: Any = 1, strategy: str = "auto",
                   num_nodes: int = 1) -> tuple[dict[str, Any], int, Any]:
    """Score ``predictor`` on ``dataset`` (a Dataset of Samples); returns (results by protocol,
    samples seen on this process, the trainer). Under DDP every process returns the same results
    (``trainer.is_global_zero`` tells which one should record them)."""
    import warnings

    from torch.utils.data import DataLoader

    from ..data.datamodules import SampleCollate

    L = _lightning()
    quiet_lightning()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=SampleCollate(fill_missing=True))
    module = EvaluationModule(predictor, plan)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, inference_mode=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*(DistributedSampler|distributed sampler).*")
        trainer.test(module, dataloaders=loader, verbose=False)
    return module.results, module.n_seen, trainer


__all__ = ["EvaluationModule", "EvaluationPlan", "default_plan", "evaluate_batch", "quiet_lightning", "run_evaluation", "select_rows"]
