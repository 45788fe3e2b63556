"""The report's gallery: a few fixed test samples, and per method what it made of them.

Input: the ``gallery.pt`` files the benchmark runner saves beside each run
(:mod:`benchmark3dface.evaluation.gallery`; ``<out>/<method>/<config hash[:12]>/gallery.pt``).
Output: one HTML section, self-contained (every picture an inline base64 PNG), with per
dataset one row per sample:

* the input image (with its sample id), then per method a panel of
  (a) the method's projected 68 landmarks (green) and the ground-truth ones (blue) drawn over
  the input image, (b) the reconstruction as a shaded grey mesh rendered with the project's
  rasterizer in the image's camera (the face's rotation / translation / camera dictionary;
  a frontal orthographic view when the face has no pose or camera), over the input image,
  (c) a per-vertex error heatmap: the prediction similarity-aligned to the GT mesh
  (:func:`~benchmark3dface.metrics.geometry.similarity_from_landmarks`, the true-error
  protocol's alignment), per-vertex distance in mm
  (:func:`~benchmark3dface.metrics.true_error.aligned_vertex_errors`), rendered frontally with
  a colour map;
* a colour bar in mm closing the row: one scale for every method of the sample, 0 to the
  largest per-vertex error any of them made there (at least ``MIN_SCALE_MM``).

A failed reconstruction shows its failure reason instead of the pictures. A gallery file that
cannot be read, or a sample that cannot be drawn, gives one line naming the file and the
problem (``GallerySet.problems``, listed in the section), never a traceback.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: colour map of the error heatmaps (matplotlib name)
COLORMAP = "viridis"
#: the colour bar's scale never goes below this (mm): numerical noise of a perfect prediction
#: (~1e-12 mm) must not fill the whole colour range
MIN_SCALE_MM = 0.01
#: light direction (view frame: x right, y up, z toward the viewer) of the grey shading
LIGHT = (0.25, 0.35, 1.0)
#: landmark colours (RGB): prediction, ground truth (as ``b3f reconstruct`` draws them)
PRED_COLOR = (0, 230, 0)
GT_COLOR = (40, 120, 255)
#: minimum side (px) of the landmark overlays (smaller inputs are upscaled so the dots show)
MIN_OVERLAY_PX = 128
#: side (px) range of the frontal heatmap renders (the input's larger side, clamped)
HEATMAP_PX = (128, 256)

GALLERY_CSS = """
.gallery-row { display: flex; flex-wrap: nowrap; gap: 10px; align-items: flex-start; overflow-x: auto;
               padding: 8px 0 12px; border-bottom: 1px solid var(--line); }
.gallery-input, .gallery-panel, .gallery-colorbar { margin: 0; flex: 0 0 auto; }
.gallery-row img { width: 150px; height: auto; display: block; border-radius: 3px; }
.gallery-colorbar figcaption { font-size: 11.5px; color: var(--muted); margin-bottom: 2px; }
.gallery-bar { display: flex; height: 150px; }
.gallery-row .gallery-bar img { width: 14px; height: 150px; image-rendering: pixelated; }
.gallery-ticks { position: relative; width: 48px; font-size: 11px; font-variant-numeric: tabular-nums; }
.gallery-ticks span { position: absolute; left: 4px; transform: translateY(-50%); white-space: nowrap; }
.gallery-panel { width: 150px; display: flex; flex-direction: column; gap: 4px; }
.gallery-method { font-weight: 600; font-size: 12.5px; overflow: hidden; text-overflow: ellipsis;
                  white-space: nowrap; }
.gallery-stats, .gallery-input figcaption, .gallery-note { color: var(--muted); font-size: 11.5px; }
.gallery-input figcaption { width: 150px; overflow-wrap: anywhere; }
.gallery-failure { width: 150px; min-height: 150px; padding: 8px; background: #fdf0f0;
                   border: 1px solid #e4b4b4; color: #8a1f1f; font-size: 12px; border-radius: 3px;
                   overflow-wrap: anywhere; }
