"""Renderer speed: forward depth pass and forward+backward RGB pass vs targets and open3d.

Setting (docs/renderer.md): 224x224 image, Deng camera (f=1015, c=112, D=1000 mm), a smooth
face-like displaced grid of 34,969 vertices / 69,192 triangles filling most of the image,
batch 8 on CPU with 2 threads (batch 32 with --device cuda). Prints ms/image (median and best
of --repeats runs), peak memory, open3d RaycastingScene depth-cast ms/image for the same mesh
in the same run, and the ratios against the targets:

- CPU forward depth  <= 4 x open3d depth cast
- CPU forward + backward RGB <= 40 ms/image
- CUDA (batch 32) forward + backward RGB <= 1 ms/image

Usage: ``python benchmarks/render.py [--device cpu|cuda] [--threads 2] [--batch N]
[--omp-passive]``. ``--omp-passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads
sleep instead of spinning), which matters a lot on an oversubscribed machine and little on
dedicated cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

if "--omp-passive" in sys.argv:  # must be set before the OpenMP runtime starts (torch import)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402

from benchmark3dface.render import render_passes  # noqa: E402
from benchmark3dface.render.testmesh import face_like_surface, project_pinhole  # noqa: E402

TARGET_DEPTH_VS_OPEN3D = 4.0
TARGET_RGB_CPU_MS = 40.0
TARGET_CUDA_MS = 1.0


def _time(fn: Callable[[], object], repeats: int, device: torch.device,
          warmup: bool = True) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls (after one warm-up call)."""
    if warmup:
        fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _fmt(times: list[float], batch: int) -> tuple[float, float, str]:
    med = statistics.median(times) / batch * 1e3
    best = min(times) / batch * 1e3
    return med, best, f"{med:7.2f} ms/image (best {best:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2, help="torch (and open3d) CPU threads")
    ap.add_argument("--batch", type=int, default=None, help="default 8 (cpu) / 32 (cuda)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--side", type=int, default=187, help="grid side: 187 -> 34,969 vertices")
    ap.add_argument("--no-open3d", action="store_true", help="skip the open3d reference")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE (set before torch is imported)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    batch = args.batch or (32 if device.type == "cuda" else 8)

    verts, faces = face_like_surface(args.side)
    world = verts[None].repeat(batch, 1, 1).to(device)
    faces_d = faces.to(device)
    colors = torch.rand(batch, verts.shape[0], 3, device=device)
    background = torch.rand(batch, 3, 224, 224, device=device)
    screen = project_pinhole(world)
    print(f"mesh: {verts.shape[0]} vertices, {faces.shape[0]} triangles; image 224x224; "
          f"batch {batch}; device {device}; torch threads {torch.get_num_threads()}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    def depth_pass() -> None:
        with torch.no_grad():
            render_passes(screen, faces_d, 224, ("depth",))

    def rgb_pass() -> None:
        w = world.detach().requires_grad_(True)
        c = colors.detach().requires_grad_(True)
        out = render_passes(project_pinhole(w), faces_d, 224, ("rgb",), vertex_colors=c,
                            background=background)
        (out["rgb"] - background).abs().mean().backward()

    cast = None
    if not args.no_open3d:
        import open3d as o3d

        from benchmark3dface.render.reference import RaycastDepth, pinhole_rays

        scene = RaycastDepth(verts, faces).scene
        rays = o3d.core.Tensor(pinhole_rays(224, 224, 1015.0, 112.0, 112.0, 1000.0)[0])

        def cast() -> None:
            for _ in range(batch):
                scene.cast_rays(rays, nthreads=args.threads)

    rss0 = _maxrss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cover = render_passes(screen, faces_d, 224, ("mask",))["mask"].mean().item()
    # torch depth pass and open3d casts alternate, so that both see the same machine load
    # (the ratio is taken per pair of runs)
    t_depth, t_o3d = [], []
    for _ in range(args.repeats):
        t_depth += _time(depth_pass, 1, device, warmup=not t_depth)
        if cast is not None:
            t_o3d += _time(cast, 1, torch.device("cpu"), warmup=not t_o3d)
    t_rgb = _time(rgb_pass, args.repeats, device)
    peak = (f"CUDA peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            if device.type == "cuda" else
            f"max RSS +{_maxrss_mib() - rss0:.0f} MiB over the start ({_maxrss_mib():.0f} MiB)")
    d_med, d_best, d_txt = _fmt(t_depth, batch)
    r_med, r_best, r_txt = _fmt(t_rgb, batch)
    print(f"coverage: {cover:.1%} of the pixels")
    print(f"forward depth pass       : {d_txt}")
    print(f"forward+backward RGB pass: {r_txt}")
    print(f"peak memory              : {peak}")
    if cast is not None:
        o_med, o_best, o_txt = _fmt(t_o3d, batch)
        print(f"open3d RaycastingScene   : {o_txt} ({args.threads} threads, same mesh and rays)")
        if device.type == "cpu":
            pair = statistics.median(d / o for d, o in zip(t_depth, t_o3d))
            print(f"depth / open3d           : {pair:.2f}x median of paired runs, "
                  f"{d_best / o_best:.2f}x best vs best (target <= {TARGET_DEPTH_VS_OPEN3D:.0f}x)")
    if device.type == "cpu":
        print(f"RGB fwd+bwd / target     : {r_med / TARGET_RGB_CPU_MS:.2f} median, "
              f"{r_best / TARGET_RGB_CPU_MS:.2f} best (target {TARGET_RGB_CPU_MS:.0f} ms/image)")
    else:
        goal = f"(target {TARGET_CUDA_MS} ms/image)"
        print(f"CUDA depth / target      : {d_med / TARGET_CUDA_MS:.2f} {goal}")
        print(f"CUDA RGB fwd+bwd / target: {r_med / TARGET_CUDA_MS:.2f} {goal}")


if __name__ == "__main__":
    main()
