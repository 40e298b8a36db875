#!/usr/bin/python3
"""PyTorch reference for the face-recognition training-step benchmark: arcface_torch's iresnet18
(backbones/iresnet.py) with the same low-resolution adaptation as packages/fr-train
(iresnet-config.ts, IRESNET_STAGE_STRIDES: stage strides 1-2-2-2 at 32x32, 2-2-2-2 at 64 and
112; the stem is a stride-1 3x3 conv everywhere), an ArcFace head as arcface_torch's PartialFC
(sample rate 1) + CombinedMarginLoss (normalised W, straight-through margin 0.5, scale
sqrt(2)*ln(C - 1) as id3's AdaCos default), cross-entropy, and SGD momentum 0.9, weight decay
5e-4, lr 0.1 — the step packages/fr-train's learning test takes.

Run with Debian's python3-torch:
  /usr/bin/python3 iresnet_reference.py RES BATCH WIDTH CLASSES STEPS WARMUP THREADS [EMBEDDING [MICRO_BATCH]]
Prints one JSON object (parameter counts, forward MACs per image, seconds per step, peak RSS,
which kernels torch uses).
"""
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# packages/fr-train/src/iresnet-config.ts: IRESNET_STAGE_STRIDES and IRESNET_LAYERS[18].
STAGE_STRIDES = {32: [1, 2, 2, 2], 64: [2, 2, 2, 2], 112: [2, 2, 2, 2]}
STAGE_CHANNELS = [64, 128, 256, 512]
LAYERS_18 = [2, 2, 2, 2]


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (downsampled) input."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    def __init__(self, resolution, width=1.0, layers=LAYERS_18, num_features=512, dropout=0.0):
        super().__init__()
        strides = STAGE_STRIDES[resolution]
        chans = [round(c * width) for c in STAGE_CHANNELS]
        self.inplanes = chans[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(chans[0], layers[0], strides[0])
        self.layer2 = self._make_layer(chans[1], layers[1], strides[1])
        self.layer3 = self._make_layer(chans[2], layers[2], strides[2])
        self.layer4 = self._make_layer(chans[3], layers[3], strides[3])
        self.bn2 = nn.BatchNorm2d(chans[3], eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = resolution // math.prod(strides)
        self.fc = nn.Linear(chans[3] * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-05),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(IBasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.bn2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        return self.features(self.fc(x))


class ArcFaceHead(nn.Module):
    """PartialFC (sample rate 1) + CombinedMarginLoss(s, m1=1, m2=margin, m3=0): logits from
    normalised embeddings and centres, clamped to [-1, 1], cos(theta_y + m) at the target computed
    without gradient (straight-through, as arcface_torch's in-place no_grad edit), times s,
    cross-entropy. W [classes, features] starts at N(0, 0.01^2)."""

    def __init__(self, classes, num_features=512, margin=0.5, scale=None):
        super().__init__()
        self.weight = nn.Parameter(torch.normal(0, 0.01, (classes, num_features)))
        self.margin = margin
        self.scale = scale if scale is not None else math.sqrt(2) * math.log(classes - 1)

    def forward(self, embeddings, labels):
        logits = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1, 1)
        target = logits.gather(1, labels[:, None])
        with torch.no_grad():
            delta = torch.cos(torch.acos(target) + self.margin) - target
        logits = logits.scatter_add(1, labels[:, None], delta)
        return F.cross_entropy(logits * self.scale, labels)


def forward_macs(net, resolution):
    """Multiply-accumulates of the convolutions and the fc layer for one image (hooks)."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            macs.append(out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        else:
            macs.append(m.in_features * m.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, resolution, resolution))
    net.train()
    for h in handles:
        h.remove()
    return sum(macs)


def loaded_blas():
    """The BLAS / OpenMP shared objects mapped into this process (which kernels back torch)."""
    try:
        with open('/proc/self/maps') as f:
            libs = {line.split()[-1] for line in f if '.so' in line}
    except OSError:
        return []
    keys = ('blas', 'lapack', 'mkl', 'gomp', 'omp', 'dnnl', 'mkldnn', 'xnnpack')
    return sorted(os.path.basename(p) for p in libs if any(k in os.path.basename(p).lower() for k in keys))


def main():
    res, batch, width, classes, steps, warmup, threads = (
        int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
        int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]),
    )
    embedding = int(sys.argv[8]) if len(sys.argv) > 8 else 512
    micro = int(sys.argv[9]) if len(sys.argv) > 9 else batch
    passes = batch // micro
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = IResNet(res, width, num_features=embedding)
    head = ArcFaceHead(classes, embedding)
    macs = forward_macs(net, res)
    trainable = [p for p in [*net.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, 3, res, res) * 2 - 1
    labels = torch.randint(0, classes, (batch,))

    def step():
        # micro < batch: the gradients of `passes` micro-batches averaged into one update (each
        # micro-batch its own BatchNorm statistics, as data-parallel replicas without SyncBN)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(passes):
            s = slice(k * micro, (k + 1) * micro)
            loss = head(net(x[s]), labels[s]) / passes
            loss.backward()
            total += float(loss)
        opt.step()
        return total

    losses = [step() for _ in range(warmup)]
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    config = torch.__config__.show().strip().splitlines()
    print(json.dumps({
        'framework': f'pytorch {torch.__version__}',
        'threads': threads,
        'torchThreads': torch.get_num_threads(),
        'resolution': res,
        'batch': batch,
        'microBatch': micro,
        'width': width,
        'classes': classes,
        'scale': head.scale,
        # every parameter (arcface_torch's count: includes the frozen features.weight) and the
        # trainable ones (what id3 stores and counts)
        'parameters': sum(p.numel() for p in [*net.parameters(), *head.parameters()]),
        'trainableParameters': sum(p.numel() for p in trainable),
        'backboneParameters': sum(p.numel() for p in net.parameters()),
        'forwardMacsPerImage': macs + embedding * classes,
        'steps': steps,
        'warmup': warmup,
        'secondsPerStep': sum(times) / len(times),
        'stepSeconds': times,
        'losses': losses,
        'peakRssMiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        'mkldnn': torch.backends.mkldnn.is_available(),
        'configLines': [line.strip()[:160] for line in config if line.strip()][:8],
        'blasLibraries': loaded_blas(),
        'env': {k: os.environ.get(k) for k in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS')},
    }))


if __name__ == '__main__':
    main()
