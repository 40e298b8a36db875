import { initBackend, tf } from '@id3/core';
import { GaussianDiffusion } from '../gaussian-diffusion';
import { sampleConditions } from '../sampling';
import { makeSchedule } from '../schedule';
import { UNet, tinyUNetConfig } from '../unet';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const R = 8;
const unetConfig = tinyUNetConfig(R, 16);

describe('sampleConditions', () => {
  let net: UNet;
  beforeAll(() => {
    net = UNet.create(unetConfig, 2); // after the backend is up
  });
  const diffusion = new GaussianDiffusion(makeSchedule({ steps: 50 }));
  const cond = {
    y: Float32Array.from({ length: 3 * 16 }, (_, k) => ((k * 7) % 5) / 5 - 0.4),
    s: Float32Array.from({ length: 3 * 4 }, (_, k) => k / 12),
    count: 3,
  };
  afterAll(() => net.dispose());

  it('passes the guidance hook to every DDIM step of every chunk, and its ε correction changes the samples', async () => {
    const plain = await sampleConditions(net, diffusion, cond, { ddimSteps: 4, seed: 1, chunk: 2 });
    expect(await sampleConditions(net, diffusion, cond, { ddimSteps: 4, seed: 1, chunk: 2, guidance: () => undefined })).toEqual(plain);

    const calls: { batch: number; t: number; shapes: string }[] = [];
    const guided = await sampleConditions(net, diffusion, cond, {
      ddimSteps: 4,
      seed: 1,
      chunk: 2,
      guidance: (xt, t, predX0) => {
        calls.push({ batch: xt.shape[0], t, shapes: `${xt.shape.join('x')} ${predX0.shape.join('x')}` });
        return tf.fill(xt.shape, 0.5) as tf.Tensor4D; // push ε̂ up: x̂0 moves down
      },
    });
    // 2 chunks (2 + 1 samples) × 4 DDIM steps, descending t, with x̂0 shaped like x_t.
    expect(calls.map((c) => c.batch)).toEqual([2, 2, 2, 2, 1, 1, 1, 1]);
    expect(calls.slice(0, 4).map((c) => c.t)).toEqual([...calls.slice(0, 4).map((c) => c.t)].sort((a, b) => b - a));
    expect(calls[0].shapes).toBe(`2x${R}x${R}x3 2x${R}x${R}x3`);
    const mean = (v: Float32Array): number => v.reduce((a, b) => a + b, 0) / v.length;
    expect(mean(guided)).toBeLessThan(mean(plain) - 0.05);
  });

  it('keeps tf.memory().numTensors flat, with guidance and with classifier-free guidance', async () => {
    const before = tf.memory().numTensors;
    await sampleConditions(net, diffusion, cond, { ddimSteps: 3, seed: 2, guidance: (xt) => tf.zerosLike(xt) });
    await sampleConditions(net, diffusion, cond, { ddimSteps: 3, seed: 2, cfgScale: 3 });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('classifier-free guidance: w = 1 is plain conditional sampling, w = 0 ignores the condition, w = 2 moves past it', async () => {
    // A stand-in network whose ε is x_t-dependent plus a per-sample shift by its (possibly dropped) condition.
    const conditioned = {
      config: net.config,
      forward: ({ xt, y, keepCondition }: { xt: tf.Tensor4D; y: tf.Tensor2D; keepCondition?: tf.Tensor2D }) =>
        tf.tidy(() => {
          const c = keepCondition ? tf.mul(y, keepCondition) : y;
          const shift = tf.reshape(tf.mean(c, 1), [-1, 1, 1, 1]);
          return tf.add(tf.mul(xt, 0.1), tf.mul(shift, 0.5)) as tf.Tensor4D;
        }),
    } as unknown as UNet;
    const other = { ...cond, y: cond.y.map((v) => v + 0.3) };
    const o = { ddimSteps: 3, seed: 4 };
    const plain = await sampleConditions(conditioned, diffusion, cond, o);
    expect(await sampleConditions(conditioned, diffusion, cond, { ...o, cfgScale: 1 })).toEqual(plain);
    expect(await sampleConditions(conditioned, diffusion, other, o)).not.toEqual(plain); // the condition matters
    // w = 0: ε(∅) only, so another condition with the same noise gives the same images
    const uncond = await sampleConditions(conditioned, diffusion, cond, { ...o, cfgScale: 0 });
    expect(await sampleConditions(conditioned, diffusion, other, { ...o, cfgScale: 0 })).toEqual(uncond);
    // w = 2 lies beyond the conditional samples, seen from the unconditional ones
    const w2 = await sampleConditions(conditioned, diffusion, cond, { ...o, cfgScale: 2 });
    const dist = (a: Float32Array, b: Float32Array): number => Math.sqrt(a.reduce((sum, v, i) => sum + (v - b[i]) ** 2, 0));
    expect(dist(w2, uncond)).toBeGreaterThan(1.2 * dist(plain, uncond)); // x̂0 clipping keeps it below 2×
  });
});
