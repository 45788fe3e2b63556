"""A protocol and a dataset defined outside the project, registered only through their own entry
points, are listed by ``b3f protocols`` / ``b3f datasets`` and used by ``b3f evaluate`` with no
core edit."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

PLUGIN = textwrap.dedent('''
    """Third-party protocol + dataset."""
    import torch
    from torch.utils.data import Dataset

    from benchmark3dface.data.sample import Sample
    from benchmark3dface.evaluation.datasets import DatasetSpec
    from benchmark3dface.metrics import ProtocolMetric, pair_up


    class VertexCount(ProtocolMetric):
        """Number of predicted vertices (a toy metric)."""
        name = "ext_vertex_count"
        value_names = ("count",)
        units = {"count": ""}
        directions = {"count": "higher"}
        needs = ("vertices",)

        def update(self, reconstructions, batch):
            ids, vals, why = [], [], []
            for rec, s in pair_up(reconstructions, batch):
                ids.append(s.sample_id)
                bad = rec is None or rec.face.validate()
                vals.append([float("nan") if bad else float(rec.face.vertices.shape[0])])
                why.append(bad or "")
            self.record(ids, vals, why)


    class Tiny(Dataset):
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return Sample(kind="single", sample_id=f"tiny/{i}", image=torch.full((3, 16, 16), i / 10.0),
                          vertices=torch.zeros(5, 3))


    def tiny_spec():
        return DatasetSpec(name="ext_tiny", kind="single", provides=("vertices",), protocols=("ext_vertex_count",),
                           build=lambda root, split, image_size=None, **kw: Tiny(int(root)), splits=("test",),
                           description="external test dataset (ROOT = number of samples)")


    class MeshOut:
        pass
''')


@pytest.fixture
def site(make_plugin_site) -> Path:
    return make_plugin_site("ext_b3f_eval", {"__init__.py": PLUGIN}, {
        "benchmark3dface.protocols": {"ext_vertex_count": "ext_b3f_eval:VertexCount"},
        "benchmark3dface.datasets": {"ext_tiny": "ext_b3f_eval:tiny_spec"}})


@pytest.fixture
def _b3f(run_b3f):
    return lambda args, site, cwd: run_b3f(args, site, cwd, timeout=600, OMP_NUM_THREADS="1")


def test_external_protocol_and_dataset(site, tmp_path, _b3f):
    out = _b3f(["protocols", "--json"], site, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["ext_vertex_count"]["needs"] == ["vertices"]
    assert rows["ext_vertex_count"]["directions"] == {"count": "higher"}
    assert "true_error" in rows  # built-ins through the same listing
    out = _b3f(["datasets", "--json"], site, tmp_path)
    assert out.returncode == 0, out.stderr
    ds = {r["name"]: r for r in json.loads(out.stdout)}
    assert ds["ext_tiny"]["protocols"] == ["ext_vertex_count"] and "aflw2000" in ds

    db = tmp_path / "lb.sqlite"
    # default protocols of the dataset: only the external one applies (true_error needs a real mesh
    # of the same topology; the dataset lists only its own protocol)
    out = _b3f(["evaluate", "--data", "ext_tiny:4", "--method", "meanface", "--landmarks", "gt_noise",
                "--db", str(db)], site, tmp_path)
    # meanface needs landmarks the tiny dataset has not: every sample fails, counted, no traceback
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    from benchmark3dface.leaderboard import open_store

    (run,) = open_store(str(db)).runs()
    assert run.protocol == "ext_vertex_count" and run.dataset == "ext_tiny"
    m = run.metrics["count"]
    assert m.n + m.n_failed == 4

    out = _b3f(["evaluate", "--data", "ext_tiny:3", "--method", "oracle", "--protocols", "ext_vertex_count",
                "--db", str(db)], site, tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "reads ground truth ['coeffs']" in out.stderr
