"""Rows per model call: how the chunk size changes perturbation cost on the CPU.

Times ``attribute(method="ablation")`` (8 groups of 8 columns, MLP
64-256-256-1) for several ``batch_size`` values, in alternating rounds so
drift on a shared machine hits every size alike. Prints median ms per size.

    python benchmarks/chunk_size.py --threads 1 --rows 1024
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_it

from featurelens.attribution import attribute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    w = args.width
    model = nn.Sequential(nn.Linear(64, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 1)).eval()
    x = torch.randn(args.rows, 64)
    groups = {f"g{k}": list(range(8 * k, 8 * k + 8)) for k in range(8)}
    sizes = (512, 1024, 2048, 4096, 8192)
    times: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(args.rounds):
        for s in sizes:
            times[s].append(time_it(lambda s=s: attribute(model, x, method="ablation", groups=groups, batch_size=s),
                                    repeats=5)[0])
    print(f"# threads {args.threads}, rows {args.rows}, width {w}, torch {torch.__version__}")
    for s in sizes:
        print(f"batch_size {s:5d}: {statistics.median(times[s]):7.2f} ms")


if __name__ == "__main__":
    main()