.gallery-legend .gt { color: rgb(40,120,255); font-weight: 700; }
.gallery-legend .pred { color: rgb(0,150,0); font-weight: 700; }
"""


# ----------------------------------------------------------------------------------- loading
@dataclass
class GallerySet:
    """Gallery records (``evaluation.gallery`` format) with where each came from, and one line
    per problem met while reading or drawing them (``"<file>: <why>"``)."""

    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.problems)


def _check_record(rec: Any) -> str | None:
    """Why ``rec`` is not a gallery record, or None."""
    if not isinstance(rec, Mapping):
        return f"not a gallery record (a {type(rec).__name__}, expected a dict)"
    missing = [k for k in ("method", "dataset", "samples") if k not in rec]
    if missing:
        return f"not a gallery record (missing {', '.join(missing)})"
    if not isinstance(rec["samples"], list):
        return "not a gallery record ('samples' is not a list)"
    for k, s in enumerate(rec["samples"]):
        if not isinstance(s, Mapping) or "sample_id" not in s:
            return f"sample #{k} is not a dict with a 'sample_id'"
    return None


def load_galleries(sources: Iterable[Path | str | Mapping[str, Any]]) -> GallerySet:
    """Read gallery files (paths) or take records as they are; unreadable files and malformed
    records become one problem line each (naming the file) instead of an exception."""
    from ..evaluation.gallery import load_gallery

    out = GallerySet()
    for k, src in enumerate(sources):
        if isinstance(src, Mapping):
            label, rec = f"record #{k}", src
        else:
            label = str(src)
            path = Path(src)
            if not path.is_file():
                out.problems.append(f"{label}: no such file")
                continue
            try:
                rec = load_gallery(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is one reported line
                why = " ".join(str(exc).split())[:200] or type(exc).__name__
                out.problems.append(f"{label}: cannot read the gallery file ({type(exc).__name__}: {why})")
                continue
        why = _check_record(rec)
        if why:
            out.problems.append(f"{label}: {why}")
            continue
        out.records.append((label, dict(rec)))
    return out


def _run_dirs(run: Any) -> list[str]:
    """Candidate run-directory names of a stored run: its config hash[:12], then the hash of its
    config without the ``warnings`` the runner adds after naming the directory."""
    names = [str(run.config_hash)[:12]]
    config = getattr(run, "config", None)
    if isinstance(config, Mapping) and "warnings" in config:
        from .records import config_hash

        try:
            names.append(config_hash({k: v for k, v in config.items() if k != "warnings"})[:12])
        except ValueError:
            pass
    return names


def find_gallery_files(root: Path, runs: Iterable[Any]) -> list[Path]:
    """The ``gallery.pt`` files of ``runs`` (objects with ``method``, ``config_hash`` and
    optionally ``config``, e.g. leaderboard ``StoredRun``s), once each, in their order:
    ``root/<method>/<config hash[:12]>/gallery.pt`` (the benchmark runner's run directory; one per
    method and input kind). A method none of whose runs has its directory there gets its
    newest ``root/<method>/*/gallery.pt`` instead."""
    runs = list(runs)
    out: list[Path] = []
    found: set[str] = set()
    for run in runs:
        for name in _run_dirs(run):
            path = root / str(run.method) / name / "gallery.pt"
            if path.is_file():
                if path not in out:
                    out.append(path)
                found.add(str(run.method))
                break
    for run in runs:
        method = str(run.method)
        if method in found:
            continue
        found.add(method)
        newest = sorted((root / method).glob("*/gallery.pt"), key=lambda p: p.stat().st_mtime)
        if newest:
            out.append(newest[-1])
    return out


