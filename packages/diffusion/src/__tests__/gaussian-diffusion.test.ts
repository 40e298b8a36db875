import { Rng, initBackend, tf } from '@id3/core';
import { GaussianDiffusion, gaussianNoise, perSampleNoise, runLoop, type EpsModel } from '../gaussian-diffusion';
import { ddimTimesteps, makeSchedule } from '../schedule';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const diffusion = new GaussianDiffusion(makeSchedule({ kind: 'linear', steps: 1000 }));

/**
 * The exact ε of 1-D Gaussian data x0 ~ N(μ, σ²): q(x_t) = N(√ᾱ μ, ᾱσ² + 1 − ᾱ), so
 * ε*(x_t, t) = −√(1−ᾱ) ∇log q(x_t) = √(1−ᾱ) (x_t − √ᾱ μ) / (ᾱσ² + 1 − ᾱ).
 */
function exactGaussianEps(mu: number, sigma: number): EpsModel {
  return (xt, t) =>
    tf.tidy(() => {
      const a = diffusion.coefficient(diffusion.schedule.alphasCumprod, t);
      const variance = tf.add(tf.mul(a, sigma * sigma), tf.sub(1, a));
      return tf.div(tf.mul(tf.sqrt(tf.sub(1, a)), tf.sub(xt, tf.mul(tf.sqrt(a), mu))), variance) as tf.Tensor4D;
    });
}

/**
 * The std that sampling with the exact ε must reach for N(μ, σ²) data, computed in float64 from
 * the schedule alone: every step is affine in x_t, x_{t'} = A·x_t + b (+ noise), so the variance
 * propagates as Var' = A²·Var (+ the step's noise variance), from Var = 1 at the start. The
 * sampler's discretisation (few DDIM steps; DDPM's lower-bound variance β̃) makes this differ
 * from σ, so the test compares against it and not against σ.
 */
function expectedStd(d: GaussianDiffusion, sigma: number, path: readonly number[], kind: 'ddim' | 'ddpm'): number {
  const a = d.schedule.alphasCumprod;
  let variance = 1;
  path.forEach((t, i) => {
    const tPrev = kind === 'ddpm' ? t - 1 : i + 1 < path.length ? path[i + 1] : -1;
    const V = a[t] * sigma * sigma + 1 - a[t];
    const k = (Math.sqrt(a[t]) * sigma * sigma) / V; // x̂0 = k·x_t + const
    let A: number;
    if (kind === 'ddim') {
      const aPrev = tPrev >= 0 ? a[tPrev] : 1;
      A = Math.sqrt(aPrev) * k + (Math.sqrt(1 - aPrev) * (1 - Math.sqrt(a[t]) * k)) / Math.sqrt(1 - a[t]);
      variance = A * A * variance;
    } else {
      A = d.schedule.posteriorMeanCoef1[t] * k + d.schedule.posteriorMeanCoef2[t];
      variance = A * A * variance + (t > 0 ? d.schedule.posteriorVariance[t] : 0);
    }
  });
  return Math.sqrt(variance);
}

async function stats(x: tf.Tensor): Promise<{ mean: number; std: number }> {
  const v = Array.from(await x.data());
  const mean = v.reduce((s, a) => s + a, 0) / v.length;
  return { mean, std: Math.sqrt(v.reduce((s, a) => s + (a - mean) ** 2, 0) / v.length) };
}

