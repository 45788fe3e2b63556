"""The report gallery (leaderboard/gallery.py) from hand-made gallery records: one panel per
method and sample, failure reasons, error heatmaps checked against an independent numpy
Umeyama, bad files reported in one line, and the report rendered in headless Chromium."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark3dface.data.sample import Sample
from benchmark3dface.evaluation.gallery import gallery_record, save_gallery
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.leaderboard import ResultsStore, RunInfo, build_report, build_tables, config_hash
from benchmark3dface.leaderboard.gallery import (
    MIN_SCALE_MM,
    find_gallery_files,
    gallery_html,
    load_galleries,
)
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.render.testmesh import face_like_surface

from lb_fake import fake_result

SIZE = 96
SAMPLES = ("s/0", "s/1")
METHODS = ("exact", "perturbed", "frontal", "coarse")
FAILURE = "no face detected (test)"
BUMP_MM = 6.0


# ------------------------------------------------------------------------------ fixtures
def _rot_y(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


@pytest.fixture(scope="module")
def mesh() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small face-like GT mesh (mm, model frame), its triangles and 68 'landmark' vertices."""
    v, f = face_like_surface(side=41)
    lm_idx = torch.linspace(0, len(v) - 1, 68).round().long()
    return v, f, lm_idx


def _sample(sid: str, gt: torch.Tensor, lm_idx: torch.Tensor, yaw: float) -> tuple[Sample, dict]:
    cam = PerspectiveCamera.deng(SIZE)
    rot = _rot_y(yaw)
    lm = cam.project(gt[lm_idx] @ rot.T)[:, :2]
    gen = torch.Generator().manual_seed(len(sid) + int(yaw))
    img = 0.3 + 0.4 * torch.rand(3, SIZE, SIZE, generator=gen)
    camd = {"kind": "perspective", "focal": cam.focal, "principal": (cam.cx, cam.cy), "distance": cam.distance}
    sample = Sample(sample_id=sid, image=img, lm68=lm, vertices=gt.clone(), camera=camd)
    return sample, {"rot": rot, "cam": camd, "lm": lm}


def _face(vertices: torch.Tensor, tri: torch.Tensor, lm: torch.Tensor | None, pose: dict | None,
          failure: str | None = None) -> FaceReconstruction:
    return FaceReconstruction(vertices=vertices, triangles=tri, landmarks2d=lm,
                              rotation=None if pose is None else pose["rot"],
                              translation=None if pose is None else torch.zeros(3),
                              camera={} if pose is None else dict(pose["cam"]), failure=failure)


def _bumped(gt: torch.Tensor) -> torch.Tensor:
    """GT with the right cheek pushed out by up to BUMP_MM (a smooth Gaussian patch)."""
    w = torch.exp(-((gt[:, 0] - 45.0) ** 2 + (gt[:, 1] + 20.0) ** 2) / (2 * 15.0 ** 2))
    out = gt.clone()
    out[:, 2] += BUMP_MM * w
    return out


@pytest.fixture(scope="module")
def records(mesh) -> dict[str, dict]:
    """One gallery record per method (evaluation.gallery.gallery_record), two samples each."""
    gt, tri, lm_idx = mesh
    coarse_v, coarse_f = face_like_surface(side=21)
    captured: dict[str, dict] = {m: {} for m in METHODS}
    for k, sid in enumerate(SAMPLES):
        sample, pose = _sample(sid, gt, lm_idx, yaw=20.0 * k - 10.0)
        similar = 1.1 * gt @ _rot_y(7.0).T + torch.tensor([3.0, -2.0, 5.0])  # a similarity of the GT
        faces = {
            "exact": _face(similar, tri, pose["lm"] + 0.0, pose),
            "perturbed": (_face(_bumped(gt), tri, pose["lm"] + 1.5, pose) if k == 0
                          else _face(None, None, None, None, failure=FAILURE)),
            "frontal": _face(gt.clone(), tri, None, None),
            "coarse": _face(coarse_v, coarse_f, pose["lm"], pose),
        }
        for m in METHODS:
            captured[m][sid] = (Reconstruction(sid, [faces[m]]), sample)
    return {m: gallery_record(m, "synthetic-test", captured[m], SAMPLES) for m in METHODS}


