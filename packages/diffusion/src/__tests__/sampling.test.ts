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

  it('keeps tf.memory().numTensors flat, with guidance', async () => {
    const before = tf.memory().numTensors;
    await sampleConditions(net, diffusion, cond, { ddimSteps: 3, seed: 2, guidance: (xt) => tf.zerosLike(xt) });
    expect(tf.memory().numTensors).toBe(before);
  });
});
