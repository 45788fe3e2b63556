"""Deng'19 R-Net inference speed and memory: ms per image at batch 1 and 32, peak memory.

    .venv/bin/python benchmarks/infer.py [--backbone resnet50] [--size 224] [--batches 1 32]
        [--threads 2] [--devices cpu cuda] [--repeats N] [--warmup N] [--amp] [--json FILE]

The network is ``b3f_methods.deep3d.RNet`` (timm backbone -> 257 coefficients, Deng's layout;
random weights: speed does not depend on their values), in eval mode under
``torch.inference_mode``: image (B, 3, S, S) in [0, 1] -> coefficients. Each (device, batch)
setting runs in its own subprocess so that peak memories are separable:

- CPU: peak resident set size during the timed forwards (Linux ``VmHWM`` after resetting it
  through ``/proc/self/clear_refs``; elsewhere ``getrusage`` peak of the whole process) and its
  increase over the resident size with the model loaded;
- CUDA: ``torch.cuda.max_memory_allocated`` during the forwards (weights included).

Timing: ``--warmup`` untimed forwards, then ``--repeats`` timed ones (default
``max(3, 32 // batch)``); the median is reported (CUDA synchronised). CPU runs use ``--threads``
intra-op threads (default 2: the machine is shared); the load average is printed with the table.
Reference: Deng et al. report 20 ms per image for R-Net (ResNet-50, 224 px) on a TITAN Xp.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DENG_MS = 20.0  # Deng et al. 2019, R-Net on a TITAN Xp


# ============================================================================ child
def _proc_status_mb(field: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) / 1024 if m else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure(device: str, backbone: str, size: int, batch: int, threads: int, warmup: int, repeats: int,
            amp: bool) -> dict:
    """Time ``repeats`` forwards of R-Net on ``batch`` random images; returns one result row."""
    import torch

    torch.set_num_threads(threads)
    from b3f_methods.deep3d import RNet

    from benchmark3dface.facemodel import DENG_LAYOUT

    dev = torch.device(device)
    net = RNet(backbone, DENG_LAYOUT.size, zero_init_head=False).eval().to(dev)
    image = torch.rand(batch, 3, size, size, device=dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_mb = _proc_status_mb("VmRSS") if dev.type == "cpu" else torch.cuda.memory_allocated() / 2**20
    exact_peak = _reset_peak_rss() if dev.type == "cpu" else True

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, enabled=amp and dev.type == "cuda"):
            net(image)[0]
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        forward()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward()
        times.append((time.perf_counter() - t0) * 1e3)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        name = torch.cuda.get_device_name(dev)
    else:
        peak_mb = _proc_status_mb("VmHWM") if exact_peak else None
        if peak_mb is None:
            import resource

            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
            exact_peak = False
        name = f"cpu x{threads} threads"
    med = statistics.median(times)
    return {"device": device, "device_name": name, "backbone": backbone, "size": size, "batch": batch,
            "threads": threads if dev.type == "cpu" else None, "amp": bool(amp and dev.type == "cuda"),
            "repeats": repeats, "warmup": warmup, "ms_per_batch": med, "ms_per_image": med / batch,
            "ms_per_batch_min": min(times), "peak_mb": peak_mb, "base_mb": base_mb,
            "peak_is_inference_only": exact_peak, "params_m": sum(p.numel() for p in net.parameters()) / 1e6}


# ============================================================================ parent
def run_setting(args: argparse.Namespace, device: str, batch: int) -> dict:
    repeats = args.repeats if args.repeats is not None else max(3, 32 // batch)
    warmup = args.warmup if args.warmup is not None else (2 if batch > 8 else 5)
    cmd = [sys.executable, __file__, "--child", "--devices", device, "--batches", str(batch), "--backbone",
           args.backbone, "--size", str(args.size), "--threads", str(args.threads), "--repeats", str(repeats),
           "--warmup", str(warmup)] + (["--amp"] if args.amp else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed ({device}, batch {batch}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def table(rows: list[dict]) -> str:
    head = (f"{'device':<26} {'backbone':<10} {'size':>4} {'batch':>5} {'ms/image':>9} {'ms/batch':>9} "
            f"{'min ms/b':>9} {'peak MB':>8} {'+MB infer':>9} {'vs 20ms':>8}")
    out = [head, "-" * len(head)]
    for r in rows:
        extra = r["peak_mb"] - r["base_mb"] if r["device"] == "cpu" and r["peak_is_inference_only"] else float("nan")
        out.append(f"{r['device_name'][:26]:<26} {r['backbone']:<10} {r['size']:>4} {r['batch']:>5} "
                   f"{r['ms_per_image']:>9.2f} {r['ms_per_batch']:>9.1f} {r['ms_per_batch_min']:>9.1f} "
                   f"{r['peak_mb']:>8.0f} {extra:>9.0f} {r['ms_per_image'] / DENG_MS:>7.2f}x")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="resnet50", help="timm backbone (resnet50 = paper)")
    ap.add_argument("--size", type=int, default=224, help="input side in px (224 = paper)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    ap.add_argument("--threads", type=int, default=2, help="CPU intra-op threads")
    ap.add_argument("--repeats", type=int, default=None, help="timed forwards (default max(3, 32 // batch))")
    ap.add_argument("--warmup", type=int, default=None, help="untimed forwards first (default 5, or 2 above batch 8)")
    ap.add_argument("--amp", action="store_true", help="CUDA: float16 autocast")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        row = measure(args.devices[0], args.backbone, args.size, args.batches[0], args.threads, args.warmup,
                      args.repeats, args.amp)
        print(json.dumps(row))
        return 0

    devices = args.devices or (["cpu", "cuda"] if cuda_available() else ["cpu"])
    if "cuda" in devices and not cuda_available():
        print("[infer] CUDA requested but not available: skipped", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    load_before = os.getloadavg()
    rows = []
    for device in devices:
        for batch in args.batches:
            rows.append(run_setting(args, device, batch))
            r = rows[-1]
            print(f"[infer] {device} batch {batch}: {r['ms_per_image']:.2f} ms/image, peak {r['peak_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"R-Net ({args.backbone}, {args.size} px, {rows[0]['params_m']:.1f} M parameters), inference only "
          f"(image -> 257 coefficients), median of repeats")
    print(table(rows))
    print(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} on {os.cpu_count()} CPUs")
    print("peak MB: CPU = peak resident set size of the process during the forwards (torch + model + activations), "
          "+MB infer = its rise over the loaded model; CUDA = max_memory_allocated. "
          f"vs 20ms = ms/image over Deng's {DENG_MS:.0f} ms (TITAN Xp).")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
