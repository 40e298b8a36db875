import { Rng, initBackend, tf } from '@id3/core';
import { batchNormInference, batchNormTraining } from '../batch-norm';
import { batchNorm, conv2d, prelu } from '../layers';
import { ParamStore } from '../param-store';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

function normal(rng: Rng, shape: number[]): tf.Tensor {
  return tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))), shape);
}

async function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.max(tf.abs(tf.sub(a, b)));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

const values = async (t: tf.Tensor): Promise<number[]> => Array.from(await t.data());

describe('BatchNorm', () => {
  // Two channels over a batch of 4 (1×1 maps): channel 0 = 1, 2, 3, 6; channel 1 = -2, 0, 0, 2.
  const batch = () => tf.tensor4d([1, -2, 2, 0, 3, 0, 6, 2], [4, 1, 1, 2]);

  it('training mode: normalises with the batch mean and biased variance, moves the running averages by 0.1 with the unbiased variance', async () => {
    const p = new ParamStore(new Rng(1));
    const y = batchNorm(p, 'bn', batch(), { training: true });
    // Channel 0: mean 3, biased var (4+1+0+9)/4 = 3.5, unbiased 14/3. Channel 1: mean 0, var 2, unbiased 8/3.
    const expected = [1, 2, 3, 6].flatMap((v, i) => [(v - 3) / Math.sqrt(3.5 + 1e-5), ([-2, 0, 0, 2][i] - 0) / Math.sqrt(2 + 1e-5)]);
    const got = await values(y);
    got.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
    const mean = await values(p.buffers.get('bn.running_mean') as tf.Variable);
    const variance = await values(p.buffers.get('bn.running_var') as tf.Variable);
    expect(mean[0]).toBeCloseTo(0.9 * 0 + 0.1 * 3, 6);
    expect(mean[1]).toBeCloseTo(0, 6);
    expect(variance[0]).toBeCloseTo(0.9 * 1 + 0.1 * (14 / 3), 6);
    expect(variance[1]).toBeCloseTo(0.9 * 1 + 0.1 * (8 / 3), 6);
    // A second step moves them again from there.
    batchNorm(p, 'bn', batch(), { training: true });
    expect((await values(p.buffers.get('bn.running_mean') as tf.Variable))[0]).toBeCloseTo(0.9 * 0.3 + 0.1 * 3, 6);
    // The running statistics are buffers, not parameters: gradients never see them.
    expect([...p.params.keys()]).toEqual(['bn.weight', 'bn.bias']);
    expect([...p.buffers.keys()]).toEqual(['bn.running_mean', 'bn.running_var']);
    expect(p.buffers.get('bn.running_mean')?.trainable).toBe(false);
    p.dispose();
  });

  it('inference mode: normalises with the running statistics and leaves them alone', async () => {
    const p = new ParamStore(new Rng(1));
    batchNorm(p, 'bn', batch(), { training: false }); // creates the tensors
    p.params.get('bn.weight')?.assign(tf.tensor1d([2, 1]));
    p.params.get('bn.bias')?.assign(tf.tensor1d([0.5, 0]));
    p.buffers.get('bn.running_mean')?.assign(tf.tensor1d([1, -1]));
    p.buffers.get('bn.running_var')?.assign(tf.tensor1d([4, 0.25]));
    const got = await values(batchNorm(p, 'bn', batch(), { training: false }));
    const expected = [1, 2, 3, 6].flatMap((v, i) => [
      (2 * (v - 1)) / Math.sqrt(4 + 1e-5) + 0.5,
      ([-2, 0, 0, 2][i] + 1) / Math.sqrt(0.25 + 1e-5),
    ]);
    got.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 4));
    expect(await values(p.buffers.get('bn.running_mean') as tf.Variable)).toEqual([1, -1]);
    p.dispose();
  });

  it('refuses training mode with one value per channel (as PyTorch does)', () => {
    const p = new ParamStore(new Rng(1));
    expect(() => batchNorm(p, 'features', tf.ones([1, 4]) as tf.Tensor2D, { training: true })).toThrow(/features: .*more than 1 value/);
    p.dispose();
  });

  it('hand-written gradient equals autodiff of the plain formula, with and without γ', async () => {
    const rng = new Rng(2);
    const x = normal(rng, [3, 4, 4, 5]);
    const gamma = tf.add(1, normal(rng, [5])) as tf.Tensor1D;
    const beta = normal(rng, [5]) as tf.Tensor1D;
    const w = normal(rng, [3, 4, 4, 5]);
    const reference = (xi: tf.Tensor, g: tf.Tensor | undefined, b: tf.Tensor): tf.Tensor => {
      const { mean, variance } = tf.moments(xi, [0, 1, 2]);
      const xhat = tf.div(tf.sub(xi, mean), tf.sqrt(tf.add(variance, 1e-5)));
      return tf.add(g ? tf.mul(xhat, g) : xhat, b);
    };
    const ours = tf.grads((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(batchNormTraining(xi, g as tf.Tensor1D, b as tf.Tensor1D), w)),
    );
    const auto = tf.grads((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(reference(xi, g, b), w)));
    const [ga, gb] = [ours([x, gamma, beta]), auto([x, gamma, beta])];
    for (let i = 0; i < 3; i++) expect(await maxAbsDiff(ga[i], gb[i])).toBeLessThan(1e-4);
    expect(await maxAbsDiff(batchNormTraining(x, gamma, beta), reference(x, gamma, beta))).toBeLessThan(1e-5);

    const oursFixed = tf.grads((xi: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(batchNormTraining(xi, undefined, b as tf.Tensor1D), w)));
    const autoFixed = tf.grads((xi: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(reference(xi, undefined, b), w)));
    const [fa, fb] = [oursFixed([x, beta]), autoFixed([x, beta])];
    for (let i = 0; i < 2; i++) expect(await maxAbsDiff(fa[i], fb[i])).toBeLessThan(1e-4);
  });

  it('inference with fresh statistics (mean 0, variance 1) is y = γ·x/√(1 + ε) + β', async () => {
    const x = tf.tensor2d([2, -4], [1, 2]);
    const y = batchNormInference(x, tf.tensor1d([1, 3]), tf.tensor1d([0, 1]), tf.zeros([2]), tf.ones([2]));
    const got = await values(y);
    expect(got[0]).toBeCloseTo(2 / Math.sqrt(1 + 1e-5), 5);
    expect(got[1]).toBeCloseTo((3 * -4) / Math.sqrt(1 + 1e-5) + 1, 5);
  });
});

