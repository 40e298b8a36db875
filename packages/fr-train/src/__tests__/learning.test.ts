import { Rng, createOptimizer, initBackend, tf } from '@id3/core';
import { IResNet } from '../iresnet';
import { MarginHead } from '../margin-head';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const SIDE = 32;
const CLASSES = 4;
const STEPS = 20;

/**
 * One 32×32 RGB image in [-1, 1] of a class: horizontal stripes, vertical stripes, diagonal
 * stripes or a centred blob, each with a random phase/position, a random tint and pixel noise —
 * no two images alike, the class only in the structure.
 */
function drawImage(rng: Rng, label: number, out: Float32Array, offset: number): void {
  const phase = rng.range(0, 2 * Math.PI);
  const period = rng.range(5, 9);
  const tint = [rng.range(0.4, 1), rng.range(0.4, 1), rng.range(0.4, 1)];
  const cx = rng.range(12, 20);
  const cy = rng.range(12, 20);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      let v: number;
      if (label === 0) v = Math.sin((2 * Math.PI * y) / period + phase);
      else if (label === 1) v = Math.sin((2 * Math.PI * x) / period + phase);
      else if (label === 2) v = Math.sin((2 * Math.PI * (x + y)) / (1.4 * period) + phase);
      else v = 2 * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 40) - 1;
      for (let c = 0; c < 3; c++)
        out[offset + (y * SIDE + x) * 3 + c] = Math.max(-1, Math.min(1, 0.8 * v * tint[c] + rng.range(-0.5, 0.5)));
    }
  }
}

function batch(rng: Rng, n: number): { x: tf.Tensor4D; labels: number[] } {
  const values = new Float32Array(n * SIDE * SIDE * 3);
  const labels = Array.from({ length: n }, (_, i) => i % CLASSES);
  labels.forEach((label, i) => drawImage(rng, label, values, i * SIDE * SIDE * 3));
  return { x: tf.tensor4d(values, [n, SIDE, SIDE, 3]), labels };
}

function accuracy(net: IResNet, head: MarginHead, x: tf.Tensor4D, labels: number[]): number {
  const predicted = tf.tidy(() => tf.argMax(head.cosines(net.forward(x, { training: false })), 1).dataSync());
  return labels.filter((y, i) => predicted[i] === y).length / labels.length;
}

it('a width-0.25 IResNet-18 at 32×32 with an ArcFace head learns 4 synthetic classes with SGD in seconds', () => {
  const started = performance.now();
  const net = IResNet.create({ depth: 18, resolution: 32, width: 0.25, embeddingDim: 64 }, 1);
  // The default scale: AdaCos √2·ln 3 = 1.55 for 4 classes.
  const head = MarginHead.create({ kind: 'arcface' }, { classes: CLASSES, embeddingDim: 64 }, 1);
  const variables = [...net.variables, ...head.variables];
  const optimizer = createOptimizer({ kind: 'sgd', momentum: 0.9, weightDecay: 5e-4 }, variables);
  const rng = new Rng(42);
  const test = batch(new Rng(7), 32);
  const before = accuracy(net, head, test.x, test.labels);
  const losses: number[] = [];
  for (let step = 1; step <= STEPS; step++) {
    const { x, labels } = batch(rng, 8);
    const { value, grads } = tf.variableGrads(() => head.loss(net.forward(x, { training: true }), labels), variables);
    losses.push(value.dataSync()[0]);
    optimizer.apply(
      variables.map((v) => grads[v.name]),
      { step, learningRate: 0.1 },
    );
    tf.dispose([x, value, grads]);
  }
  const after = accuracy(net, head, test.x, test.labels);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `learning: accuracy ${before} → ${after} on 32 held-out images; loss ${losses[0].toFixed(3)} → ${losses.at(-1)?.toFixed(3)}; ${seconds.toFixed(1)} s`,
  );
  expect(after).toBeGreaterThanOrEqual(0.75); // chance: 0.25
  expect(losses.slice(-5).reduce((a, b) => a + b) / 5).toBeLessThan(losses.slice(0, 5).reduce((a, b) => a + b) / 5);
  tf.dispose(test.x);
  optimizer.dispose();
  net.dispose();
  head.dispose();
});
