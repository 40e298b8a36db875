import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, createOptimizer, initBackend, tf } from '@id3/core';
import { IRESNET_LAYERS, iresnetConfigSchema, iresnetPlan, type IResNetDepth, type IResNetResolution } from '../iresnet-config';
import { IResNet } from '../iresnet';
import { MarginHead } from '../margin-head';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'id3-iresnet-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function images(rng: Rng, n: number, side: number): tf.Tensor4D {
  const v = new Float32Array(n * side * side * 3);
  for (let i = 0; i < v.length; i++) v[i] = rng.range(-1, 1);
  return tf.tensor4d(v, [n, side, side, 3]);
}

/**
 * PyTorch's parameter count of arcface_torch's IResNet (sum of numel over model.parameters()),
 * by formula: stem conv 3·c·9 + BN 2c + PReLU c; per IBasicBlock BN 2cin + conv 9·cin·cout +
 * BN 2cout + PReLU cout + conv 9·cout² + BN 2cout (+ conv1×1 cin·cout + BN 2cout where the
 * stride or width changes); BN 2·c4; fc c4·side²·emb + emb; features BN 2·emb (weight frozen).
 */
function torchParameterCount(layers: readonly number[], strides: readonly number[], width: number, side: number, emb: number): number {
  const ch = [64, 128, 256, 512].map((c) => c * width);
  let n = 3 * ch[0] * 9 + 2 * ch[0] + ch[0];
  let cin = ch[0];
  layers.forEach((blocks, i) => {
    for (let b = 0; b < blocks; b++) {
      const cout = ch[i];
      n += 2 * cin + 9 * cin * cout + 2 * cout + cout + 9 * cout * cout + 2 * cout;
      if ((b === 0 && strides[i] !== 1) || cin !== cout) n += cin * cout + 2 * cout;
      cin = cout;
    }
  });
  return n + 2 * ch[3] + ch[3] * side * side * emb + emb + 2 * emb;
}

/** Running mean + variance of every BatchNorm: 2 per BN channel (same walk as above). */
function bufferCount(layers: readonly number[], strides: readonly number[], width: number, emb: number): number {
  const ch = [64, 128, 256, 512].map((c) => c * width);
  let n = 2 * ch[0];
  let cin = ch[0];
  layers.forEach((blocks, i) => {
    for (let b = 0; b < blocks; b++) {
      n += 2 * (cin + 2 * ch[i]) + ((b === 0 && strides[i] !== 1) || cin !== ch[i] ? 2 * ch[i] : 0);
      cin = ch[i];
    }
  });
  return n + 2 * ch[3] + 2 * emb;
}

describe('IResNet config', () => {
  it('refuses an unsupported resolution, depth or width, naming the field', () => {
    expect(() => IResNet.create({ depth: 18, resolution: 48 }, 0)).toThrow(
      /field 'resolution': 48 is not a supported resolution \(one of 32, 64, 112\)/,
    );
    expect(() => IResNet.create({ depth: 100, resolution: 112 }, 0)).toThrow(
      /field 'depth': 100 is not a supported depth \(one of 18, 34, 50\)/,
    );
    expect(() => IResNet.create({ depth: 18, resolution: 32, width: 0.3 }, 0)).toThrow(/field 'width': 64·width must be a whole number/);
    expect(() => IResNet.create({ depth: 18, resolution: 32, dropout: 1 }, 0)).toThrow(/field 'dropout'/);
  });

  it('ends at 7×7 for 112 (arcface_torch), 4×4 for 64 and 32 (stride-1 first stage at 32)', () => {
    const plan = (resolution: IResNetResolution) => iresnetPlan(iresnetConfigSchema.parse({ depth: 18, resolution }));
    expect(plan(112).stages.map((s) => s.side)).toEqual([56, 28, 14, 7]);
    expect(plan(64).stages.map((s) => s.side)).toEqual([32, 16, 8, 4]);
    expect(plan(32).stages.map((s) => s.side)).toEqual([32, 16, 8, 4]);
    expect(plan(112).fcInputs).toBe(512 * 49);
    expect(plan(32).fcInputs).toBe(512 * 16);
  });
});

