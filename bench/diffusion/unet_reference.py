#!/usr/bin/python3
"""PyTorch reference for the train-diffusion benchmark: the same conditional UNet as
packages/diffusion/src/unet.ts (improved-diffusion layout: GroupNorm + SiLU + 3x3 conv residual
blocks with the timestep + condition embedding added, self-attention at the configured
resolutions, strided-conv down, nearest + conv up, condition MLP [y; s] -> 512 -> 256 -> 4ch)
and the same training step: q_sample, eps-MSE + beta_t x0-reconstruction, backward, global-norm
clip, Adam, EMA.

Run with Debian's python3-torch: /usr/bin/python3 unet_reference.py CONFIG_JSON RES BATCH STEPS [threads] [--forward]
Prints one JSON object (parameter count, seconds per step).

--forward (bench/sampler): time the UNet forward alone, as a sampler calls it (torch.no_grad(),
one shared timestep per batch), instead of the training step; secondsPerStep is then seconds per
forward of the batch.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def gn(c, groups):
    return nn.GroupNorm(min(groups, c), c)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm1 = gn(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = gn(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = gn(c, groups)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, h * w).chunk(3, dim=1)
        a = torch.softmax(torch.einsum('bci,bcj->bij', q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum('bij,bcj->bci', a, v).reshape(b, c, h, w)
        return x + self.proj(out)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = cfg['baseChannels']
        mult = cfg['channelMult']
        groups = cfg['groups']
        emb = 4 * ch
        self.ch = ch
        self.time = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        h1, h2 = cfg['conditionHidden']
        self.cond = nn.Sequential(nn.Linear(cfg['identityDim'] + cfg['attributeDim'], h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, emb))
        self.inp = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        chans = [ch]
        cur = ch
        res = cfg['resolution']
        for level, m in enumerate(mult):
            for _ in range(cfg['resBlocks']):
                blocks = [ResBlock(cur, ch * m, emb, groups)]
                cur = ch * m
                if res in cfg['attentionResolutions']:
                    blocks.append(Attention(cur, groups))
                self.down.append(nn.ModuleList(blocks))
                chans.append(cur)
            if level < len(mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                chans.append(cur)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb, groups), Attention(cur, groups), ResBlock(cur, cur, emb, groups)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(mult))):
            for r in range(cfg['resBlocks'] + 1):
                blocks = [ResBlock(cur + chans.pop(), ch * mult[level], emb, groups)]
                cur = ch * mult[level]
                if res in cfg['attentionResolutions']:
                    blocks.append(Attention(cur, groups))
                if level > 0 and r == cfg['resBlocks']:
                    blocks.append(nn.Upsample(scale_factor=2, mode='nearest'))
                    blocks.append(nn.Conv2d(cur, cur, 3, padding=1))
                    res *= 2
                self.up.append(nn.ModuleList(blocks))
        self.out_norm = gn(cur, groups)
        self.out = nn.Conv2d(cur, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, y, s):
        emb = self.time(timestep_embedding(t, self.ch)) + self.cond(torch.cat([y, s], 1))
        h = self.inp(x)
        hs = [h]
        for blocks in self.down:
            for layer in blocks:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for blocks in self.up:
            h = torch.cat([h, hs.pop()], 1)
            for layer in blocks:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(F.silu(self.out_norm(h)))


def forward_only(net, cfg, res, batch, steps):
    """Seconds per sampling forward: eps for a batch at one shared timestep, no autograd."""
    net.eval()
    xt = torch.randn(batch, 3, res, res)
    t = torch.full((batch,), 500, dtype=torch.long)
    y = F.normalize(torch.randn(batch, cfg['identityDim']), dim=1)
    s = torch.randn(batch, cfg['attributeDim'])
    with torch.no_grad():
        for _ in range(2):
            net(xt, t, y, s)
        t0 = time.perf_counter()
        for _ in range(steps):
            net(xt, t, y, s)
    return (time.perf_counter() - t0) / steps


def main():
    forward = '--forward' in sys.argv[1:]
    argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != '--forward']
    cfg = json.loads(argv[1])
    res, batch, steps = int(argv[2]), int(argv[3]), int(argv[4])
    threads = int(argv[5]) if len(argv) > 5 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = {**cfg, 'resolution': res}
    net = UNet(cfg)
    if forward:
        sec = forward_only(net, cfg, res, batch, steps)
        print(json.dumps({
            'framework': f'pytorch {torch.__version__}', 'mode': 'forward', 'threads': threads, 'resolution': res, 'batch': batch,
            'parameters': sum(p.numel() for p in net.parameters()), 'secondsPerStep': sec, 'steps': steps,
        }))
        return
    ema = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    x0 = torch.rand(batch, 3, res, res) * 2 - 1
    y = F.normalize(torch.randn(batch, cfg['identityDim']), dim=1)
    s = torch.randn(batch, cfg['attributeDim'])

    def step():
        t = torch.randint(0, T, (batch,))
        noise = torch.randn_like(x0)
        a = abar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        eps = net(xt, t, y, s)
        x0hat = ((xt - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        gamma = 0.5 * (1 - torch.sigmoid(t.float() / T))
        loss = F.mse_loss(eps, noise) + (gamma * ((x0 - x0hat) ** 2).mean((1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, net.parameters()):
                e.mul_(0.999).add_(p.detach(), alpha=0.001)
        return float(loss)

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sec = (time.perf_counter() - t0) / steps
    print(json.dumps({
        'framework': f'pytorch {torch.__version__}', 'threads': threads, 'resolution': res, 'batch': batch,
        'parameters': sum(p.numel() for p in net.parameters()), 'secondsPerStep': sec, 'steps': steps,
    }))


if __name__ == '__main__':
    main()
