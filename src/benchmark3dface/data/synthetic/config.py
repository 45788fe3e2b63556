"""Configuration of the synthetic face engine (one flat dataclass, YAML/JSON friendly).

Angles are in degrees here (user-facing config); the engine converts to radians.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MODES = ("single", "set", "multiview", "multiface")
PROJECTIONS = ("perspective", "weak_perspective")
BACKGROUNDS = ("plain", "noise", "gradient", "texture", "faces")
OCCLUDERS = ("bar", "glasses", "hand")
#: yaw distributions (``scene.sample_angles``): AFLW2000-3D's |yaw| histogram, or uniform.
POSE_PRIORS = ("aflw2000", "uniform")
#: the image model of the face's shading (``SynthConfig.shading``)
SHADINGS = ("sh2", "lambertian_sh1")
#: options added after test sets were published, at the value that gives the very samples made
#: before they existed: a test set's identity (``BenchmarkProfile.test_config``) leaves them out
#: at that value, so stored leaderboard runs stay valid
ADDED_OFF = {"shading": "sh2"}

#: Named starting points: the settings each seed method trains on.
PRESETS: dict[str, dict[str, Any]] = {
    "deng": {"mode": "single", "image_size": 224},
    "cnet": {"mode": "set", "image_size": 224, "set_size": 5},
    "dfmvr": {"mode": "multiview", "image_size": 224, "view_yaw": 30.0},
    "wm3dr": {"mode": "multiface", "image_size": 512},
    "gao": {"mode": "single", "image_size": 224, "labelled_fraction": 0.3},
    "richardson": {"mode": "single", "image_size": 200, "projection": "weak_perspective",
                   "grayscale": True},
}


@dataclass
class SynthConfig:
    """Everything that decides what a synthetic sample looks like (besides seed/split/index).

    Attributes:
        mode: ``single`` | ``set`` | ``multiview`` | ``multiface`` (the ``Sample.kind``).
        image_size: square image side in pixels; ``None`` = 224 (512 for multiface).
        projection: ``perspective`` (Deng's camera, rescaled to ``image_size``; multiface uses
            the global camera f = 1015 px) or ``weak_perspective`` (Richardson/Gao; single, set
            and multiview only).
        grayscale: replicate the luminance to the three channels (Richardson's CoarseNet).
        train_identities / val_identities / test_identities: identity pool sizes; pools are
            disjoint (see ``seeding``).
        identity_seed: seed of the identity id -> (identity, albedo) coefficient map.
        id_std / tex_std / exp_std: standard deviations of the model-prior coefficients
            (``exp_std`` scales the blendshape weights of a ``unit_interval`` model).
        yaw_max / pitch_max / roll_max: pose ranges, degrees (yaw up to +-90); pitch and roll
            are uniform within +-``pitch_max`` / +-``roll_max``, the yaw follows ``pose_prior``
            within +-``yaw_max``.
        pose_prior: the yaw distribution. ``aflw2000`` (default): a random sign times a
            piecewise-uniform |yaw| with AFLW2000-3D's 10-degree bin masses (0-30 / 30-60 / 60-90
            degrees: 65.6 / 19.2 / 15.2 %; ``scene.AFLW2000_ABS_YAW_COUNTS``, docs/data.md),
            truncated to ``yaw_max``. ``uniform``: uniform within +-``yaw_max`` (the earlier
            default; with ``yaw_max`` 90 the ``hard`` variant, half of it beyond 45 degrees).
            Both priors draw the same random numbers: a seed's samples differ only in the yaws
            (and what follows from them: translation, image, landmarks); multiview samples'
            yaws are ``view_yaw``/``view_yaws``, only their background faces follow the prior.
        align_shift: std of the crop-centre jitter around Deng's 5-point alignment, as a
            fraction of ``image_size``; align_scale: std of the log-scale jitter.
        set_size: images per identity set (mode ``set``).
        view_yaw: multiview yaw of the side views in degrees (views: -yaw, 0, +yaw); ``None``
            draws it uniformly from ``view_yaw_range`` per sample.
        view_yaws: multiview only: the three views' yaws ``(left, front, right)`` in degrees,
            e.g. ``(-45, 0, 30)``; overrides ``view_yaw`` (``(-y, 0, y)`` gives the same samples
            as ``view_yaw=y``). ``None`` (default): ``view_yaw`` decides.
        min_faces / max_faces: face count range of a multiface image.
        face_scale_range: multiface face size range, as the side (px) of the Deng crop that
            would hold the face (log-uniform); the face spans about 0.8 of it.
        max_overlap: largest IoU between two faces' boxes in a multiface image.
        ambient_range: SH DC irradiance range (before albedo); directional_max: strongest
            first-order (directional) SH term; light_tint: std of the per-channel colour shift.
        shading: the image model of the face. ``sh2`` (default): albedo x second-order SH
            irradiance with a colour tint (Deng's model), shaded at the vertices (Gouraud).
            ``lambertian_sh1``: albedo x first-order, achromatic SH irradiance of the
            interpolated normal, shaded per pixel (Phong): the Lambertian image model of
            shape-from-shading methods (Richardson'17 Eq. 8). The second-order terms and the
            tint are dropped after they are drawn, so a seed's samples differ only in the
            face's shading.
        backgrounds / background_weights: background kinds and their probabilities.
        occlusion_prob: chance that a face gets an occluder; occluders: kinds to draw from.
        noise_max: largest std of the additive Gaussian pixel noise ([0, 1] units).
        blur_prob / blur_sigma_max: Gaussian blur chance and largest sigma (px).
        jpeg_prob / jpeg_quality_min: JPEG re-encoding chance and lowest quality (max 95).
        labelled_fraction: share of labelled samples (semi-supervised training); unlabelled
            samples carry only the image, detected-style landmarks and the identity label.
        landmark_noise: std of the detected-style landmark noise on unlabelled samples, as a
            fraction of the face size (the distance between eye centres and mouth centre x 3).
        detail_amplitude: fine detail beyond the model's span, in mm (0 = off, the default,
            and then samples are exactly those without the option): a smooth random field of
            bumps and wrinkles, fixed per identity (like its coefficients), displaces every GT
            face along its model-frame vertex normals by at most this much. It is part of the
            GT mesh (``vertices``, ``vertices_cam``), the rendered image, depth, masks and
            landmarks; the GT coefficients stay the model's (the detail is what no coefficient
            can express: what a shape-from-shading refinement has to recover).
        label_noise_std: noisy shape labels for semi-supervised training, the standard
            deviation of Gaussian noise (model-prior units: coefficients ~ N(0, 1)) added to
            the identity and expression coefficients of the *labelled* samples of the
            ``train`` split, like a fitted 3DMM (300W-LP style). ``coeffs`` and the GT meshes
            (``vertices``, ``vertices_cam``, decoded from the noisy coefficients) carry the
            noise; the image, landmarks, depth and masks stay exact. ``val`` / ``test`` keep the
            exact labels (the protocols score against them). 0 (default): exact labels.
        return_topology: include the model's triangles in every sample.
    """

    mode: str = "single"
    image_size: int | None = None
    projection: str = "perspective"
    grayscale: bool = False
    train_identities: int = 10000
    val_identities: int = 500
    test_identities: int = 500
    identity_seed: int = 0
    id_std: float = 1.0
    tex_std: float = 1.0
    exp_std: float = 0.6
    yaw_max: float = 90.0
    pitch_max: float = 25.0
    roll_max: float = 20.0
    pose_prior: str = "aflw2000"
    align_shift: float = 0.02
    align_scale: float = 0.05
    set_size: int = 5
    view_yaw: float | None = 30.0
    view_yaw_range: tuple[float, float] = (10.0, 45.0)
    view_yaws: tuple[float, float, float] | None = None
    min_faces: int = 1
    max_faces: int = 10
    face_scale_range: tuple[float, float] = (48.0, 300.0)
    max_overlap: float = 0.1
    ambient_range: tuple[float, float] = (0.45, 1.0)
    directional_max: float = 0.5
    light_tint: float = 0.04
    shading: str = "sh2"
    backgrounds: tuple[str, ...] = BACKGROUNDS
    background_weights: tuple[float, ...] | None = None
    occlusion_prob: float = 0.3
    occluders: tuple[str, ...] = OCCLUDERS
    noise_max: float = 0.03
    blur_prob: float = 0.3
    blur_sigma_max: float = 1.2
    jpeg_prob: float = 0.3
    jpeg_quality_min: int = 30
    labelled_fraction: float = 1.0
    landmark_noise: float = 0.01
    detail_amplitude: float = 0.0
    label_noise_std: float = 0.0
    return_vertices: bool = True
    return_topology: bool = False

    def __post_init__(self) -> None:
        for name in ("view_yaw_range", "face_scale_range", "ambient_range", "backgrounds",
                     "occluders"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.background_weights is not None:
            self.background_weights = tuple(float(w) for w in self.background_weights)
        if self.view_yaws is not None:
            self.view_yaws = tuple(float(y) for y in self.view_yaws)
        if self.image_size is None:
            self.image_size = 512 if self.mode == "multiface" else 224
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"synthetic config: {msg}")

        if self.mode not in MODES:
            bad(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.projection not in PROJECTIONS:
            bad(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.projection == "weak_perspective" and self.mode == "multiface":
            bad("multiface images use the global perspective camera; weak_perspective is for "
                "single/set/multiview")
        if int(self.image_size) < 16:
            bad(f"image_size must be >= 16 px, got {self.image_size}")
        self.image_size = int(self.image_size)
        for name in ("train_identities", "val_identities", "test_identities"):
            if not 1 <= getattr(self, name) < 1_000_000:
                bad(f"{name} must be in [1, 1e6), got {getattr(self, name)}")
        for name in ("yaw_max", "pitch_max", "roll_max"):
            if not 0.0 <= getattr(self, name) <= 90.0:
                bad(f"{name} must be within [0, 90] degrees, got {getattr(self, name)}")
        if self.shading not in SHADINGS:
            bad(f"shading must be one of {SHADINGS}, got {self.shading!r}")
        if self.pose_prior not in POSE_PRIORS:
            bad(f"pose_prior must be one of {POSE_PRIORS}, got {self.pose_prior!r}")
        if self.set_size < 1:
            bad(f"set_size must be >= 1, got {self.set_size}")
        if self.view_yaw is not None and not 0.0 <= self.view_yaw <= 90.0:
            bad(f"view_yaw must be within [0, 90] degrees or None, got {self.view_yaw}")
        lo, hi = self.view_yaw_range
        if not 0.0 <= lo <= hi <= 90.0:
            bad(f"view_yaw_range must satisfy 0 <= lo <= hi <= 90, got {self.view_yaw_range}")
        if self.view_yaws is not None:
            if len(self.view_yaws) != 3 or not all(-90.0 <= y <= 90.0 for y in self.view_yaws):
                bad(f"view_yaws must be three yaws (left, front, right) within [-90, 90] degrees, "
                    f"got {self.view_yaws}")
            if self.mode != "multiview":
                bad(f"view_yaws is for mode 'multiview' (three views), got mode {self.mode!r}")
        if not 1 <= self.min_faces <= self.max_faces <= 64:
            bad(f"need 1 <= min_faces <= max_faces <= 64, got {self.min_faces}, {self.max_faces}")
        lo, hi = self.face_scale_range
        if not 8.0 <= lo <= hi:
            bad(f"face_scale_range must satisfy 8 <= lo <= hi, got {self.face_scale_range}")
        if not 0.0 <= self.max_overlap < 1.0:
            bad(f"max_overlap must be in [0, 1), got {self.max_overlap}")
        lo, hi = self.ambient_range
        if not 0.0 <= lo <= hi:
            bad(f"ambient_range must satisfy 0 <= lo <= hi, got {self.ambient_range}")
        unknown = [b for b in self.backgrounds if b not in BACKGROUNDS]
        if unknown or not self.backgrounds:
            bad(f"backgrounds must be a non-empty subset of {BACKGROUNDS}, got {self.backgrounds}")
        if self.background_weights is not None:
            w = self.background_weights
            if len(w) != len(self.backgrounds) or min(w) < 0 or sum(w) <= 0:
                bad(f"background_weights must be {len(self.backgrounds)} non-negative numbers "
                    f"with a positive sum, got {w}")
        unknown = [o for o in self.occluders if o not in OCCLUDERS]
        if unknown or not self.occluders:
            bad(f"occluders must be a non-empty subset of {OCCLUDERS}, got {self.occluders}")
        for name in ("occlusion_prob", "blur_prob", "jpeg_prob", "labelled_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("noise_max", "blur_sigma_max", "landmark_noise", "align_shift",
                     "align_scale", "id_std", "tex_std", "exp_std", "directional_max",
                     "light_tint", "detail_amplitude", "label_noise_std"):
            if not getattr(self, name) >= 0.0:
                bad(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("detail_amplitude", "label_noise_std"):
            if not getattr(self, name) < float("inf"):
                bad(f"{name} must be finite, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality_min <= 95:
            bad(f"jpeg_quality_min must be in [1, 95], got {self.jpeg_quality_min}")

    # ------------------------------------------------------------------ helpers
    @property
    def views(self) -> int:
        """Images per sample: 1, ``set_size`` or 3 (multiface: 1 image)."""
        return {"single": 1, "set": self.set_size, "multiview": 3, "multiface": 1}[self.mode]

    def num_identities(self, split: str) -> int:
        return int(getattr(self, f"{split}_identities"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None, **overrides: Any) -> "SynthConfig":
        """Build from a dict (e.g. a manifest or YAML ``options``); unknown keys are an error.

        A ``preset`` key (see :data:`PRESETS`) supplies defaults that the other keys override.
        """
        merged = dict(data or {})
        merged.update(overrides)
        preset = merged.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}")
            merged = {**PRESETS[preset], **merged}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - names)
        if unknown:
            raise ValueError(f"unknown synthetic config keys {unknown}; valid keys: {sorted(names)}")
        return cls(**merged)


def default_config(**kwargs: Any) -> SynthConfig:
    return SynthConfig.from_dict(kwargs)


__all__ = ["BACKGROUNDS", "MODES", "OCCLUDERS", "POSE_PRIORS", "PRESETS", "PROJECTIONS", "SynthConfig",
           "default_config"]
