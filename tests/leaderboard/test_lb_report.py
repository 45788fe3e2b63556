"""The self-contained HTML report, paired comparisons, and a check in a real headless browser."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark3dface.leaderboard import ResultsStore, RunInfo, build_report, build_tables, compare_methods
from benchmark3dface.leaderboard.stats import paired_test

from lb_fake import fake_result

METHODS = (("deep3d", 2.0), ("prnet", 2.3), ("3ddfa", 3.0))


@pytest.fixture
def store(sqlite_url: str) -> ResultsStore:
    rng = np.random.default_rng(7)
    s = ResultsStore(sqlite_url)
    for method, scale in METHODS:
        s.record_run(RunInfo(method=method, dataset="aflw2000-3d", protocol="nme68",
                             config={"m": method}),
                     fake_result(rng, 150, scale, fail_rate=0.04))
        s.record_run(RunInfo(method=method, dataset="micc", protocol="rmse", config={"m": method}),
                     fake_result(rng, 53, scale / 2, metric="rmse", yaw_bins=False, id_prefix="subj"))
    yield s
    s.close()


class _Dom(HTMLParser):
    """Counts elements by (tag, class) and collects every src/href and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[str, str], int] = {}
        self.refs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for cls in (a.get("class") or "").split() or [""]:
            self.counts[(tag, cls)] = self.counts.get((tag, cls), 0) + 1
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    return dom


def _check_dom(dom: _Dom) -> None:
    assert dom.counts.get(("table", "leaderboard")) == 2
    assert dom.counts.get(("figure", "ced")) == 2  # nme + rmse per-sample values
    assert dom.counts.get(("figure", "distribution")) == 2
    assert dom.counts.get(("figure", "yaw-bins")) == 1  # nme_0_30 / 30_60 / 60_90
    assert dom.counts.get(("svg", "plot")) == 5
    assert dom.counts.get(("table", "paired")) == 2
    text = " ".join(dom.text)
    for method, _ in METHODS:
        assert method in text
    assert "CED: nme" in text and "nme per yaw bin" in text


def test_report_is_self_contained_and_complete(store: ResultsStore) -> None:
    tables = build_tables(store.runs())
    html = build_report(store, tables, title="Test report")
    assert "http" not in html  # no web URL of any kind (the store URL is shown as text only)
    assert "://" not in html.replace(store.display_url, "")
    assert not re.search(r"<(script|link|iframe|img)\b", html)
    dom = _parse(html)
    assert dom.refs and all(r.startswith("#") for r in dom.refs)  # only in-page anchors
    _check_dom(dom)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate element ids across inline SVGs"
    # the paired tests shown are those computed independently from the stored samples
    for t in tables:
        runs = [r.run for r in t.rows]
        for ra, rb in combinations(runs, 2):
            a = store.sample_values(ra.id, t.primary_metric)
            b = store.sample_values(rb.id, t.primary_metric)
            res = paired_test(a.ids, a.values, b.ids, b.values)
            p = f"{res.p_value:.2e}" if res.p_value < 1e-3 else f"{res.p_value:.3f}"
            assert p in html


def test_compare_methods(store: ResultsStore) -> None:
    groups = compare_methods(store, "deep3d", "3ddfa")
    assert [(g.dataset, g.protocol) for g in groups] == [("aflw2000-3d", "nme68"), ("micc", "rmse")]
    nme = groups[0].results[0]
    assert (nme.metric, nme.label_a, nme.label_b) == ("nme", "deep3d", "3ddfa")
    a = store.sample_values(groups[0].run_a.id, "nme")
    b = store.sample_values(groups[0].run_b.id, "nme")
    shared = np.intersect1d(a.ids, b.ids)
    assert nme.n_shared == shared.size < 150  # failures are not paired
    assert nme.better == "deep3d" and nme.significant  # 2.0 vs 3.0 scale on 140+ samples
    only = compare_methods(store, "deep3d", "prnet", dataset="micc", metric="rmse")
    assert len(only) == 1 and [r.metric for r in only[0].results] == ["rmse"]
    by_run = compare_methods(store, f"run:{groups[0].run_a.id}", f"run:{groups[0].run_b.id}")
    assert by_run[0].results[0].p_value == nme.p_value
    with pytest.raises(ValueError, match="different groups"):
        compare_methods(store, f"run:{groups[0].run_a.id}", f"run:{groups[1].run_b.id}")
    with pytest.raises(ValueError, match="no finished runs of 'nobody'"):
        compare_methods(store, "deep3d", "nobody")
    with pytest.raises(ValueError, match="itself"):
        compare_methods(store, "deep3d", "deep3d")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--window-size=1280,2000"]


def test_report_renders_in_headless_browser(store: ResultsStore, chromium: str, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(build_report(store, build_tables(store.runs())), encoding="utf-8")
    url = report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile1'}",
         f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1280, 2000)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.std() > 10, "blank screenshot"
    assert (rgb.min(axis=2) < 200).mean() > 0.01, "almost nothing drawn"
    blue = np.abs(rgb - np.array([0x1F, 0x77, 0xB4])).sum(axis=2) < 40  # first series colour
    assert blue.sum() > 200, "plots did not render (no series colour in the screenshot)"

    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    _check_dom(_parse(dom.stdout))
