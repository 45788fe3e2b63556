"""Graph-convolution parts of Gao et al.'s model on the face model's own topology: Chebyshev
convolution (Defferrard et al. 2016, as in COMA), the COMA-style decoder (FC -> [US -> GC]... ->
GC(3)) and the GCN critic (GC -> DS ... -> FC -> scalar)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from benchmark3dface.geometry.sampling import MeshHierarchy, build_hierarchy, scaled_laplacian, sparse_matrix


def chebyshev_basis(lap: Tensor, x: Tensor, k: int) -> Tensor:
    """``[T_0(L~) x, ..., T_{K-1}(L~) x]`` ``(K, B, N, F)`` for ``x`` ``(B, N, F)`` with the
    recursion ``T_0 x = x``, ``T_1 x = L~ x``, ``T_k x = 2 L~ T_{k-1} x - T_{k-2} x``;
    ``lap`` is a sparse or dense ``(N, N)`` scaled Laplacian."""
    b, n, f = x.shape
    x0 = x.permute(1, 0, 2).reshape(n, b * f)
    out = [x0]
    if k > 1:
        out.append(torch.sparse.mm(lap, x0) if lap.is_sparse else lap @ x0)
    for _ in range(2, k):
        nxt = torch.sparse.mm(lap, out[-1]) if lap.is_sparse else lap @ out[-1]
        out.append(2.0 * nxt - out[-2])
    return torch.stack(out).reshape(k, n, b, f).permute(0, 2, 1, 3)


def _spmm_nbf(m: Tensor, x: Tensor) -> Tensor:
    """Sparse/dense ``(M, N)`` times node-major features ``(N, B, F)`` -> ``(M, B, F)``."""
    n, b, f = x.shape
    flat = x.reshape(n, b * f)
    y = torch.sparse.mm(m, flat) if m.is_sparse else m @ flat
    return y.reshape(-1, b, f)


class ChebConv(nn.Module):
    """Chebyshev graph convolution of order ``K`` (``K`` terms ``T_0..T_{K-1}``; COMA / Gao:
    ``K = 6``): ``y = sum_k T_k(L~) x W_k + b``.  The Laplacian is passed to ``forward`` (the
    owner's buffer, shared by several layers).

    ``forward`` takes and returns *node-major* features ``(N, B, F)`` (no transposes between
    layers); ``forward_bnf`` takes ``(B, N, F)``."""

    def __init__(self, in_channels: int, out_channels: int, k: int = 6, bias: bool = True) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"Chebyshev order K must be >= 1, got {k}")
        self.k = int(k)
        self.weight = nn.Parameter(torch.empty(self.k, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.xavier_uniform_(self.weight.view(self.k * in_channels, out_channels))

    def forward(self, x: Tensor, lap: Tensor) -> Tensor:
        t_prev, t = x, None
        y = x @ self.weight[0]
        for k in range(1, self.k):
            if k == 1:
                t = _spmm_nbf(lap, x)
            else:
                t, t_prev = 2.0 * _spmm_nbf(lap, t) - t_prev, t
            y = y + t @ self.weight[k]
        return y if self.bias is None else y + self.bias

    def forward_bnf(self, x: Tensor, lap: Tensor) -> Tensor:
        return self(x.transpose(0, 1), lap).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[2]}, K={self.k}"


_CACHE: dict[str, MeshHierarchy] = {}


def mesh_hierarchy(vertices: np.ndarray, triangles: np.ndarray, factors: tuple[int, ...],
                   cache_dir: str | Path | None = None) -> MeshHierarchy:
    """``build_hierarchy`` memoised in-process and on disk (keyed by the mesh and factors)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(vertices, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(triangles, dtype=np.int64).tobytes())
    h.update(repr(tuple(int(f) for f in factors)).encode())
    key = h.hexdigest()[:16]
    if key in _CACHE:
        return _CACHE[key]
    import pickle

    from benchmark3dface.facemodel.procedural.build import default_cache_dir as default_cache

    path = Path(cache_dir or default_cache()) / "gcnsemi" / f"hierarchy_{key}.pkl"
    hier = None
    if path.is_file():
        try:
            hier = pickle.loads(path.read_bytes())
        except Exception:  # a corrupt cache entry is rebuilt
            hier = None
    if hier is None:
        hier = build_hierarchy(vertices, triangles, factors)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(hier))
            tmp.replace(path)
        except OSError:
            pass
    _CACHE[key] = hier
    return hier