# --------------------------------------------------------------------------------- pictures
def png_data_uri(rgb: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an (H, W, 3) or (H, W, 4) uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) (or (1, H, W) grey) float in [0, 1] -> (H, W, 3) uint8."""
    img = image.detach().to("cpu", torch.float32).clamp(0, 1)
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"image must be (3, H, W), got {tuple(img.shape)}")
    return (img.expand(3, -1, -1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def landmark_overlay(image: np.ndarray, pred: Tensor | None, gt: Tensor | None) -> np.ndarray:
    """The image (H, W, 3 uint8) upscaled to at least ``MIN_OVERLAY_PX`` (integer factor) with
    the GT 68 landmarks (blue) and the predicted ones (green) drawn as dots; landmarks in
    image pixels (top-left origin, pixel centres at +0.5)."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    k = max(1, math.ceil(MIN_OVERLAY_PX / max(h, w)))
    im = Image.fromarray(image).resize((w * k, h * k), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    r = max(1.5, max(im.size) / 110)
    for pts, fill, outline in ((gt, GT_COLOR, (0, 0, 120)), (pred, PRED_COLOR, (0, 90, 0))):
        if pts is None:
            continue
        for x, y in pts.detach().to("cpu", torch.float64).reshape(-1, 2).numpy() * k - 0.5:
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline)
    return np.asarray(im)


def lambert(normals: Tensor) -> Tensor:
    """(N,) two-sided Lambert term in [0, 1] of unit view-frame vertex normals (N, 3) (x right,
    y up, z toward the viewer) under the fixed ``LIGHT`` direction."""
    light = torch.tensor(LIGHT, dtype=normals.dtype)
    return (normals @ (light / light.norm())).abs()


def posed_screen(sample: Mapping[str, Any], height: int, width: int) -> tuple[Tensor, Tensor, bool] | None:
    """The prediction in the input image's camera (docs/conventions.md): ``(screen (N, 3) =
    (u px, v px, depth), model -> view rotation (3, 3), orthographic)``, or None when the face
    has no rotation or no known camera kind. Perspective: ``R v + t`` projected with the face's
    camera (focal, principal point, distance); weak perspective: ``R v`` with its ``scale``
    (px/mm) and ``translation2d`` (px)."""
    from ..geometry.camera import WeakPerspectiveCamera, camera_kind, camera_principal, perspective_from_dict

    rot, cam = sample.get("rotation"), dict(sample.get("camera") or {})
    kind = camera_kind(cam)
    if rot is None or kind is None:
        return None
    rot = rot.to(torch.float32)
    rotated = sample["pred_vertices"].to(torch.float32) @ rot.T
    if kind == "perspective":
        t = sample.get("translation")
        world = rotated + (torch.zeros(3) if t is None else t.to(torch.float32).reshape(1, 3))
        return perspective_from_dict(cam, width, height).project(world), rot, False
    if "scale" not in cam:
        return None
    scale = torch.as_tensor(cam["scale"], dtype=torch.float32).reshape(-1)[0]
    t2 = torch.as_tensor(cam.get("translation2d", cam.get("translation", (0.0, 0.0))),
                         dtype=torch.float32).reshape(-1)[:2]
    weak = WeakPerspectiveCamera(width, height, camera_principal(cam))
    return weak.screen(rotated, scale, t2), rot, True


def frontal_screen(vertices: Tensor, size: int, frame: Tensor | None = None) -> Tensor:
    """Model-frame vertices (N, 3) mm seen from the front (+z), orthographic, scaled so the x/y
    box of ``frame`` (default: the vertices) fills 90 % of a ``size`` px square and centred on
    it: (N, 3) = (u px, v px, -z mm)."""
    from ..geometry.camera import WeakPerspectiveCamera

    box = (vertices if frame is None else frame).to(torch.float32)
    lo, hi = box[:, :2].amin(0), box[:, :2].amax(0)
    scale = 0.9 * size / float((hi - lo).max().clamp_min(1e-6))
    centre = (lo + hi) / 2
    return WeakPerspectiveCamera(size, size).screen(vertices.to(torch.float32), torch.tensor(scale), -scale * centre)


def render_colored(screen: Tensor, triangles: Tensor, size: tuple[int, int], colors: Tensor,
                   background: Tensor | float, orthographic: bool) -> np.ndarray:
    """(H, W, 3) uint8 render of a screen-space mesh (``render_passes``) with per-vertex colours
    (N, 3) in [0, 1] over ``background`` (a scalar or a (3, H, W) image)."""
    from ..render import render_passes

    bg = background if not isinstance(background, Tensor) else background.to(torch.float32)[None]
    out = render_passes(screen[None].to(torch.float32), triangles.to(torch.long), size, ("rgb",),
                        vertex_colors=colors[None].to(torch.float32), background=bg,
                        orthographic=orthographic)
    return image_uint8(out["rgb"][0])


