"""DF-MVR inference time per (left, front, right) triplet on this machine, measured side by side
in one run: the paper-size network (Tri-UNet 64..1024 -> 64 fused channels, RedNet-50, 224 px)
and the quick-profile network (64 px, reduced widths, RedNet-26), plus the involution layer
against the depthwise convolution it generalises. Paper: 244 ms per triplet (RTX 3090).

    OMP_NUM_THREADS=2 python benchmarks/dfmvr_infer.py [--repeats 3] [--device cpu]

Times cover the network only (parse channel and decoding excluded), batch of one triplet, after
one warm-up call, torch.no_grad, eval mode; the median of ``--repeats`` calls is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

PAPER = {"image_size": 224, "widths": (64, 128, 256, 512, 1024), "fused_channels": 64, "depth": 50,
         "reg_width": 64, "group_channels": 16}
QUICK = {"image_size": 64, "widths": (16, 32, 64), "fused_channels": 16, "depth": 26, "reg_width": 16,
         "group_channels": 8}


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: int = 1, sync: Callable[[], None] | None = None
              ) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def network_ms(cfg: dict, repeats: int, device: str) -> float:
    from b3f_methods.dfmvr import DFMVR

    torch.manual_seed(0)
    m = DFMVR(**cfg).to(device).eval()
    s = cfg["image_size"]
    x = torch.rand(1, 3, 13, s, s, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    with torch.no_grad():
        return statistics.median(time_call(lambda: m(x), repeats, 1, sync))


def involution_vs_conv_ms(repeats: int, device: str) -> tuple[float, float]:
    from b3f_methods.dfmvr import Involution

    torch.manual_seed(0)
    inv = Involution(64, 7, 1, 16, 4).to(device).eval()
    conv = torch.nn.Conv2d(64, 64, 7, padding=3, groups=64).to(device).eval()
    x = torch.rand(1, 64, 56, 56, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    with torch.no_grad():
        return (statistics.median(time_call(lambda: inv(x), repeats, 1, sync)),
                statistics.median(time_call(lambda: conv(x), repeats, 1, sync)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-paper", action="store_true", help="quick network only")
    a = ap.parse_args(argv)
    print(f"device={a.device} torch_threads={torch.get_num_threads()} repeats={a.repeats}")
    quick = network_ms(QUICK, a.repeats, a.device)
    print(f"quick network (64 px, RedNet-26): {quick:.1f} ms per triplet")
    if not a.skip_paper:
        paper = network_ms(PAPER, a.repeats, a.device)
        print(f"paper network (224 px, Tri-UNet 64..1024, RedNet-50): {paper:.1f} ms per triplet "
              f"(paper: 244 ms on an RTX 3090); paper/quick = {paper / quick:.1f}x")
    inv, conv = involution_vs_conv_ms(a.repeats, a.device)
    print(f"involution 64ch k7 @56px: {inv:.2f} ms, depthwise conv: {conv:.2f} ms, ratio {inv / conv:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