class GraphStack(nn.Module):
    """The hierarchy's operators as non-persistent buffers (rebuilt from the mesh, never in
    checkpoints): ``lap_l`` scaled Laplacians, ``up_l`` / ``down_l`` sampling matrices."""

    def __init__(self, hier: MeshHierarchy) -> None:
        super().__init__()
        self.levels = len(hier.num_vertices)
        self.num_vertices = list(hier.num_vertices)
        for i, a in enumerate(hier.adjacency):
            self.register_buffer(f"lap_{i}", sparse_matrix(scaled_laplacian(a)), persistent=False)
        for i, (d, u) in enumerate(zip(hier.down, hier.up)):
            self.register_buffer(f"down_{i}", sparse_matrix(d), persistent=False)
            self.register_buffer(f"up_{i}", sparse_matrix(u), persistent=False)

    def lap(self, i: int) -> Tensor:
        return getattr(self, f"lap_{i}")

    def upsample(self, i: int, x: Tensor) -> Tensor:
        """Level ``i+1`` -> level ``i`` (node-major ``(N, B, F)``)."""
        return _spmm_nbf(getattr(self, f"up_{i}"), x)

    def downsample(self, i: int, x: Tensor) -> Tensor:
        """Level ``i`` -> level ``i+1`` (node-major ``(N, B, F)``)."""
        return _spmm_nbf(getattr(self, f"down_{i}"), x)


class GCNDecoder(nn.Module):
    """COMA-style decoder: ``FC(N_L * w_0) -> [US -> GC(w_i) -> ELU] * L -> GC(out)``.

    ``widths`` has ``L + 1`` entries (``w_0`` at the coarsest level, then one per up-sampling).
    The output is ``template + out_scale * y`` with the last layer zero-initialised (starts at
    the template)."""

    def __init__(self, graphs: GraphStack, in_dim: int, widths: tuple[int, ...], out_channels: int = 3,
                 k: int = 6, out_scale: float = 1.0) -> None:
        super().__init__()
        levels = graphs.levels - 1
        if len(widths) != levels + 1:
            raise ValueError(f"decoder widths: need {levels + 1} entries for {levels} up-sampling levels, "
                             f"got {len(widths)}")
        object.__setattr__(self, "graphs", graphs)  # shared, owned by the method
        self.widths = tuple(int(w) for w in widths)
        self.fc = nn.Linear(in_dim, graphs.num_vertices[-1] * self.widths[0])
        self.convs = nn.ModuleList(ChebConv(self.widths[i], self.widths[i + 1], k) for i in range(levels))
        self.out = ChebConv(self.widths[-1], out_channels, k)
        nn.init.zeros_(self.out.weight)
        self.out_scale = float(out_scale)
        self.act = nn.ELU()

    def forward(self, z: Tensor) -> Tensor:
        g = self.graphs
        x = self.fc(z).view(z.shape[0], g.num_vertices[-1], self.widths[0]).transpose(0, 1)
        for j, conv in enumerate(self.convs):
            lvl = g.levels - 2 - j
            x = self.act(conv(g.upsample(lvl, x), g.lap(lvl)))
        return (self.out(x, g.lap(0)) * self.out_scale).transpose(0, 1)


class GCNCritic(nn.Module):
    """GCN critic (Gao's discriminator): ``[GC(w_i) -> LeakyReLU -> DS] * L -> FC(1)`` on shapes
    ``(B, N_0, 3)`` (given relative to the template, divided by ``in_scale``). ``start_level``
    > 0 first down-samples the shape that many levels (a cheaper critic; 0 = full resolution)."""

    def __init__(self, graphs: GraphStack, widths: tuple[int, ...], k: int = 6, in_scale: float = 10.0,
                 start_level: int = 0) -> None:
        super().__init__()
        levels = graphs.levels - 1 - int(start_level)
        if not 0 <= int(start_level) < graphs.levels - 1:
            raise ValueError(f"critic start_level must be in [0, {graphs.levels - 1}), got {start_level}")
        if len(widths) != levels:
            raise ValueError(f"critic widths: need {levels} entries (levels from {start_level}), got {len(widths)}")
        object.__setattr__(self, "graphs", graphs)
        self.start_level = int(start_level)
        chans = (3,) + tuple(int(w) for w in widths)
        self.convs = nn.ModuleList(ChebConv(chans[i], chans[i + 1], k) for i in range(levels))
        self.fc = nn.Linear(graphs.num_vertices[-1] * chans[-1], 1)
        self.in_scale = float(in_scale)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, offsets: Tensor) -> Tensor:
        g = self.graphs
        x = (offsets / self.in_scale).transpose(0, 1)
        for i in range(self.start_level):  # a coarser critic: plain down-sampling first
            x = g.downsample(i, x)
        for j, conv in enumerate(self.convs):
            i = self.start_level + j
            x = g.downsample(i, self.act(conv(x, g.lap(i))))
        return self.fc(x.transpose(0, 1).flatten(1)).squeeze(-1)
