#!/usr/bin/python3
"""PyTorch reference for the Tammes anchors benchmark: the same algorithm as
packages/anchors/src/tammes.ts (k-nearest lists refreshed every R steps, each point pushed
away from its neighbours by the tangential part of the softmax-weighted neighbour sum,
geometric sharpness/step schedules, re-normalised every step), plus exact statistics.

Run with Debian's python3-torch: /usr/bin/python3 tammes_reference.py N DIM ITERS [threads]
Prints one JSON object.
"""
import json
import math
import sys
import time

import torch


def stats(x, block=1024):
    n = x.shape[0]
    nearest = torch.empty(n)
    maxcos = -2.0
    total = 0.0
    for s in range(0, n, block):
        g = x[s:s + block] @ x.T
        idx = torch.arange(s, min(s + block, n))
        g[idx - s, idx] = 0.0
        # sum over ordered pairs (self excluded); the mean is the same over unordered pairs
        total += float(g.double().sum())
        g[idx - s, idx] = -2.0
        nearest[s:s + block] = g.max(1).values
        maxcos = max(maxcos, float(nearest[s:s + block].max()))
    return {
        "maxCos": maxcos,
        "minAngleDeg": math.degrees(math.acos(min(1.0, maxcos))),
        "meanNearestCos": float(nearest.mean()),
        "meanCos": total / (n * (n - 1)),
    }


def tammes(x, iters, k=32, refresh=20, step0=0.1, step1=0.001, tau0=10.0, tau1=1000.0, block=1024):
    n = x.shape[0]
    nbr = None
    for step in range(iters):
        t = step / max(1, iters - 1)
        tau = tau0 * (tau1 / tau0) ** t
        eta = step0 * (step1 / step0) ** t
        if nbr is None or step % refresh == 0:
            parts = []
            for s in range(0, n, block):
                g = x[s:s + block] @ x.T
                idx = torch.arange(s, min(s + block, n))
                g[idx - s, idx] = -4.0
                parts.append(g.topk(k, dim=1).indices)
            nbr = torch.cat(parts)
        out = torch.empty_like(x)
        for s in range(0, n, block):
            xb = x[s:s + block]
            rows = min(block, n - s)
            xn = torch.index_select(x, 0, nbr[s:s + block].reshape(-1)).view(rows, k, -1)  # [b, k, d]
            cos = torch.bmm(xn, xb.unsqueeze(2)).squeeze(2)
            w = torch.softmax(cos * tau, dim=1)
            pull = torch.bmm(w.unsqueeze(1), xn).squeeze(1)
            tangent = pull - (pull * xb).sum(1, keepdim=True) * xb
            moved = xb - eta * tangent
            out[s:s + block] = moved / moved.norm(dim=1, keepdim=True)
        x = out
    return x


def main():
    n, dim, iters = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x0 = torch.randn(n, dim)
    x0 = x0 / x0.norm(dim=1, keepdim=True)
    t = time.time()
    random_stats = stats(x0)
    random_seconds = time.time() - t
    t = time.time()
    with torch.no_grad():
        x = tammes(x0.clone(), iters)
    optimise_seconds = time.time() - t
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "random": random_stats,
        "randomStatsSeconds": random_seconds,
        "tammes": stats(x),
        "optimiseSeconds": optimise_seconds,
        "iterations": iters,
    }))


if __name__ == "__main__":
    main()