describe('PReLU', () => {
  it('learns one slope per channel, starting at 0.25; its gradient is Σ x over negative inputs', async () => {
    const p = new ParamStore(new Rng(1));
    const x = tf.tensor4d([-1, 2, 3, -4, -2, -8], [1, 1, 3, 2]); // channel 0: -1, 3, -2; channel 1: 2, -4, -8
    expect(await values(prelu(p, 'prelu', x))).toEqual([-0.25, 2, 3, -1, -0.5, -2]);
    const alpha = p.params.get('prelu.weight') as tf.Variable;
    expect(await values(alpha)).toEqual([0.25, 0.25]);
    alpha.assign(tf.tensor1d([0.5, 0.1]));
    const got = await values(prelu(p, 'prelu', x));
    [-0.5, 2, 3, -0.4, -1, -0.8].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
    const { grads } = tf.variableGrads(() => tf.sum(prelu(p, 'prelu', x)), [alpha]);
    expect(await values(grads[alpha.name])).toEqual([-3, -12]);
    p.dispose();
  });
});

describe('conv2d', () => {
  it("pads like PyTorch (1 on every side), not like tfjs 'same', and its gradients run on wasm", async () => {
    const rng = new Rng(3);
    const x = normal(rng, [2, 8, 8, 3]) as tf.Tensor4D;
    const p = new ParamStore(rng);
    const y = conv2d(p, 'conv', x, 4, 3, 2);
    const w = p.params.get('conv.weight') as tf.Variable;
    const padded = tf.pad(x, [
      [0, 0],
      [1, 1],
      [1, 1],
      [0, 0],
    ]);
    const reference = tf.conv2d(padded, w as tf.Tensor as tf.Tensor4D, 2, 'valid');
    expect(y.shape).toEqual([2, 4, 4, 4]);
    expect(await maxAbsDiff(y, reference)).toBeLessThan(1e-5);
    expect(await maxAbsDiff(y, tf.conv2d(x, w as tf.Tensor as tf.Tensor4D, 2, 'same'))).toBeGreaterThan(1e-2);
    const g = normal(rng, [2, 4, 4, 4]);
    const ours = tf.grads((xi: tf.Tensor, wi: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xi as tf.Tensor4D, wi as tf.Tensor4D, 2, 1), g)));
    const viaPad = tf.grads((xi: tf.Tensor, wi: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.conv2d(
            tf.pad(xi as tf.Tensor4D, [
              [0, 0],
              [1, 1],
              [1, 1],
              [0, 0],
            ]),
            wi as tf.Tensor4D,
            2,
            'valid',
          ),
          g,
        ),
      ),
    );
    const [a, b] = [ours([x, w]), viaPad([x, w])];
    expect(await maxAbsDiff(a[0], b[0])).toBeLessThan(1e-4);
    expect(await maxAbsDiff(a[1], b[1])).toBeLessThan(1e-4);
    p.dispose();
  });
});