def grey(shade: Tensor) -> Tensor:
    """(N,) Lambert term -> (N, 3) grey vertex colours."""
    g = 0.22 + 0.72 * shade
    return g[:, None].expand(-1, 3)


def aligned_errors(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The prediction (N, 3) similarity-aligned onto the GT mesh (N, 3, same topology, mm), the
    similarity's rotation (3, 3) and the per-vertex distances (N,) mm of the true-error
    protocol (``aligned_vertex_errors``)."""
    from ..metrics.geometry import apply_similarity, similarity_from_landmarks
    from ..metrics.true_error import aligned_vertex_errors

    p, g = pred.to(torch.float64)[None], gt.to(torch.float64)[None]
    s, r, t = similarity_from_landmarks(p, g)
    return apply_similarity(p, s, r, t)[0], r[0], aligned_vertex_errors(p, g)[0]


def heatmap_colors(errors: Tensor, vmax: float, shade: Tensor | None = None) -> Tensor:
    """(N,) errors mm -> (N, 3) colours of ``COLORMAP`` on [0, vmax], lightly shaded."""
    import matplotlib

    cmap = matplotlib.colormaps[COLORMAP]
    rgb = torch.from_numpy(cmap(np.clip(errors.detach().cpu().numpy() / vmax, 0.0, 1.0))[:, :3]).to(torch.float32)
    if shade is not None:
        rgb = rgb * (0.6 + 0.4 * shade.to(torch.float32))[:, None]
    return rgb


def colorbar_strip(height: int = 150, width: int = 14) -> np.ndarray:
    """A vertical ``COLORMAP`` strip (H, W, 3) uint8, the maximum at the top (the image part of
    a colour bar; its tick labels are HTML text)."""
    import matplotlib

    ramp = np.linspace(1.0, 0.0, height)
    rgb = (matplotlib.colormaps[COLORMAP](ramp)[:, :3] * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(rgb[:, None, :], width, axis=1)


def colorbar_html(vmax: float) -> str:
    """A colour bar 0..``vmax`` mm: the colour strip and five tick labels."""
    ticks = "".join(f'<span style="top:{100 * (1 - q):.0f}%">{vmax * q:.3g}</span>'
                    for q in (0.0, 0.25, 0.5, 0.75, 1.0))
    strip = _img(png_data_uri(colorbar_strip()), "gallery-colorbar-img", f"error scale 0-{vmax:.3g} mm")
    return (f'<figure class="gallery-colorbar" data-vmax-mm="{vmax:.6g}"><figcaption>mm</figcaption>'
            f'<div class="gallery-bar">{strip}<div class="gallery-ticks">{ticks}</div></div></figure>')


# ------------------------------------------------------------------------------------ HTML
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _img(uri: str, cls: str, alt: str) -> str:
    return f'<img class="{cls}" src="{uri}" alt="{_e(alt)}">'


@dataclass
class _Panel:
    method: str
    html: str
    failed: bool = False
    errors: Tensor | None = None  # per-vertex errors, mm (for the shared scale)
    aligned: Tensor | None = None  # the prediction aligned onto the GT, mm
    shade: Tensor | None = None  # (N,) Lambert term of the aligned prediction
    triangles: Tensor | None = None
    gt: Tensor | None = None


def _failed(method: str, text: str) -> _Panel:
    return _Panel(method, f'<div class="gallery-method" title="{_e(method)}">{_e(method)}</div>'
                          f'<div class="gallery-failure">{_e(text)}</div>', failed=True)


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _panel(method: str, sample: Mapping[str, Any], image: np.ndarray | None, problems: list[str],
           source: str) -> _Panel:
    """A method's panel for one sample, but the heatmap (drawn once the sample's scale is known);
    ``image``: the sample's input (H, W, 3) uint8."""
    sid = sample.get("sample_id", "?")
    failure = str(sample.get("failure") or "")
    pred = sample.get("pred_vertices")
    if not failure and pred is None:
        failure = "no mesh"
    if failure:
        return _failed(method, f"failed: {failure}")
    parts = [f'<div class="gallery-method" title="{_e(method)}">{_e(method)}</div>']
    try:
        h, w = (image.shape[:2] if image is not None else (256, 256))
        if image is not None:
            parts.append(_img(png_data_uri(landmark_overlay(image, sample.get("pred_lm68"), sample.get("gt_lm68"))),
                              "gallery-landmarks", f"{method}: landmarks"))
        from ..geometry.mesh import vertex_normals

        tri = sample["triangles"].to(torch.long)
        normals = vertex_normals(pred.to(torch.float32), tri)  # model frame; rotated per view
        posed = posed_screen(sample, h, w)
        if posed is not None:
            screen, rot, ortho = posed
            colors = grey(lambert(normals @ rot.T))
            bg = 1.0 if image is None else torch.from_numpy(image).permute(2, 0, 1).to(torch.float32) / 255.0
            rendered = render_colored(screen, tri, (h, w), colors, bg, ortho)
            parts.append(_img(png_data_uri(rendered), "gallery-render", f"{method}: reconstruction"))
        else:
            size = max(h, w)
            v = pred.to(torch.float32)
            rendered = render_colored(frontal_screen(v, size), tri, (size, size), grey(lambert(normals)), 1.0, True)
            parts.append(_img(png_data_uri(rendered), "gallery-render", f"{method}: reconstruction (frontal)"))
            parts.append('<div class="gallery-note">no pose/camera: frontal view</div>')
    except Exception as exc:  # noqa: BLE001 - one bad sample must not lose the report
        problems.append(f"{source}: sample {sid}: cannot draw ({_why(exc)})")
        return _failed(method, f"cannot draw: {_why(exc)}")
    panel = _Panel(method, "".join(parts))
    gt = sample.get("gt_vertices")
    if gt is None:
        panel.html += '<div class="gallery-note">no GT mesh: no error heatmap</div>'
    elif tuple(gt.shape) != tuple(pred.shape):
        panel.html += (f'<div class="gallery-note">topology differs from the GT ({len(pred)} vs {len(gt)} '
                       "vertices): no per-vertex error</div>")
    elif not torch.isfinite(gt).all():
        panel.html += '<div class="gallery-note">non-finite GT vertices: no error heatmap</div>'
    else:
        try:
            panel.aligned, rot, panel.errors = aligned_errors(pred, gt)
            panel.shade = lambert(normals @ rot.to(torch.float32).T)
            panel.triangles, panel.gt = tri, gt
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{source}: sample {sid}: no error heatmap ({_why(exc)})")
            panel.html += f'<div class="gallery-note">no error heatmap: {_e(_why(exc))}</div>'
    return panel


