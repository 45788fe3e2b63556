"""IdNet: a small identity encoder the framework trains itself on synthetic identities.

No face-recognition weights ship with benchmark3dface, so methods whose loss needs an identity
network (Deng'19's perceptual loss, WM3DR's perception loss) can use IdNet: a timm backbone
(resnet18 by default) on 5-point-aligned crops (the ArcFace template scaled to ``input_size``:
64 px by default so that it trains in minutes on a CPU; 112 like ArcFace in config), a linear +
BatchNorm neck to a 128-d embedding, trained with a margin-based softmax (CosFace, Wang et al.
2018: ``s (cos theta_y - m)``; or ArcFace, Deng et al. 2019: ``s cos(theta_y + m)``) over the
identities of the synthetic engine (``mode="set"``: every sample is a set of images of one
identity under different expressions, poses, lights, backgrounds and occluders).

Training is cached: :func:`load_or_train_idnet` keys the weights by a hash of the
:class:`IdNetConfig` under ``$B3F_CACHE_DIR/idnet`` (default ``~/.cache/benchmark3dface/idnet``),
so a benchmark run trains it once. Verification accuracy on held-out identities (the test
split's identity pool, disjoint from training; threshold chosen on the val split) is stored
with the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training.weights import load_weights_file

from .align import warp_to_template
from .base import IdentityEncoder

#: bump when the training recipe changes in a way that invalidates cached weights
IDNET_FORMAT_VERSION = 1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
MARGINS = ("cosface", "arcface")


@dataclass(frozen=True)
class IdNetConfig:
    """Everything that decides the trained IdNet (its hash is the cache key).

    Attributes:
        backbone: timm model name (no pretrained weights are used).
        embedding_dim: output size. input_size: aligned crop side (px).
        identities: training identities (the synthetic train pool size = number of classes).
        sets / set_size: training samples = ``sets`` identity sets of ``set_size`` images.
        epochs, batch_size, lr, weight_decay: AdamW schedule (cosine decay to 0).
        margin: ``cosface`` | ``arcface``; scale / margin_value: ``s`` and ``m``.
        render_size: side of the synthetic renders before alignment.
        synth: overrides of the synthetic engine config (``SynthConfig`` field names).
        eval_sets: val / test identity sets used for the verification report.
        facemodel / facemodel_path: the morphable model of the synthetic faces.
        seed: dataset and initialisation seed.
    """

    backbone: str = "resnet18"
    embedding_dim: int = 128
    input_size: int = 64
    identities: int = 300
    sets: int = 600
    set_size: int = 4
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    margin: str = "cosface"
    scale: float = 16.0
    margin_value: float = 0.2
    render_size: int = 96
    synth: dict[str, Any] = field(default_factory=lambda: {"yaw_max": 60.0, "occlusion_prob": 0.15})
    eval_sets: int = 100
    facemodel: str = "procedural"
    facemodel_path: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.margin not in MARGINS:
            raise ValueError(f"IdNet margin must be one of {MARGINS}, got {self.margin!r}")
        for name in ("embedding_dim", "input_size", "identities", "sets", "set_size", "epochs", "batch_size",
                     "render_size", "eval_sets"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"IdNet config: {name} must be >= 1, got {getattr(self, name)}")
        if self.set_size < 2:
            raise ValueError("IdNet config: set_size must be >= 2 (verification needs same-identity pairs)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Short hash of the config (and the recipe version): the cache key."""
        text = json.dumps({"v": IDNET_FORMAT_VERSION, **self.to_dict()}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class IdNet(IdentityEncoder):
    """timm backbone + linear/BN neck -> ``embedding_dim`` (see module docstring)."""

    def __init__(self, backbone: str = "resnet18", embedding_dim: int = 128, input_size: int = 112) -> None:
        super().__init__(input_size=input_size)
        self.embedding_dim = int(embedding_dim)
        self.backbone_name = backbone
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.neck = nn.Sequential(nn.Linear(self.backbone.num_features, self.embedding_dim, bias=False),
                                  nn.BatchNorm1d(self.embedding_dim))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg: IdNetConfig) -> "IdNet":
        return cls(cfg.backbone, cfg.embedding_dim, cfg.input_size)

    def normalize_input(self, crops: Tensor) -> Tensor:
        return (crops - self.mean.to(crops)) / self.std.to(crops)

    def embed(self, x: Tensor) -> Tensor:
        return self.neck(self.backbone(x))


