"""Boards for every input kind (issue 12): ``MethodSpec.eval_kinds``, test sets keyed apart from
their kind (``single_weak``), one leaderboard dataset per test set, and the runner path scoring
multi-face images with matched faces (permuted, missing, false positive)."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmark3dface.benchmark.profile import BenchmarkProfile, TestSet, load_profile
from benchmark3dface.methods.spec import MethodSpec

baselines = pytest.importorskip("b3f_methods.baselines", reason="the built-in method plugins are not installed")

TINY = """
name: quick
seed: 0
facemodel: procedural
num_workers: 0
landmarks: detector
gallery: 0
test_sets:
  multiview: {size: 2, image_size: 96, batch_size: 2, options: {view_yaws: [-30, 0, 30]}}
  multiface: {size: 2, image_size: 192, batch_size: 2}
  single_weak: {kind: single, size: 2, image_size: 96, batch_size: 2, options: {projection: weak_perspective, grayscale: true}}
protocols:
  multiview: [true_error]
  multiface: [true_error, detection]
  single_weak: [true_error, {depth: {align: median}}]
"""


def test_eval_kinds_default_to_the_input_kind_and_are_validated():
    assert MethodSpec(name="a", input_kind="set").eval_kinds == ("set",)
    spec = MethodSpec(name="b", eval_kinds=("single", "multiview", "single_weak"))
    assert spec.eval_kinds == ("single", "multiview", "single_weak")
    assert MethodSpec(name="d", eval_kinds=("*",)).eval_kinds == ("*",)
    with pytest.raises(ValueError, match="eval_kinds"):
        MethodSpec(name="c", eval_kinds=("panorama",))


def test_profiles_have_a_board_per_kind_and_a_weak_depth_variant():
    for name in ("quick", "paper"):
        p = load_profile(name)
        assert {"single", "set", "multiview", "multiface", "single_weak"} <= set(p.test_sets)
        assert p.kind_of("single_weak") == "single"
        assert p.test_sets["single_weak"].options["projection"] == "weak_perspective"
        assert p.protocol_specs("single_weak")["depth"] == {"align": "median"}
        assert "detection" in p.protocol_specs("multiface")
        assert p.dataset_name("single_weak").startswith("synthetic-single_weak@")
        assert p.test_sets["multiview"].options["view_yaws"][1] == 0
    quick = load_profile("quick")
    assert quick.test_sets_for(baselines.MeanFace.spec) == list(quick.test_sets)  # every board
    assert quick.test_sets_for(MethodSpec(name="x")) == ["single"]  # variants only when named
    assert quick.test_sets_for(MethodSpec(name="y", eval_kinds=("single", "single_weak"))) == ["single", "single_weak"]


def test_profile_errors_name_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "benchmark.yaml"
    bad.write_text("test_sets:\n  single_odd: {kind: panorama}\nprotocols: {}\n")
    with pytest.raises(ValueError, match="test_sets.single_odd: kind must be one of"):
        load_profile(str(bad))
    bad.write_text("test_sets:\n  single: {}\nprotocols:\n  multiview: [true_error]\n")
    with pytest.raises(ValueError, match=r"protocols for unknown test sets \['multiview'\]"):
        load_profile(str(bad))


def test_test_config_keeps_the_primary_sets_hash_and_names_variants():
    p = BenchmarkProfile(test_sets={"single": TestSet(size=3), "single_weak": TestSet(size=3, options={"a": 1})})
    primary, variant = p.test_config("single"), p.test_config("single_weak")
    assert "key" not in primary and primary["kind"] == "single"
    assert variant["key"] == "single_weak" and variant["kind"] == "single" and variant["options"] == {"a": 1}
    same = {k: v for k, v in primary.items() if k not in ("options", "engine")}
    assert {k: v for k, v in variant.items() if k not in ("options", "engine", "key")} == same


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    from benchmark3dface.benchmark.runner import BenchmarkRunner
    from benchmark3dface.leaderboard import open_store

    root = tmp_path_factory.mktemp("boards")
    (root / "benchmark.yaml").write_text(TINY)
    profile = load_profile(str(root / "benchmark.yaml"))
    return BenchmarkRunner(profile, open_store(str(root / "lb.sqlite")), root / "out", progress=False,
                           use_wandb=False)


def test_the_oracle_scores_zero_on_every_board_one_dataset_each(runner):
    outcomes = runner.run(["oracle"])
    assert [o.status for o in outcomes] == ["done"] * 3, [(o.status, o.message) for o in outcomes]
    assert sorted(o.dataset for o in outcomes) == ["synthetic-multiface@192", "synthetic-multiview@96",
                                                   "synthetic-single_weak@96"]
    for o in outcomes:
        te = o.results["true_error"].metrics["mean"]
        assert te.value < 1e-3 and te.n_failed == 0, o.dataset
    by = {o.dataset: o.results for o in outcomes}
    assert by["synthetic-single_weak@96"]["depth"].metrics["mean"].value < 1e-2
    det = by["synthetic-multiface@192"]["detection"].metrics
    assert det["average_precision"].value == 1.0 and det["false_positives"].value == 0
    datasets = {r.dataset for r in runner.store.runs(method=["oracle"])}
    assert datasets == {o.dataset for o in outcomes}
    again = runner.run(["oracle"])  # finished runs are skipped per test set
    assert [o.status for o in again] == ["skipped"] * 3


class _Edited(baselines.Oracle):
    """The oracle's faces of multi-face images, edited by ``edit(faces) -> faces``."""

    edit = staticmethod(lambda faces: faces)

    def reconstruct(self, batch):
        recs = super().reconstruct(batch)
        for r in recs:
            r.faces = self.edit(list(r.faces))
        return recs


def _score_edited(runner, edit):
    model = _Edited(image_size=192)
    model.edit = edit
    protocols = runner.profile.protocol_specs("multiface")
    results, n = runner.evaluate(model, "multiface", protocols, spec=baselines.Oracle.spec, name="edited")
    assert n == 2
    return results


def test_faces_are_matched_not_taken_in_order_through_the_runner_path(runner):
    n_gt = sum(len(s.lm68) for s in (runner.test_datamodule("multiface").datasets["test"][i] for i in range(2)))
    permuted = _score_edited(runner, lambda faces: faces[::-1])
    te = permuted["true_error"].metrics
    assert te["mean"].value < 1e-3 and te["mean"].n == n_gt and te["false_positives"].value == 0

    missing = _score_edited(runner, lambda faces: faces[1:])  # the first face of each image dropped
    te, det = missing["true_error"].metrics, missing["detection"].metrics
    assert te["mean"].n_failed == 2 and te["mean"].n == n_gt - 2 and te["mean"].value < 1e-3
    assert det["missed"].value == 2 and abs(det["recall"].value - (n_gt - 2) / n_gt) < 1e-9

    def with_false_positive(faces):
        extra = copy.deepcopy(faces[0])
        extra.center = torch.tensor([-500.0, -500.0])  # far outside the image
        extra.landmarks2d = extra.landmarks2d - 700.0
        extra.score = 0.1
        return faces + [extra]

    fp = _score_edited(runner, with_false_positive)
    te, det = fp["true_error"].metrics, fp["detection"].metrics
    assert te["false_positives"].value == 2 and te["mean"].n_failed == 0 and te["mean"].value < 1e-3
    assert det["false_positives"].value == 2 and det["precision"].value == n_gt / (n_gt + 2)
    assert det["average_precision"].value == 1.0  # the false positives score lowest