def _heatmap_html(panel: _Panel, vmax: float, size: int, problems: list[str], where: str) -> str:
    """The panel's error heatmap on the sample's scale ``0..vmax`` mm, and its mean / max."""
    assert panel.errors is not None and panel.aligned is not None and panel.triangles is not None
    v = panel.aligned.to(torch.float32)
    e = panel.errors
    try:
        colors = heatmap_colors(e, vmax, panel.shade)
        rendered = render_colored(frontal_screen(v, size, frame=panel.gt), panel.triangles, (size, size), colors,
                                  1.0, True)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{where}: no error heatmap ({_why(exc)})")
        return f'<div class="gallery-note">no error heatmap: {_e(_why(exc))}</div>'
    return (_img(png_data_uri(rendered), "gallery-heatmap", f"{panel.method}: per-vertex error")
            + f'<div class="gallery-stats" data-mean-mm="{float(e.mean()):.6g}" data-max-mm="{float(e.max()):.6g}">'
            f"error mean {float(e.mean()):.2f} mm, max {float(e.max()):.2f} mm</div>")


def _sample_row(sid: str, by_method: Sequence[tuple[str, str, Mapping[str, Any] | None]],
                problems: list[str]) -> str:
    image = None  # the input: the first method's that can be read (the same sample for all)
    for _, source, s in by_method:
        if s is not None and s.get("image") is not None:
            try:
                image = image_uint8(s["image"])
                break
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{source}: sample {sid}: bad input image ({_why(exc)})")
    panels: list[_Panel] = []
    sources: list[str] = []
    for method, source, sample in by_method:
        sources.append(f"{source}: sample {sid}")
        if sample is None:
            panels.append(_failed(method, "not captured for this sample"))
        else:
            panels.append(_panel(method, sample, image, problems, source))
    scored = [p for p in panels if p.errors is not None]
    vmax = max([MIN_SCALE_MM] + [float(p.errors.max()) for p in scored if p.errors is not None])
    if image is not None:
        size = int(min(max(image.shape[:2]), HEATMAP_PX[1]))
        size = max(size, HEATMAP_PX[0])
    else:
        size = HEATMAP_PX[0]
    row = [f'<div class="gallery-row" data-sample="{_e(sid)}">']
    if image is not None:
        row.append(f'<figure class="gallery-input">{_img(png_data_uri(image), "gallery-image", f"input {sid}")}'
                   f"<figcaption>{_e(sid)}</figcaption></figure>")
    else:
        row.append(f'<figure class="gallery-input"><figcaption>{_e(sid)} (no image)</figcaption></figure>')
    for p, where in zip(panels, sources, strict=True):
        body = p.html + (_heatmap_html(p, vmax, size, problems, where) if p.errors is not None else "")
        failed = " failed" if p.failed else ""
        row.append(f'<div class="gallery-panel{failed}" data-method="{_e(p.method)}" data-sample="{_e(sid)}">'
                   f"{body}</div>")
    if scored:
        row.append(colorbar_html(vmax))
    row.append("</div>")
    return "".join(row)