class MarginSoftmax(nn.Module):
    """Margin-based softmax head: normalised class weights, logits ``s cos`` with the target
    logit replaced by ``s (cos - m)`` (CosFace) or ``s cos(theta + m)`` (ArcFace)."""

    def __init__(self, num_classes: int, dim: int, kind: str = "cosface", scale: float = 30.0,
                 margin: float = 0.35) -> None:
        super().__init__()
        if kind not in MARGINS:
            raise ValueError(f"margin kind must be one of {MARGINS}, got {kind!r}")
        self.kind, self.scale, self.margin = kind, float(scale), float(margin)
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        """(B, D) embeddings (any norm), (B,) labels -> (B, C) logits."""
        cos = F.linear(F.normalize(emb, dim=-1), F.normalize(self.weight, dim=-1)).clamp(-1 + 1e-6, 1 - 1e-6)
        onehot = F.one_hot(labels.long(), cos.shape[1]).to(cos.dtype)
        if self.kind == "cosface":
            target = cos - self.margin
        else:
            theta = torch.acos(cos)
            target = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin), cos - self.margin * math.sin(self.margin))
        return self.scale * (onehot * target + (1 - onehot) * cos)


# ====================================================================== data
def identity_crops(cfg: IdNetConfig, split: str, sets: int, seed_offset: int = 0,
                   facemodel: Any = None) -> tuple[Tensor, Tensor]:
    """Render ``sets`` synthetic identity sets of ``split`` and align them like IdNet's input.

    ``facemodel``: a ``MorphableModel`` instance overriding ``cfg.facemodel`` (tests).

    Returns:
        crops (N, 3, input_size, input_size) uint8 and labels (N,) long (global identity ids;
        train ids are 0 .. identities-1), N = sets x set_size.
    """
    from ..data.synthetic.config import SynthConfig
    from ..data.synthetic.dataset import SyntheticFaceDataset
    from .align import template_for

    synth = SynthConfig.from_dict({**cfg.synth, "mode": "set", "set_size": cfg.set_size,
                                   "image_size": cfg.render_size, "train_identities": cfg.identities,
                                   "val_identities": max(cfg.eval_sets, 2), "test_identities": max(cfg.eval_sets, 2),
                                   "return_vertices": False})
    ds = SyntheticFaceDataset(synth, split=split, size=sets, seed=cfg.seed + seed_offset,
                              facemodel=facemodel if facemodel is not None else cfg.facemodel,
                              facemodel_path=cfg.facemodel_path)
    tpl = template_for(cfg.input_size)
    crops, labels = [], []
    for i in range(sets):
        s = ds[i]
        lm5 = s.lm5 if s.lm5 is not None else None
        with torch.no_grad():
            c = warp_to_template(s.image, lm5, tpl, cfg.input_size) if lm5 is not None else \
                F.interpolate(s.image, size=(cfg.input_size,) * 2, mode="bilinear", antialias=True)
        crops.append((c.clamp(0, 1) * 255).round().to(torch.uint8))
        labels.append(torch.full((c.shape[0],), int(s.identity), dtype=torch.long))
    return torch.cat(crops), torch.cat(labels)


