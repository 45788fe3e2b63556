import numpy as np
import pytest
import torch

from benchmark3dface.geometry.meshio import (MeshFormatError, read_obj, read_obj_vertices, write_mesh, write_obj,
                                             write_ply)


@pytest.fixture
def mesh():
    rng = np.random.default_rng(1)
    v = rng.normal(0, 50, (40, 3))
    f = rng.integers(0, 40, (70, 3))
    c = rng.uniform(0, 1, (40, 3))
    return v, f, c


def test_obj_roundtrip_with_colors(tmp_path, mesh):
    v, f, c = mesh
    p = write_obj(tmp_path / "sub" / "m.obj", v, f, c)
    m = read_obj(p)
    np.testing.assert_allclose(m.vertices, v, atol=1e-6)
    np.testing.assert_allclose(m.colors, c, atol=1e-6)
    np.testing.assert_array_equal(m.triangles, f)
    verts, tris = read_obj(p)  # unpacks to the essentials
    assert verts.shape == (40, 3) and tris.shape == (70, 3)
    # the file is plain OBJ with 1-based faces and 6 numbers per vertex line
    lines = p.read_text().splitlines()
    vline = next(ln for ln in lines if ln.startswith("v "))
    assert len(vline.split()) == 7
    fline = next(ln for ln in lines if ln.startswith("f "))
    assert [int(x) for x in fline.split()[1:]] == list(f[0] + 1)


def test_obj_accepts_torch_and_no_colors(tmp_path, mesh):
    v, f, _ = mesh
    p = write_obj(tmp_path / "t.obj", torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(f))
    m = read_obj(p)
    assert m.colors is None
    np.testing.assert_allclose(m.vertices, v.astype(np.float32), atol=1e-4)


def test_ply_roundtrip_read_by_open3d(tmp_path, mesh):
    o3d = pytest.importorskip("open3d")
    v, f, c = mesh
    p = write_ply(tmp_path / "m.ply", v, f, c)
    assert p.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    m = o3d.io.read_triangle_mesh(str(p))
    np.testing.assert_allclose(np.asarray(m.vertices), v.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(m.triangles), f)
    np.testing.assert_allclose(np.asarray(m.vertex_colors), np.round(c * 255) / 255, atol=1e-6)


def test_ply_size_matches_layout(tmp_path, mesh):
    v, f, c = mesh
    p = write_ply(tmp_path / "m.ply", v, f, c)
    raw = p.read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n"):]
    assert len(body) == len(v) * (12 + 3) + len(f) * (1 + 12)
    p2 = write_ply(tmp_path / "n.ply", v, f)
    raw2 = p2.read_bytes()
    assert b"red" not in raw2
    assert len(raw2) - raw2.index(b"end_header\n") - 11 == len(v) * 12 + len(f) * 13


def test_write_mesh_dispatch_and_validation(tmp_path, mesh):
    v, f, c = mesh
    assert write_mesh(tmp_path / "a.ply", v, f, c).suffix == ".ply"
    assert write_mesh(tmp_path / "a.obj", v, f).suffix == ".obj"
    with pytest.raises(ValueError, match="unsupported mesh format"):
        write_mesh(tmp_path / "a.stl", v, f)
    with pytest.raises(ValueError, match="outside"):
        write_obj(tmp_path / "b.obj", v, np.array([[0, 1, 40]]))
    bad = v.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_ply(tmp_path / "b.ply", bad, f)
    with pytest.raises(ValueError, match="colors"):
        write_obj(tmp_path / "c.obj", v, f, c[:5])


OBJ_POLY = """# a comment line
mtllib foo.mtl
o thing
v 0 0 0
v 1 0 0   # trailing comment
v 1 1 0
v 0 1 0
v 2 0.5 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 1
g group1
usemtl skin
s off
f 1/1/1 2/2/1 3/3/1 4/4/1
f 2//1 5//1 3//1
f -5 -4 -1
f 1 2 5 3 4
"""


def test_read_obj_polygons_slashes_negative_indices(tmp_path):
    p = tmp_path / "poly.obj"
    p.write_text(OBJ_POLY)
    m = read_obj(p)
    assert m.vertices.shape == (5, 3)
    expected = [[0, 1, 2], [0, 2, 3],            # quad fan
                [1, 4, 2],                       # v//vn
                [0, 1, 4],                       # negative: -5 -> 1, -4 -> 2, -1 -> 5
                [0, 1, 4], [0, 4, 2], [0, 2, 3]]  # pentagon fan
    np.testing.assert_array_equal(m.triangles, expected)
    np.testing.assert_array_equal(m.polygon, [0, 0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(m.polygon_sizes, [4, 3, 3, 5])
    assert m.uv.shape == (4, 2) and m.normals.shape == (1, 3)
    np.testing.assert_array_equal(m.triangle_uv[:2], [[0, 1, 2], [0, 2, 3]])
    assert (m.triangle_uv[2:] == -1).all()
    np.testing.assert_array_equal(read_obj_vertices(p), m.vertices)


@pytest.mark.parametrize("body, line, pattern", [
    ("v 0 0 0\nv 1 x 0\n", 2, "non-numeric"),
    ("v 0 0 0\nv 1 0\n", 2, "at least 3"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", 4, "at least 3 vertices"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", 4, "index 0"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n# c\nf 1 2 3\nf 1 2 9\n", 6, "vertex 9"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -4 1 2\n", 4, "before the first"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/a 2 3\n", 4, "texture index"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/2 2/1 3/1\n", 5, "texture coordinate 2"),
    ("v 0 0 nan\n", 1, "NaN"),
])
def test_read_obj_errors_name_file_and_line(tmp_path, body, line, pattern):
    p = tmp_path / "bad.obj"
    p.write_text(body)
    with pytest.raises(MeshFormatError, match=pattern) as err:
        read_obj(p)
    assert f"{p}:{line}:" in str(err.value)


def test_read_obj_vertices_falls_back_for_errors_and_missing(tmp_path):
    p = tmp_path / "bad.obj"
    p.write_text("v 0 0 0\nv 1 zz 0\n")
    with pytest.raises(MeshFormatError, match=f"{p}:2:"):
        read_obj_vertices(p)
    with pytest.raises(FileNotFoundError, match="nope.obj"):
        read_obj(tmp_path / "nope.obj")
    with pytest.raises(FileNotFoundError, match="nope.obj"):
        read_obj_vertices(tmp_path / "nope.obj")


def test_partial_vertex_colors_is_an_error(tmp_path):
    p = tmp_path / "c.obj"
    p.write_text("v 0 0 0 1 0 0\nv 1 0 0\nv 0 1 0 0 0 1\nf 1 2 3\n")
    with pytest.raises(MeshFormatError, match="vertex 2"):
        read_obj(p)