describe('IResNet', () => {
  const depths: IResNetDepth[] = [18, 34, 50];
  const resolutions: IResNetResolution[] = [32, 64, 112];
  for (const depth of depths) {
    for (const resolution of resolutions) {
      it(`IResNet-${depth} at ${resolution}×${resolution}: [n, embeddingDim] in both modes, parameters as arcface_torch's`, () => {
        const width = 0.125;
        const net = IResNet.create({ depth, resolution, width, embeddingDim: 32 }, 1);
        tf.tidy(() => {
          const x = images(new Rng(depth + resolution), 2, resolution);
          expect(net.forward(x, { training: true }).shape).toEqual([2, 32]);
          expect(net.forward(x, { training: false }).shape).toEqual([2, 32]);
        });
        const strides = resolution === 32 ? [1, 2, 2, 2] : [2, 2, 2, 2];
        expect(net.plan.finalSide).toBe(resolution === 112 ? 7 : 4);
        expect(net.parameterCount()).toBe(torchParameterCount(IRESNET_LAYERS[depth], strides, width, net.plan.finalSide, 32) - 32);
        expect(net.bufferCount()).toBe(bufferCount(IRESNET_LAYERS[depth], strides, width, 32));
        net.dispose();
      });
    }
  }

  it('IResNet-18 and -50 at width 1, 112×112: 24,025,600 and 43,590,848 PyTorch parameters, less the frozen features.weight', () => {
    // 43,590,848 is what PyTorch prints for arcface_torch's iresnet50 (sum of p.numel() over
    // model.parameters(), embedding 512); the formula gives it and 24,025,600 for iresnet18.
    const strides = [2, 2, 2, 2];
    expect(torchParameterCount(IRESNET_LAYERS[18], strides, 1, 7, 512)).toBe(24_025_600);
    expect(torchParameterCount(IRESNET_LAYERS[50], strides, 1, 7, 512)).toBe(43_590_848);
    for (const [depth, torchCount] of [
      [18, 24_025_600],
      [50, 43_590_848],
    ] as const) {
      const net = IResNet.empty({ depth, resolution: 112 }); // no random draws: counting only
      expect(net.parameterCount()).toBe(torchCount - 512);
      expect(net.layout().params[0]).toEqual({ name: 'conv1.weight', shape: [3, 3, 3, 64] });
      expect(net.layout().params.at(-1)).toEqual({ name: 'features.bias', shape: [512] });
      net.dispose();
    }
  });

  it('training mode uses batch statistics and moves the running averages; inference mode does neither', async () => {
    const net = IResNet.create({ depth: 18, resolution: 32, width: 0.125, embeddingDim: 16 }, 2);
    const x = images(new Rng(5), 4, 32);
    const before = net.flatBuffersSync();
    const alone = tf.tidy(() => net.forward(tf.slice(x, [0, 0, 0, 0], [1, -1, -1, -1]), { training: false }));
    const inBatch = tf.tidy(() => net.forward(x, { training: false }));
    expect(net.flatBuffersSync()).toEqual(before);
    // Inference: an image's embedding does not depend on the rest of its batch.
    const a = await alone.data();
    const b = (await inBatch.data()).slice(0, 16);
    a.forEach((v, i) => expect(v).toBeCloseTo(b[i], 4));
    tf.dispose(net.forward(x, { training: true }));
    const after = net.flatBuffersSync();
    expect(after).not.toEqual(before);
    // The first BN (bn1, after the stem conv) has running mean 0.1·batch mean: check it by hand.
    const stem = tf.tidy(() => tf.conv2d(x, net.params.params.get('conv1.weight') as tf.Tensor as tf.Tensor4D, 1, 1));
    const batchMean = await tf.tidy(() => tf.mean(stem, [0, 1, 2])).data();
    const runningMean = await (net.params.buffers.get('bn1.running_mean') as tf.Variable).data();
    batchMean.forEach((m, c) => expect(runningMean[c]).toBeCloseTo(0.1 * m, 5));
    tf.dispose([x, alone, inBatch, stem]);
    net.dispose();
  });

  it('gradients reach every parameter (on wasm) and none of the buffers', () => {
    const net = IResNet.create({ depth: 18, resolution: 32, width: 0.125, embeddingDim: 16 }, 3);
    const x = images(new Rng(6), 3, 32);
    const target = tf.randomNormal([3, 16], 0, 1, 'float32', 7);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(net.forward(x, { training: true }), target))) as tf.Scalar);
    expect(Object.keys(grads).sort()).toEqual(net.variables.map((v) => v.name).sort());
    for (const v of net.variables) {
      const g = grads[v.name].dataSync();
      expect(g.every(Number.isFinite)).toBe(true);
      expect(g.some((e) => e !== 0)).toBe(true);
    }
    tf.dispose([x, target, value, grads]);
    net.dispose();
  });

  it('dropout needs the run RNG in training, and is off in inference', () => {
    const net = IResNet.create({ depth: 18, resolution: 32, width: 0.125, embeddingDim: 8, dropout: 0.4 }, 4);
    const x = images(new Rng(7), 2, 32);
    expect(() => tf.tidy(() => net.forward(x, { training: true }))).toThrow(/dropout > 0 needs options.rng/);
    const snapshot = net.flatBuffersSync();
    const [d1, d2] = [1, 2].map((seed) => tf.tidy(() => net.forward(x, { training: true, rng: new Rng(seed) })));
    expect(Array.from(d1.dataSync())).not.toEqual(Array.from(d2.dataSync()));
    net.setFlatBuffers(snapshot);
    const [i1, i2] = [1, 2].map((seed) => tf.tidy(() => net.forward(x, { training: false, rng: new Rng(seed) })));
    expect(Array.from(i1.dataSync())).toEqual(Array.from(i2.dataSync()));
    expect(() => tf.tidy(() => net.forward(tf.zeros([1, 28, 28, 3]), { training: false }))).toThrow(/input must be \[n, 32, 32, 3\]/);
    tf.dispose([x, d1, d2, i1, i2]);
    net.dispose();
  });

  it('save/load round trip: same parameters, running statistics and embeddings; a different layout is refused', async () => {
    const net = IResNet.create({ depth: 18, resolution: 32, width: 0.125, embeddingDim: 16 }, 8);
    const x = images(new Rng(8), 3, 32);
    tf.dispose(net.forward(x, { training: true })); // running statistics away from their initial values
    const path = join(dir, 'backbone');
    await net.save(path, { step: 7 });
    const loaded = IResNet.load(path);
    expect(loaded.config).toEqual(net.config);
    expect(loaded.flatWeightsSync()).toEqual(net.flatWeightsSync());
    expect(loaded.flatBuffersSync()).toEqual(net.flatBuffersSync());
    const [a, b] = [net, loaded].map((n) => tf.tidy(() => n.forward(x, { training: false })));
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    const header = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as { meta: { step: number; buffers: { name: string }[] } };
    expect(header.meta.step).toBe(7);
    expect(header.meta.buffers[0].name).toBe('bn1.running_mean');

    header.meta.buffers[0].name = 'renamed';
    writeFileSync(`${path}.json`, JSON.stringify(header));
    expect(() => IResNet.load(path)).toThrow(/parameter layout does not match/);
    const head = MarginHead.create({ kind: 'arcface' }, { classes: 3, embeddingDim: 16 }, 0);
    await head.save(join(dir, 'head'));
    expect(() => IResNet.load(join(dir, 'head'))).toThrow(/not id3-iresnet-weights\/1 weights/);
    tf.dispose([x, a, b]);
    [net, loaded, head].forEach((n) => n.dispose());
  });

  it('tf.memory().numTensors stays flat across training steps (forward, backward, SGD)', () => {
    const net = IResNet.create({ depth: 18, resolution: 32, width: 0.125, embeddingDim: 16 }, 9);
    const head = MarginHead.create({ kind: 'arcface' }, { classes: 4, embeddingDim: 16 }, 9);
    const variables = [...net.variables, ...head.variables];
    const optimizer = createOptimizer({ kind: 'sgd' }, variables);
    const x = images(new Rng(9), 4, 32);
    const labels = [0, 1, 2, 3];
    const counts: number[] = [];
    for (let step = 1; step <= 4; step++) {
      const { value, grads } = tf.variableGrads(() => head.loss(net.forward(x, { training: true }), labels), variables);
      optimizer.apply(
        variables.map((v) => grads[v.name]),
        { step, learningRate: 0.01 },
      );
      tf.dispose([value, grads]);
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size).toBe(1);
    tf.dispose(x);
    optimizer.dispose();
    net.dispose();
    head.dispose();
  });
});