# ====================================================================== verification
@torch.no_grad()
def embed_crops(model: IdNet, crops: Tensor, batch_size: int = 128) -> Tensor:
    """Unit embeddings of uint8 (or [0, 1] float) aligned crops, model in eval mode."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, crops.shape[0], batch_size):
        x = crops[i:i + batch_size].to(dev)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        out.append(F.normalize(model.embed(model.normalize_input(x)).float(), dim=-1).cpu())
    model.train(was)
    return torch.cat(out)


def pair_scores(emb: Tensor, labels: Tensor, max_negatives_per_positive: int = 4,
                seed: int = 0) -> tuple[Tensor, Tensor]:
    """Cosine similarities of all same-identity pairs and a random sample of different-identity
    pairs (``max_negatives_per_positive`` x as many). Returns (scores (P,), same (P,) bool)."""
    n = emb.shape[0]
    iu = torch.triu_indices(n, n, 1)
    same = labels[iu[0]] == labels[iu[1]]
    pos = iu[:, same]
    neg = iu[:, ~same]
    g = torch.Generator().manual_seed(seed)
    k = min(neg.shape[1], max_negatives_per_positive * max(pos.shape[1], 1))
    neg = neg[:, torch.randperm(neg.shape[1], generator=g)[:k]]
    pairs = torch.cat([pos, neg], 1)
    scores = (emb[pairs[0]] * emb[pairs[1]]).sum(-1)
    return scores, torch.cat([torch.ones(pos.shape[1], dtype=torch.bool), torch.zeros(k, dtype=torch.bool)])


def best_threshold(scores: Tensor, same: Tensor) -> tuple[float, float]:
    """Threshold maximising the balanced accuracy (mean of the true-positive and true-negative
    rates) of ``score > threshold``; returns (threshold, balanced accuracy)."""
    order = torch.argsort(scores)
    s, y = scores[order], same[order].float()
    npos, nneg = y.sum().clamp_min(1), (1 - y).sum().clamp_min(1)
    # threshold just above s[i]: negatives at <= i rejected correctly, positives at > i accepted
    tn = torch.cumsum(1 - y, 0)
    tp = npos - torch.cumsum(y, 0)
    bacc = 0.5 * (tp / npos + tn / nneg)
    i = int(torch.argmax(bacc))
    thr = float(s[i] + (s[i + 1] - s[i]) / 2) if i + 1 < len(s) else float(s[i]) + 1e-6
    return thr, float(bacc[i])


def balanced_accuracy(scores: Tensor, same: Tensor, threshold: float) -> float:
    pred = scores > threshold
    tpr = (pred & same).sum() / same.sum().clamp_min(1)
    tnr = (~pred & ~same).sum() / (~same).sum().clamp_min(1)
    return float(0.5 * (tpr + tnr))


def roc_auc(scores: Tensor, same: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    ranks = torch.empty_like(scores, dtype=torch.float64)
    order = torch.argsort(scores)
    _, inv, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    ranks[order] = (ends - (counts.double() - 1) / 2)[inv]  # average 1-based rank of each tie group
    npos, nneg = int(same.sum()), int((~same).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    return float((ranks[same].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def verification_report(model: IdNet, val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> dict[str, float]:
    """Verification on held-out identities: the threshold is fitted on ``val`` pairs and the
    balanced accuracy reported on ``test`` pairs (identities of the two splits are disjoint
    from each other and from training). Chance is 0.5."""
    sv, yv = pair_scores(embed_crops(model, val[0]), val[1])
    st, yt = pair_scores(embed_crops(model, test[0]), test[1])
    thr, _ = best_threshold(sv, yv)
    return {"threshold": thr, "accuracy": balanced_accuracy(st, yt, thr), "auc": roc_auc(st, yt),
            "test_pairs": int(yt.numel()), "test_positive_pairs": int(yt.sum())}


# ====================================================================== training
def train_idnet(cfg: IdNetConfig | None = None, device: str | torch.device = "cpu",
                log: Callable[[str], None] | None = print,
                data: dict[str, tuple[Tensor, Tensor]] | None = None) -> tuple[IdNet, dict[str, Any]]:
    """Train an IdNet from scratch on synthetic identity sets.

    Args:
        cfg: the recipe (default :class:`IdNetConfig`).
        device: where to train.
        log: progress printer (None = silent).
        data: optional pre-rendered ``{"train": (crops, labels), "val": ..., "test": ...}``
            (as from :func:`identity_crops`); rendered from ``cfg`` when missing.
    Returns:
        (the trained model in eval mode on the CPU, a report dict: config, losses per epoch,
        verification of the untrained and trained net, timings).
    """
    cfg = cfg or IdNetConfig()
    say = log or (lambda _m: None)
    t0 = time.time()
    data = dict(data or {})
    if "train" not in data:
        say(f"[idnet] rendering {cfg.sets} x {cfg.set_size} training images of {cfg.identities} identities")
        data["train"] = identity_crops(cfg, "train", cfg.sets)
    for split in ("val", "test"):
        if split not in data:
            data[split] = identity_crops(cfg, split, cfg.eval_sets)
    t_data = time.time() - t0
    torch.manual_seed(cfg.seed)
    model = IdNet.from_config(cfg).to(device)
    before = verification_report(model, data["val"], data["test"])
    crops, labels = data["train"]
    classes = int(labels.max()) + 1
    head = MarginSoftmax(classes, cfg.embedding_dim, cfg.margin, cfg.scale, cfg.margin_value).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = crops.shape[0]
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    model.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        run, acc = 0.0, 0.0
        for k in range(steps_per_epoch):
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            x = crops[idx].to(device).float() / 255.0
            flip = torch.rand(x.shape[0], generator=g) < 0.5  # mirror augmentation (same identity class)
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
            y = labels[idx].to(device)
            emb = model.embed(model.normalize_input(x))
            logits = head(emb, y)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(loss.detach())
            with torch.no_grad():  # classification accuracy without the margin
                cos = F.linear(F.normalize(emb, dim=-1), F.normalize(head.weight, dim=-1))
                acc += float((cos.argmax(1) == y).float().mean())
        losses.append(run / steps_per_epoch)
        say(f"[idnet] epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.3f} train-acc {acc / steps_per_epoch:.3f}")
    model.eval()
    after = verification_report(model, data["val"], data["test"])
    say(f"[idnet] verification on held-out identities: accuracy {after['accuracy']:.3f} (untrained "
        f"{before['accuracy']:.3f}), AUC {after['auc']:.3f}")
    model = model.cpu()
    report = {"config": cfg.to_dict(), "key": cfg.key(), "classes": classes, "epoch_losses": losses,
              "verification_untrained": before, "verification": after,
              "seconds_data": t_data, "seconds_total": time.time() - t0}
    return model, report


# ====================================================================== cache
def cache_dir() -> Path:
    """``$B3F_CACHE_DIR`` or ``~/.cache/benchmark3dface``."""
    root = os.environ.get("B3F_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "benchmark3dface"


def idnet_cache_path(cfg: IdNetConfig) -> Path:
    return cache_dir() / "idnet" / f"idnet-{cfg.key()}.pt"


def save_idnet(model: IdNet, report: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "report": report}, tmp)
    tmp.replace(p)  # atomic: concurrent readers never see a partial file
    return p


def load_idnet(path: str | Path) -> tuple[IdNet, dict[str, Any]]:
    """Load a saved IdNet (weights + its report, which holds the config)."""
    p = Path(path).expanduser()
    blob = load_weights_file(p, "IdNet weights", "train them with `b3f idnet train` (or train_idnet / load_or_train_idnet)")
    if not isinstance(blob, dict) or "state_dict" not in blob or "report" not in blob:
        raise ValueError(f"{p}: not an IdNet file (expected keys 'state_dict' and 'report')")
    cfg_d = dict(blob["report"]["config"])
    cfg = IdNetConfig(**cfg_d)
    model = IdNet.from_config(cfg)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob["report"]


def cached_idnet(cfg: IdNetConfig | None = None) -> tuple[IdNet, dict[str, Any]] | None:
    """The cached IdNet of ``cfg``, or None when it has not been trained yet."""
    p = idnet_cache_path(cfg or IdNetConfig())
    return load_idnet(p) if p.is_file() else None


def load_or_train_idnet(cfg: IdNetConfig | None = None, retrain: bool = False, device: str = "cpu",
                        log: Callable[[str], None] | None = print) -> tuple[IdNet, dict[str, Any], Path]:
    """The IdNet of ``cfg`` from the cache, trained (and cached) first when missing."""
    cfg = cfg or IdNetConfig()
    path = idnet_cache_path(cfg)
    if path.is_file() and not retrain:
        model, report = load_idnet(path)
        return model, report, path
    model, report = train_idnet(cfg, device=device, log=log)
    save_idnet(model, report, path)
    if log:
        log(f"[idnet] saved {path}")
    return model, report, path


def config_with(cfg: IdNetConfig | None = None, **overrides: Any) -> IdNetConfig:
    """``cfg`` with the non-None ``overrides`` applied."""
    return replace(cfg or IdNetConfig(), **{k: v for k, v in overrides.items() if v is not None})
