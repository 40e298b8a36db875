import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, initBackend, tf } from '@id3/core';
import { IResNet } from '../iresnet';
import { adaCosScale, l2Normalize, marginLogits, marginWarmupFactor, softmaxCrossEntropy, type MarginSpec } from '../margin';
import { MarginHead } from '../margin-head';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const values = (t: tf.Tensor): number[] => Array.from(t.dataSync());

function expectClose(got: number[], expected: number[], digits = 5): void {
  expect(got).toHaveLength(expected.length);
  got.forEach((v, i) => expect(v).toBeCloseTo(expected[i], digits));
}

const arcface = (scale: number, margin = 0.5): MarginSpec => ({ kind: 'arcface', margin, scale });

describe('AdaCos scale', () => {
  it('is √2·ln(C − 1): 1.55 at 4 classes, 8.06 at 300, 13.0 at 10,000; undefined below 3', () => {
    expect(adaCosScale(4)).toBeCloseTo(Math.SQRT2 * Math.log(3), 12);
    expect(adaCosScale(300)).toBeCloseTo(8.0616, 3);
    expect(adaCosScale(10_000)).toBeCloseTo(13.0253, 3);
    expect(() => adaCosScale(2)).toThrow(/at least 3 classes/);
  });
});

describe('margin logits (hand-computed)', () => {
  // Rows: θ_y = 0 (label 0); θ_y = 3.0 so θ_y + m = 3.5 > π (label 2); θ_y = 1 (label 1).
  const cos = [
    [1, 0.2, -0.3],
    [0.1, 0.5, Math.cos(3)],
    [0.3, Math.cos(1), -0.2],
  ];
  const labels = [0, 2, 1];

  it('ArcFace: s·cos(θ_y + m) at the target, s·cos θ elsewhere — past π as arcface_torch computes it', () => {
    const got = values(marginLogits(tf.tensor2d(cos), labels, arcface(2)));
    expectClose(got, [2 * Math.cos(0.5), 0.4, -0.6, 0.2, 1, 2 * Math.cos(3.5), 0.6, 2 * Math.cos(1.5), -0.4]);
    // arcface_torch's CombinedMarginLoss takes cos(θ + m) as is past π (−0.9365 here), not the older
    // insightface fallback cos θ − m·sin m (−1.2297).
    expect(got[5] / 2).toBeCloseTo(-0.93646, 4);
    expect(got[5] / 2).not.toBeCloseTo(Math.cos(3) - 0.5 * Math.sin(0.5), 2);
  });

  it('CosFace: s·(cos θ_y − m); softmax: s·cos θ; the margin factor scales the margin (0 = softmax warm-up)', () => {
    const c = tf.tensor2d(cos);
    expectClose(values(marginLogits(c, labels, { kind: 'cosface', margin: 0.35, scale: 2 })), [
      1.3,
      0.4,
      -0.6,
      0.2,
      1,
      2 * (Math.cos(3) - 0.35),
      0.6,
      2 * (Math.cos(1) - 0.35),
      -0.4,
    ]);
    const plain = cos.flat().map((v) => 3 * v);
    expectClose(values(marginLogits(c, labels, { kind: 'softmax', margin: 0, scale: 3 })), plain);
    expectClose(values(marginLogits(c, labels, arcface(3), 0)), plain);
    expect(values(marginLogits(c, labels, arcface(1), 0.5))[7]).toBeCloseTo(Math.cos(1.25), 5);
    expect(() => marginLogits(c, labels, arcface(1), 1.5)).toThrow(/marginFactor 1.5 must be in \[0, 1\]/);
    expect(() => marginLogits(c, [0, 3, 1], arcface(1))).toThrow(/labels\[1\] = 3 is not a class in \[0, 3\)/);
  });

  it('clips cosines that rounding carried past ±1 (arccos would be NaN)', () => {
    const got = values(marginLogits(tf.tensor2d([[1.0001, -1.0001]]), [0], arcface(1)));
    expectClose(got, [Math.cos(0.5), -1]);
  });

  it('ArcFace gradient is straight-through (∂logit/∂cos = s), finite at θ = 0 and θ = π', () => {
    const s = 4;
    const c = tf.tensor2d([
      [0.6, 0.2],
      [1, -1],
      [-1, 0.3],
    ]);
    const labels2 = [0, 0, 0];
    const grad = tf.grad((x: tf.Tensor) => softmaxCrossEntropy(marginLogits(x as tf.Tensor2D, labels2, arcface(s)), labels2))(c);
    const rows = [
      [0.6, 0.2],
      [1, -1],
      [-1, 0.3],
    ];
    const expected = rows.flatMap(([c0, c1]) => {
      const l0 = s * Math.cos(Math.acos(c0) + 0.5);
      const l1 = s * c1;
      const p0 = Math.exp(l0) / (Math.exp(l0) + Math.exp(l1));
      // d(mean CE)/d cos = s·(p − onehot)/n
      return [(s * (p0 - 1)) / 3, (s * (1 - p0)) / 3];
    });
    const got = values(grad);
    expect(got.every(Number.isFinite)).toBe(true);
    expectClose(got, expected, 5);
  });
});

