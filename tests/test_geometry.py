"""Intrinsics, the one back-projection, depth meshes and their binary PLY files."""

import math

import numpy as np
import pytest
import torch

from svde.data.io import write_mesh_ply
from svde.geometry import (
    as_intrinsics,
    backproject,
    depth_to_mesh,
    intrinsics_from_fov,
    scale_intrinsics,
)

# PLY scalar types (Turk's PLY description, paulbourke.net/dataformats/ply/), little-endian.
PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "<i2", "ushort": "<u2", "int": "<i4", "uint": "<u4",
             "float": "<f4", "double": "<f8"}


def read_ply(path):
    """An independent binary little-endian PLY reader: header -> elements -> arrays."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    elements = []
    for line in lines[2:-1]:
        words = line.split()
        if words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(tuple(words[1:]))
        else:
            assert words[0] == "comment", line
    body, offset, out = data[end:], 0, {}
    for name, count, props in elements:
        if props[0][0] == "list":
            (_, count_type, item_type, prop_name), = props
            ctype, itype = np.dtype(PLY_TYPES[count_type]), np.dtype(PLY_TYPES[item_type])
            rows = []
            for _ in range(count):
                n = int(np.frombuffer(body, ctype, 1, offset)[0])
                offset += ctype.itemsize
                rows.append(np.frombuffer(body, itype, n, offset))
                offset += n * itype.itemsize
            out[name] = {prop_name: rows}
        else:
            dtype = np.dtype([(p[1], PLY_TYPES[p[0]]) for p in props])
            out[name] = np.frombuffer(body, dtype, count, offset)
            offset += count * dtype.itemsize
    assert offset == len(body), "trailing bytes after the last element"
    return lines, out


def rays(h, w, k):
    fx, fy, cx, cy = k
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack(((u - cx) / fx, (v - cy) / fy, np.ones_like(u)), axis=-1)


def step_scene(h=12, w=16, k=(20.0, 20.0, 7.5, 5.5), edge=7):
    """Two fronto-parallel planes: z = 2 left of column ``edge``, z = 5 from it on."""
    depth = np.where(np.arange(w)[None, :] < edge, 2.0, 5.0) * np.ones((h, 1))
    return depth, k, depth[..., None] * rays(h, w, k)


def test_intrinsics_helpers():
    fx, fy, cx, cy = intrinsics_from_fov(640, 480, 90.0)
    assert (fx, fy, cx, cy) == (320.0, 320.0, 319.5, 239.5)
    # The image's outer edge (u = -0.5) is seen at half the field of view.
    k = intrinsics_from_fov(100, 60, 70.0)
    assert math.degrees(math.atan((k[2] + 0.5) / k[0])) == pytest.approx(35.0)
    kv = intrinsics_from_fov(100, 60, 70.0, axis="vertical")
    assert math.degrees(math.atan((kv[3] + 0.5) / kv[1])) == pytest.approx(35.0)
    assert as_intrinsics(torch.tensor([1.0, 2.0, 3.0, 4.0])) == (1.0, 2.0, 3.0, 4.0)
    for bad in ([1.0, 2.0, 3.0], [0.0, 1.0, 1.0, 1.0], [1.0, float("nan"), 1.0, 1.0]):
        with pytest.raises(ValueError, match="intrinsics must be four finite numbers"):
            as_intrinsics(bad)
    with pytest.raises(ValueError, match=r"field of view must be in \(0, 180\)"):
        intrinsics_from_fov(64, 48, 180.0)


def test_scale_intrinsics_follows_pixel_centres():
    k = (310.0, 300.0, 322.3, 241.7)
    k2 = scale_intrinsics(k, (480, 640), (120, 200))
    # The ray through an original pixel centre u is the ray through (u + 0.5) * s - 0.5.
    for u, v in ((0, 0), (639, 479), (100.25, 37.5)):
        u2, v2 = (u + 0.5) * 200 / 640 - 0.5, (v + 0.5) * 120 / 480 - 0.5
        assert (u2 - k2[2]) / k2[0] == pytest.approx((u - k[2]) / k[0])
        assert (v2 - k2[3]) / k2[1] == pytest.approx((v - k[3]) / k[1])
    assert scale_intrinsics(k2, (120, 200), (480, 640)) == pytest.approx(k)


def test_backproject_numpy_and_torch_agree_with_the_formula():
    from svde.evaluation.metrics import backproject as metrics_backproject

    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 4, (5, 7)).astype(np.float32)
    k = [6.0, 5.0, 3.2, 2.1]
    pts = backproject(depth, k)
    assert pts.shape == (5, 7, 3) and pts.dtype == np.float32
    v, u = 3, 6
    assert pts[v, u].tolist() == pytest.approx([(u - 3.2) * depth[v, u] / 6.0, (v - 2.1) * depth[v, u] / 5.0,
                                                depth[v, u]])
    t = backproject(torch.from_numpy(depth), torch.tensor(k))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert np.array_equal(t.numpy(), pts)
    assert torch.equal(t, metrics_backproject(torch.from_numpy(depth), k))
    batched = backproject(np.stack([depth, 2 * depth]).astype(np.float64), k)
    assert batched.shape == (2, 5, 7, 3) and batched.dtype == np.float64
    assert np.allclose(batched[1], 2 * pts, rtol=1e-6)
    assert backproject(np.ones((2, 2), np.int64), k).dtype == np.float64
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        backproject(np.ones(3), k)


def test_mesh_of_a_step_never_joins_the_two_planes():
    depth, k, points = step_scene()
    h, w = depth.shape
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mesh = depth_to_mesh(depth, k, rgb)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32 and mesh.colors.dtype == np.uint8
    # Every pixel is a vertex (row-major) at the scene's point; colours follow.
    assert np.allclose(mesh.vertices, points.reshape(-1, 3), rtol=1e-6, atol=0)
    assert np.array_equal(mesh.colors, rgb.reshape(-1, 3))
    z = mesh.vertices[mesh.faces][..., 2]
    assert set(np.unique(z)) == {2.0, 5.0}
    assert np.all(z.min(axis=1) == z.max(axis=1)), "a triangle spans the depth jump"
    # All blocks but the (h - 1) straddling the edge give two triangles.
    assert len(mesh.faces) == 2 * (h - 1) * (w - 1) - 2 * (h - 1)
    # Counter-clockwise from the camera: normals point back to it (-z).
    a, b, c = (mesh.vertices[mesh.faces[:, i]].astype(np.float64) for i in range(3))
    normals = np.cross(b - a, c - a)
    assert np.all(normals[:, 2] < 0) and np.allclose(normals[:, :2], 0, atol=1e-9)
    assert np.unique(np.sort(mesh.faces, axis=1), axis=0).shape[0] == len(mesh.faces)


def test_mesh_keeps_an_oblique_plane_and_drops_invalid_pixels():
    h, w, k = 10, 14, (200.0, 200.0, 6.5, 4.5)
    r = rays(h, w, k)
    normal, offset = np.array([math.sin(math.radians(60)), 0.0, -math.cos(math.radians(60))]), -3.0
    t = offset / (r @ normal)  # ray-plane intersection, 60 degrees off fronto-parallel
    depth = t * r[..., 2]
    mesh = depth_to_mesh(depth, k)
    assert len(mesh.faces) == 2 * (h - 1) * (w - 1)
    assert np.allclose(mesh.vertices @ normal, offset, rtol=1e-5)

    depth[3, 4] = np.nan  # an interior invalid pixel: its six triangles go
    mask = np.ones((h, w), bool)
    mask[0, 0] = False  # a masked corner pixel: its one triangle goes
    holed = depth_to_mesh(depth, k, mask=mask)
    assert len(holed.vertices) == h * w - 2
    assert len(holed.faces) == 2 * (h - 1) * (w - 1) - 6 - 1
    assert np.isfinite(holed.vertices).all()


def test_mesh_discontinuity_threshold():
    depth, k, _ = step_scene()
    assert len(depth_to_mesh(depth, k, max_depth_ratio=2.6).faces) == 2 * 11 * 15  # 5 / 2 = 2.5 allowed
    with pytest.raises(ValueError, match="max_depth_ratio must be a finite number > 1"):
        depth_to_mesh(depth, k, max_depth_ratio=1.0)
    with pytest.raises(ValueError, match=r"colours must be uint8 of shape \(12, 16, 3\)"):
        depth_to_mesh(depth, k, rgb=np.zeros((12, 15, 3), np.uint8))


@pytest.mark.parametrize("with_colors", [True, False])
def test_mesh_ply_reads_back(tmp_path, with_colors):
    depth, k, _ = step_scene()
    rgb = np.random.default_rng(2).integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    mesh = depth_to_mesh(depth, k, rgb if with_colors else None)
    path = write_mesh_ply(tmp_path / "mesh.ply", *mesh)
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.ply"]  # atomic: no temporary left
    lines, elements = read_ply(path)
    colour_props = ["property uchar red", "property uchar green", "property uchar blue"] if with_colors else []
    assert lines[lines.index(f"element vertex {len(mesh.vertices)}"):] == [
        f"element vertex {len(mesh.vertices)}", "property float x", "property float y", "property float z",
        *colour_props, f"element face {len(mesh.faces)}", "property list uchar int vertex_indices", "end_header"]
    vertex = elements["vertex"]
    assert np.array_equal(np.stack([vertex[a] for a in "xyz"], axis=1), mesh.vertices)
    if with_colors:
        assert np.array_equal(np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1), mesh.colors)
    faces = elements["face"]["vertex_indices"]
    assert all(len(f) == 3 for f in faces)
    assert np.array_equal(np.stack(faces), mesh.faces)


def test_write_mesh_ply_rejects_bad_input(tmp_path):
    verts = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"face indices must be in \[0, 3\)"):
        write_mesh_ply(tmp_path / "m.ply", verts, np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="finite"):
        write_mesh_ply(tmp_path / "m.ply", np.full((3, 3), np.nan), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="colors must be uint8"):
        write_mesh_ply(tmp_path / "m.ply", verts, np.array([[0, 1, 2]]), np.zeros((3, 3)))
    assert list(tmp_path.iterdir()) == []