def gallery_html(gallery: GallerySet | Iterable[Path | str | Mapping[str, Any]], section_id: str = "gallery") -> str:
    """The gallery section (``<section class="gallery">``) for gallery files / records; problems
    met while reading or drawing are listed in it (and appended to ``gallery.problems`` when a
    :class:`GallerySet` is given)."""
    gs = gallery if isinstance(gallery, GallerySet) else load_galleries(gallery)
    by_dataset: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for source, rec in gs.records:
        by_dataset.setdefault(str(rec["dataset"]), []).append((str(rec["method"]), source, rec))
    out = [f'<section class="gallery" id="{_e(section_id)}"><h2>Gallery</h2>',
           '<p class="note gallery-legend">Fixed test samples. Per method: its projected 68 landmarks '
           '(<span class="pred">green</span>) and the ground truth (<span class="gt">blue</span>) over the input; '
           "the reconstruction rendered in the image's camera (grey); the per-vertex error after a similarity "
           "alignment to the ground-truth mesh (the true-error protocol), seen from the front, coloured on one "
           "scale per sample (colour bar in mm, 0 to the largest error any method made on the sample).</p>"]
    if not gs.records:
        out.append('<p class="empty">No gallery captured.</p>')
    for dataset, entries in by_dataset.items():
        out.append(f"<h3>{_e(dataset)}</h3>")
        order: list[str] = []
        samples: list[dict[str, Mapping[str, Any]]] = []
        for _, _, rec in entries:
            by_id = {str(s["sample_id"]): s for s in rec["samples"]}
            samples.append(by_id)
            order += [sid for sid in by_id if sid not in order]
        for sid in order:
            row = [(m, src, by_id.get(sid)) for (m, src, _), by_id in zip(entries, samples, strict=True)]
            out.append(_sample_row(sid, row, gs.problems))
    if gs.problems:
        out.append(f'<p class="note gallery-problems">{len(gs.problems)} gallery problem(s):</p><ul class="note">'
                   + "".join(f"<li>{_e(p)}</li>" for p in gs.problems) + "</ul>")
    out.append("</section>")
    return "".join(out)


__all__ = [
    "COLORMAP", "GALLERY_CSS", "MIN_SCALE_MM", "GallerySet", "aligned_errors", "colorbar_html",
    "find_gallery_files", "frontal_screen", "gallery_html", "heatmap_colors", "landmark_overlay",
    "load_galleries", "posed_screen",
]