describe('cross-entropy', () => {
  it('matches −log softmax by hand and does not overflow on large logits', () => {
    const z = 2 - Math.log(Math.exp(2) + 1 + Math.exp(-1));
    expect(softmaxCrossEntropy(tf.tensor2d([[2, 0, -1]]), [0]).dataSync()[0]).toBeCloseTo(-z, 6);
    const big = tf.tensor2d([
      [1000, 0],
      [0, 1000],
    ]);
    expect(softmaxCrossEntropy(big, [0, 1]).dataSync()[0]).toBeCloseTo(0, 6);
    expect(softmaxCrossEntropy(big, [1, 0]).dataSync()[0]).toBeCloseTo(1000, 3);
  });
});

describe('margin warm-up', () => {
  it("'step' switches the margin on after k steps, 'linear' ramps it", () => {
    expect([1, 100, 101].map((s) => marginWarmupFactor(s, 100))).toEqual([0, 0, 1]);
    expect([0, 50, 100, 200].map((s) => marginWarmupFactor(s, 100, 'linear'))).toEqual([0, 0.5, 1, 1]);
    expect(marginWarmupFactor(1, 0)).toBe(1);
  });
});

describe('MarginHead', () => {
  it('cosines between normalised embeddings and normalised class centres (hand-computed)', () => {
    const head = MarginHead.create({ kind: 'arcface', scale: 10 }, { classes: 3, embeddingDim: 2 }, 0);
    head.weight.assign(
      tf.tensor2d([
        [2, 0, 1],
        [0, 3, -1],
      ]),
    ); // centres (1, 0), (0, 1), (1, −1)/√2
    const cos = head.cosines(tf.tensor2d([[3, 4]]));
    expectClose(values(cos), [0.6, 0.8, -0.2 / Math.SQRT2]);
    const logits = head.logits(tf.tensor2d([[3, 4]]), [1]);
    expectClose(values(logits), [6, 10 * Math.cos(Math.acos(0.8) + 0.5), -2 / Math.SQRT2], 4);
    expect(head.spec).toEqual({ kind: 'arcface', margin: 0.5, scale: 10 });
    head.dispose();
  });

  it('defaults: ArcFace m = 0.5, CosFace m = 0.35, scale √2·ln(C − 1); config errors name the field', () => {
    const arc = MarginHead.create({ kind: 'arcface' }, { classes: 300, embeddingDim: 4 }, 0);
    expect(arc.spec.margin).toBe(0.5);
    expect(arc.spec.scale).toBeCloseTo(adaCosScale(300), 10);
    const cosFace = MarginHead.create({ kind: 'cosface', scale: 64 }, { classes: 300, embeddingDim: 4 }, 0);
    expect(cosFace.spec).toEqual({ kind: 'cosface', margin: 0.35, scale: 64 });
    expect(() => MarginHead.create({ kind: 'arcface' }, { classes: 2, embeddingDim: 4 }, 0)).toThrow(/field 'scale'/);
    expect(() => MarginHead.create({ kind: 'softmax', normalize: false, scale: 3 }, { classes: 5, embeddingDim: 4 }, 0)).toThrow(
      /field 'scale': a softmax without normalisation has no scale/,
    );
    expect(() => MarginHead.create({ kind: 'arcface', margin: 4 }, { classes: 5, embeddingDim: 4 }, 0)).toThrow(/field 'margin'/);
    [arc, cosFace].forEach((h) => h.dispose());
  });

  it('the unnormalised softmax is x·W', () => {
    const head = MarginHead.create({ kind: 'softmax', normalize: false }, { classes: 2, embeddingDim: 2 }, 0);
    head.weight.assign(
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
    );
    expectClose(values(head.logits(tf.tensor2d([[1, -1]]), [0])), [-2, -2]);
    head.dispose();
  });

  it('the loss sends gradients to every backbone parameter and to W', () => {
    const net = IResNet.create({ depth: 18, resolution: 32, width: 0.125, embeddingDim: 8 }, 1);
    const head = MarginHead.create({ kind: 'arcface', scale: 8 }, { classes: 3, embeddingDim: 8 }, 1);
    const rng = new Rng(2);
    const x = tf.tensor4d(
      Float32Array.from({ length: 3 * 32 * 32 * 3 }, () => rng.range(-1, 1)),
      [3, 32, 32, 3],
    );
    const variables = [...net.variables, ...head.variables];
    const { value, grads } = tf.variableGrads(() => head.loss(net.forward(x, { training: true }), [0, 1, 2]), variables);
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    for (const v of variables) {
      const g = grads[v.name].dataSync();
      expect(g.every(Number.isFinite)).toBe(true);
      expect(g.some((e) => e !== 0)).toBe(true);
    }
    tf.dispose([x, value, grads]);
    net.dispose();
    head.dispose();
  });

  it('save/load round trip', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-head-'));
    try {
      const head = MarginHead.create({ kind: 'cosface' }, { classes: 5, embeddingDim: 3 }, 4);
      await head.save(join(dir, 'head'));
      const loaded = MarginHead.load(join(dir, 'head'));
      expect(loaded.spec).toEqual(head.spec);
      expect(loaded.shape).toEqual(head.shape);
      expect(values(loaded.weight)).toEqual(values(head.weight));
      [head, loaded].forEach((h) => h.dispose());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('l2Normalize leaves zero vectors at zero (no NaN)', () => {
    expect(values(l2Normalize(tf.tensor2d([[0, 0]]), 1))).toEqual([0, 0]);
  });
});