describe('GaussianDiffusion', () => {
  it('predictX0FromEps inverts qSample', async () => {
    const rng = new Rng(1);
    const x0 = gaussianNoise(rng, [3, 4, 4, 3]) as tf.Tensor4D;
    const eps = gaussianNoise(rng, [3, 4, 4, 3]) as tf.Tensor4D;
    for (const t of [
      [0, 1, 2],
      [10, 500, 998],
      [999, 999, 999],
    ]) {
      const xt = diffusion.qSample(x0, t, eps);
      const back = diffusion.predictX0FromEps(xt, t, eps);
      const err = tf.max(tf.abs(tf.sub(back, x0)));
      // 1/√ᾱ amplifies float32 rounding of x_t (×3.6 at t = 500, ×157 at t = 999)
      expect((await err.data())[0]).toBeLessThan(t[0] === 999 ? 2e-3 : 1e-4);
      const epsBack = diffusion.predictEpsFromX0(xt, t, x0);
      expect((await tf.max(tf.abs(tf.sub(epsBack, eps))).data())[0]).toBeLessThan(1e-3);
      tf.dispose([xt, back, err, epsBack]);
    }
    tf.dispose([x0, eps]);
  });

  it('qSample has mean √ᾱ·x0 and variance 1 − ᾱ', async () => {
    const n = 20000;
    const t = 300;
    const x0 = tf.fill([n, 1, 1, 1], 0.7) as tf.Tensor4D;
    const noise = gaussianNoise(new Rng(2), [n, 1, 1, 1]) as tf.Tensor4D;
    const xt = diffusion.qSample(x0, new Array<number>(n).fill(t), noise);
    const { mean, std } = await stats(xt);
    const a = diffusion.schedule.alphasCumprod[t];
    expect(mean).toBeCloseTo(Math.sqrt(a) * 0.7, 1);
    expect(Math.abs(mean - Math.sqrt(a) * 0.7)).toBeLessThan(4 * Math.sqrt((1 - a) / n));
    expect(std).toBeCloseTo(Math.sqrt(1 - a), 2);
    tf.dispose([x0, noise, xt]);
  });

  it.each([100, 1000])('DDIM (η = 0, %i steps) with the exact ε of Gaussian data recovers its mean and spread', async (steps) => {
    const mu = 0.6;
    const sigma = 0.2;
    const x = runLoop(
      diffusion.ddimLoop(exactGaussianEps(mu, sigma), [4000, 1, 1, 1], { steps, eta: 0, rng: new Rng(3), clipDenoised: false }),
    );
    const { mean, std } = await stats(x);
    expect(Math.abs(mean - mu)).toBeLessThan(0.01);
    const expected = expectedStd(diffusion, sigma, ddimTimesteps(1000, steps), 'ddim');
    expect(Math.abs(std - expected)).toBeLessThan(0.006); // sampling error of a 4000-sample std ≈ 0.002
    if (steps === 1000) expect(Math.abs(std - sigma)).toBeLessThan(0.006); // the ODE limit is the data
    x.dispose();
  });

  it('DDPM ancestral sampling with the exact ε recovers the mean and the predicted spread', async () => {
    const small = new GaussianDiffusion(makeSchedule({ kind: 'linear', steps: 200 }));
    const model: EpsModel = (xt, t) =>
      tf.tidy(() => {
        const a = small.coefficient(small.schedule.alphasCumprod, t);
        return tf.div(
          tf.mul(tf.sqrt(tf.sub(1, a)), tf.sub(xt, tf.mul(tf.sqrt(a), -0.4))),
          tf.add(tf.mul(a, 0.09), tf.sub(1, a)),
        ) as tf.Tensor4D;
      });
    const x = runLoop(small.ddpmLoop(model, [8000, 1, 1, 1], { rng: new Rng(4), clipDenoised: false }));
    const { mean, std } = await stats(x);
    expect(Math.abs(mean + 0.4)).toBeLessThan(0.02);
    const path = Array.from({ length: 200 }, (_, i) => 199 - i);
    expect(Math.abs(std - expectedStd(small, 0.3, path, 'ddpm'))).toBeLessThan(0.006);
    x.dispose();
  });

  it('the guidance hook sees (x_t, t, x̂0) at every step and its correction moves the samples', async () => {
    const seen: number[] = [];
    const model = exactGaussianEps(0, 0.2);
    const plain = runLoop(diffusion.ddimLoop(model, [500, 1, 1, 1], { steps: 20, rng: new Rng(5), clipDenoised: false }));
    // A negative ε correction pushes x̂0 up: x̂0 = (x_t − √(1−ᾱ) ε)/√ᾱ.
    const guided = runLoop(
      diffusion.ddimLoop(model, [500, 1, 1, 1], {
        steps: 20,
        rng: new Rng(5),
        clipDenoised: false,
        guidance: (xt, t, predX0) => {
          expect(predX0.shape).toEqual(xt.shape);
          seen.push(t);
          return tf.fill(xt.shape, -0.05 * Math.sqrt(1 - diffusion.schedule.alphasCumprod[t])) as tf.Tensor4D;
        },
      }),
    );
    expect(seen).toHaveLength(20);
    expect(seen[0]).toBe(999);
    expect((await stats(guided)).mean).toBeGreaterThan((await stats(plain)).mean + 0.02);
    tf.dispose([plain, guided]);
  });

  it('sampling loops do not leak tensors', () => {
    const model = exactGaussianEps(0, 1);
    const before = tf.memory().numTensors;
    const x = runLoop(diffusion.ddimLoop(model, [4, 2, 2, 3], { steps: 10, eta: 0.5, rng: new Rng(6) }));
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('perSampleNoise', () => {
  it('gives sample i the draws of stream i alone, whatever else is in the batch; a DDIM/DDPM loop uses it for x_T and every z', () => {
    const alone = perSampleNoise([new Rng(5)])([1, 2, 2, 3]).dataSync();
    const together = perSampleNoise([new Rng(9), new Rng(5)])([2, 2, 2, 3]).dataSync();
    expect(Array.from(together.slice(12))).toEqual(Array.from(alone));
    expect(() => perSampleNoise([new Rng(1)])([2, 3])).toThrow(/batch 2 but 1 streams/);

    const diffusion = new GaussianDiffusion(makeSchedule({ steps: 100 }));
    const zero: EpsModel = (xt) => tf.zerosLike(xt);
    const draw = (streams: number[], kind: 'ddim' | 'ddpm'): Float32Array => {
      const o = { rng: new Rng(0), noise: perSampleNoise(streams.map((s) => new Rng(s))) };
      const shape = [streams.length, 2, 2, 3] as const;
      const x = runLoop(kind === 'ddim' ? diffusion.ddimLoop(zero, shape, { ...o, steps: 5, eta: 1 }) : diffusion.ddpmLoop(zero, shape, o));
      const v = x.dataSync() as Float32Array;
      x.dispose();
      return v;
    };
    for (const kind of ['ddim', 'ddpm'] as const) {
      expect(Array.from(draw([3, 4], kind).slice(12))).toEqual(Array.from(draw([8, 4], kind).slice(12)));
      expect(Array.from(draw([3, 4], kind).slice(0, 12))).not.toEqual(Array.from(draw([8, 4], kind).slice(0, 12)));
    }
  });
});