class _Dom(HTMLParser):
    """Gallery panels (data-method, data-sample, class, text), img sources, data-* values."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: list[dict] = []
        self.imgs: list[dict] = []
        self.colorbars: list[float] = []
        self.stats: list[tuple[str, str, float, float]] = []
        self._stack: list[dict | None] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "div" and "gallery-panel" in cls:
            self.panels.append({"method": a["data-method"], "sample": a["data-sample"], "failed": "failed" in cls,
                                "text": [], "imgs": []})
        if tag == "img":
            self.imgs.append(a)
            if self.panels and self._open():
                self.panels[-1]["imgs"].append(a)
        if tag == "figure" and "gallery-colorbar" in cls:
            self.colorbars.append(float(a["data-vmax-mm"]))
        if tag == "div" and "gallery-stats" in cls:
            p = self.panels[-1]
            self.stats.append((p["method"], p["sample"], float(a["data-mean-mm"]), float(a["data-max-mm"])))
        if tag == "div":
            self._stack.append(a if "gallery-panel" in cls else None)

    def _open(self) -> bool:
        return any(x is not None for x in self._stack)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self.panels and self._open():
            self.panels[-1]["text"].append(data)


def _parse(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    return dom


def _png(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(int)


def _umeyama_errors(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per-point distances after the least-squares similarity src -> dst (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(xd.T @ xs / len(src))
    s_fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ s_fix @ vt
    scale = np.trace(np.diag(d) @ s_fix) / (xs ** 2).sum(1).mean()
    return np.linalg.norm(scale * xs @ r.T + mu_d - dst, axis=1)


# ------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def section(records) -> tuple[str, list[str]]:
    gs = load_galleries([records[m] for m in METHODS])
    return gallery_html(gs), gs.problems


def test_one_panel_per_method_and_sample(section) -> None:
    text, problems = section
    assert problems == []
    dom = _parse(text)
    pairs = [(p["method"], p["sample"]) for p in dom.panels]
    assert sorted(pairs) == sorted((m, s) for m in METHODS for s in SAMPLES)
    assert text.count('class="gallery-row"') == len(SAMPLES)
    assert text.count('class="gallery-image"') == len(SAMPLES)  # one input image per row
    for p in dom.panels:
        classes = {i["class"] for i in p["imgs"]}
        if p["failed"]:
            continue
        assert "gallery-render" in classes
        if p["method"] != "frontal":
            assert "gallery-landmarks" in classes
    for img in dom.imgs:  # self-contained: every picture is an inline PNG
        assert img["src"].startswith("data:image/png;base64,")


def test_failed_sample_shows_its_reason(section) -> None:
    dom = _parse(section[0])
    failed = [p for p in dom.panels if p["failed"]]
    assert [(p["method"], p["sample"]) for p in failed] == [("perturbed", "s/1")]
    assert FAILURE in "".join(failed[0]["text"]) and not failed[0]["imgs"]


def test_heatmaps_against_an_independent_umeyama(section, mesh) -> None:
    gt = mesh[0].to(torch.float64).numpy()
    dom = _parse(section[0])
    stats = {(m, s): (mean, mx) for m, s, mean, mx in dom.stats}
    # a similarity transform of the GT (and the GT itself) is ~0 mm everywhere after alignment
    for key in [("exact", s) for s in SAMPLES] + [("frontal", s) for s in SAMPLES]:
        assert stats[key][1] < 1e-4, key  # float32 storage: ~1e-5 mm rounding
    # the bumped prediction: the numbers shown are those of a plain numpy Umeyama
    expected = _umeyama_errors(_bumped(mesh[0]).to(torch.float64).numpy(), gt)
    mean, mx = stats[("perturbed", "s/0")]
    assert mx == pytest.approx(expected.max(), rel=1e-4) and mean == pytest.approx(expected.mean(), rel=1e-4)
    assert 1.0 < mx <= BUMP_MM
    # one colour scale per sample: 0..largest error; a sample scored only ~perfectly stays tiny
    assert dom.colorbars == [pytest.approx(expected.max(), rel=1e-4), MIN_SCALE_MM]
    # other topology: no per-vertex error, said in the panel
    coarse = [p for p in dom.panels if p["method"] == "coarse"]
    assert all("topology differs" in "".join(p["text"]) for p in coarse)
    assert ("coarse", "s/0") not in stats
    # pixels: a perfect prediction is the colour map's low end (viridis: dark purple, B > R > G)
    # everywhere on the mesh; the bumped one reaches the bright (yellow-green) end
    def heat(method: str, sample: str) -> np.ndarray:
        p = next(p for p in dom.panels if (p["method"], p["sample"]) == (method, sample))
        rgb = _png(next(i["src"] for i in p["imgs"] if i["class"] == "gallery-heatmap"))
        return rgb[(rgb < 250).any(axis=2)]  # mesh pixels (white background off the mesh)

    exact = heat("exact", "s/0")
    assert len(exact) > 500
    assert (exact[:, 1] < 40).all() and (exact[:, 2] > exact[:, 0]).all() and (exact[:, 0] > exact[:, 1]).all()
    bumped = heat("perturbed", "s/0")
    assert (bumped[:, 1] > 150).sum() > 5, "the largest errors do not show the colour map's bright end"


def test_renders_are_in_the_image_camera(section, records) -> None:
    """The posed render covers the GT landmarks' region of the input (same camera), the frontal
    fallback says so."""
    dom = _parse(section[0])
    p = next(p for p in dom.panels if (p["method"], p["sample"]) == ("exact", "s/0"))
    render = _png(next(i["src"] for i in p["imgs"] if i["class"] == "gallery-render"))
    rec = records["exact"]["samples"][0]
    image = (rec["image"].float().permute(1, 2, 0).numpy() * 255).round()
    changed = np.abs(render - image).sum(axis=2) > 30  # where the grey mesh was drawn
    # the exact prediction is a similarity of the GT drawn with the GT pose: 1.1x larger, so it
    # covers every GT landmark pixel
    lm = rec["gt_lm68"].numpy()
    cols, rows = np.clip(lm[:, 0].astype(int), 0, SIZE - 1), np.clip(lm[:, 1].astype(int), 0, SIZE - 1)
    assert changed[rows, cols].mean() > 0.9
    assert changed.mean() < 0.9  # not the whole image
    f = next(p for p in dom.panels if p["method"] == "frontal")
    assert "frontal view" in "".join(f["text"])


def test_bad_gallery_files_are_one_line_each(tmp_path: Path, records) -> None:
    good = tmp_path / "good" / "gallery.pt"
    save_gallery(good, records["exact"])
    junk = tmp_path / "junk" / "gallery.pt"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not a torch file")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    wrong = tmp_path / "wrong.pt"
    torch.save({"method": "x"}, wrong)
    missing = tmp_path / "missing.pt"
    gs = load_galleries([good, junk, empty, wrong, missing])
    assert [label for label, _ in gs.records] == [str(good)]
    assert gs.n_failed == 4 and len(gs.problems) == 4
    for path, problem in zip((junk, empty, wrong, missing), gs.problems, strict=True):
        assert problem.startswith(f"{path}: ") and "\n" not in problem
        assert "Traceback" not in problem
    assert "missing dataset, samples" in gs.problems[2] and "no such file" in gs.problems[3]
    text = gallery_html(gs)
    assert text.count('class="gallery-panel') == len(SAMPLES)
    assert "4 gallery problem(s)" in text and str(junk) in text
    # a readable file with a sample that cannot be drawn: its panel and one line say why
    broken = dict(records["exact"], method="broken",
                  samples=[dict(records["exact"]["samples"][0], triangles=torch.zeros(5, 2, dtype=torch.long))])
    bad = tmp_path / "broken.pt"
    save_gallery(bad, broken)
    gs = load_galleries([good, bad])
    dom = _parse(gallery_html(gs))
    assert [(p["method"], p["failed"]) for p in dom.panels if p["sample"] == "s/0"] == [("exact", False),
                                                                                         ("broken", True)]
    assert len(gs.problems) == 1 and gs.problems[0].startswith(f"{bad}: sample s/0: cannot draw (")
    assert "cannot draw" in "".join(dom.panels[1]["text"])


def test_find_gallery_files(tmp_path: Path) -> None:
    def put(method: str, folder: str) -> Path:
        p = tmp_path / method / folder / "gallery.pt"
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
        return p

    single = put("a[gt-landmarks]", "0123456789ab")  # glob characters in the name are literal
    weak = put("a[gt-landmarks]", "ba9876543210")  # the same method on another input kind
    put("a[gt-landmarks]", "ffffffffffff")  # a config not shown
    config = {"method": "c", "model": {"x": 1}}
    noted = put("c", config_hash(config)[:12])  # named before the runner added its warnings
    stale = put("b", "aaaaaaaaaaaa")
    newest = put("b", "bbbbbbbbbbbb")
    os.utime(stale, (1, 1))
    runs = [SimpleNamespace(method="a[gt-landmarks]", config_hash="0123456789abcdef"),
            SimpleNamespace(method="b", config_hash="cccccccccccc99"),  # its folder is gone: newest
            SimpleNamespace(method="a[gt-landmarks]", config_hash="0123456789abcdef"),  # once each
            SimpleNamespace(method="a[gt-landmarks]", config_hash="ba9876543210ff"),
            SimpleNamespace(method="c", config_hash=config_hash(dict(config, warnings=["w"])),
                            config=dict(config, warnings=["w"])),
            SimpleNamespace(method="nobody", config_hash="0" * 16)]
    assert find_gallery_files(tmp_path, runs) == [single, weak, noted, newest]


# ------------------------------------------------------------------------------ the report
@pytest.fixture
def report_store(sqlite_url: str) -> ResultsStore:
    rng = np.random.default_rng(3)
    s = ResultsStore(sqlite_url)
    for method, scale in (("exact", 0.5), ("perturbed", 2.0), ("frontal", 1.0)):
        s.record_run(RunInfo(method=method, dataset="synthetic-test", protocol="true_error", config={"m": method}),
                     fake_result(rng, 40, scale, metric="mean", yaw_bins=False))
    yield s
    s.close()


def test_report_with_gallery_and_cli(report_store: ResultsStore, records, tmp_path: Path, sqlite_url: str) -> None:
    from benchmark3dface.leaderboard.cli import main

    tables = build_tables(report_store.runs())
    for run in report_store.runs():
        save_gallery(tmp_path / "runs" / run.method / run.config_hash[:12] / "gallery.pt", records[run.method])
    out = tmp_path / "report.html"
    assert main(["--db", sqlite_url, "--export", "html", "--out", str(out), "--gallery", str(tmp_path / "runs")]) == 0
    text = out.read_text(encoding="utf-8")
    dom = _parse(text)
    assert {p["method"] for p in dom.panels} == {"exact", "perturbed", "frontal"}  # only the runs shown
    assert text.count('<figure class="ced"') == 1 and 'href="#gallery"' in text
    without = build_report(report_store, tables)
    assert "gallery-row" not in without and "<img" not in without
    assert main(["--db", sqlite_url, "--export", "md", "--gallery", str(tmp_path)]) == 1  # html only


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--window-size=1100,4000"]  # tall enough for the whole test report
#: appended to a copy of the report (the report itself has no script): counts the loaded images
_PROBE = ("<script>window.addEventListener('load', () => { const im = [...document.images];"
          "document.body.dataset.imgs = im.length;"
          "document.body.dataset.loaded = im.filter(i => i.complete && i.naturalWidth > 0).length; });</script>")


def test_gallery_renders_in_headless_browser(report_store: ResultsStore, records, chromium: str,
                                             tmp_path: Path) -> None:
    text = build_report(report_store, build_tables(report_store.runs()), title="Gallery test",
                        gallery=[records[m] for m in METHODS])
    assert "<script" not in text
    report = tmp_path / "report.html"
    report.write_text(text, encoding="utf-8")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p1'}", f"--screenshot={shot}",
         report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.std() > 10, "blank screenshot"
    # the gallery is on screen: the heatmaps' dark viridis end and the GT landmarks' blue
    purple = (np.abs(rgb - np.array([68, 1, 84])).sum(axis=2) < 60).sum()
    blue = (np.abs(rgb - np.array([40, 120, 255])).sum(axis=2) < 40).sum()
    assert purple > 500 and blue > 20, (purple, blue)

    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p2'}", "--dump-dom", probe.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n = re.search(r'data-imgs="(\d+)"', dom.stdout)
    loaded = re.search(r'data-loaded="(\d+)"', dom.stdout)
    assert n and loaded, "the load probe did not run"
    assert int(n.group(1)) == text.count("<img ") > 10
    assert loaded.group(1) == n.group(1), f"{loaded.group(1)} of {n.group(1)} images loaded"
