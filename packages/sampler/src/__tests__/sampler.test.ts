import { Rng, initBackend, tf } from '@id3/core';
import {
  GaussianDiffusion,
  GENERATOR_FORMAT,
  makeSchedule,
  TeacherInput,
  UNet,
  tinyUNetConfig,
  type LoadedGenerator,
} from '@id3/diffusion';
import { ATTRIBUTE_SCALING, loadEmbedder, type FaceEmbedder } from '@id3/faces';
import { filterConfigSchema, IdentitySampler, samplerLoopSchema } from '../generate';
import { guidanceConfigSchema, identityGuidance } from '../guidance';
import { imageSeed } from '../seeds';

// A small untrained generator at 32×32 with the real default teacher: what the sampler does
// with the pieces, not how good the pictures are.
const R = 32;
const DIM = 128;
let teacher: FaceEmbedder;
let generator: LoadedGenerator;

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
  teacher = await loadEmbedder('faceapi-dlib-128');
  const net = UNet.create(tinyUNetConfig(R, DIM), 3);
  const schedule = { kind: 'linear' as const, steps: 1000, betaStart: 1e-4, betaEnd: 0.02 };
  generator = {
    path: '/nonexistent/generator.json',
    net,
    diffusion: new GaussianDiffusion(makeSchedule(schedule)),
    descriptor: {
      format: GENERATOR_FORMAT,
      weights: 'ema.json',
      resolution: R,
      schedule,
      teacher: teacher.name,
      identityDim: DIM,
      identitySpace: 'teacher',
      condition: { space: 'teacher' },
      attributes: { columns: ['age', 'pitch', 'yaw', 'roll'], scaling: ATTRIBUTE_SCALING },
      trainingData: { attributesSha256: '', images: 0, heldOut: [] },
      steps: 0,
    },
    conditionOf: (y) => y,
  };
});
afterAll(() => generator.net.dispose());

function unitRows(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const y = rng.fillNormal(new Float32Array(n * DIM));
  for (let i = 0; i < n; i++) {
    const row = y.subarray(i * DIM, (i + 1) * DIM);
    const norm = Math.hypot(...row);
    row.forEach((v, k) => (row[k] = v / norm));
  }
  return y;
}

const SLOTS = 3;
const y = (): Float32Array => unitRows(SLOTS, 5);
const s = new Float32Array(SLOTS * 4);
const loop = samplerLoopSchema.parse({ steps: 8 });
const noFilter = filterConfigSchema.parse({ minSimilarity: -1, faceCheck: false, replacements: 0 });

function meanSimilarity(out: { attempts: { similarity: number }[] }): number {
  return out.attempts.reduce((a, r) => a + r.similarity, 0) / out.attempts.length;
}

describe('IdentitySampler', () => {
  it('draws the same bytes again for the same identity, and other bytes for another run seed', async () => {
    const off = guidanceConfigSchema.parse({ scale: 0 });
    const a = await new IdentitySampler(generator, teacher, loop, off, noFilter, undefined, 11).generateIdentity(4, y(), s);
    const b = await new IdentitySampler(generator, teacher, loop, off, noFilter, undefined, 11).generateIdentity(4, y(), s);
    const c = await new IdentitySampler(generator, teacher, loop, off, noFilter, undefined, 12).generateIdentity(4, y(), s);
    expect(a.images.every((im) => im !== undefined)).toBe(true);
    expect(a.images).toEqual(b.images);
    expect(a.images[0]).not.toEqual(c.images[0]);
    expect(a.attempts.map((r) => r.seed)).toEqual([0, 1, 2].map((j) => imageSeed(11, 4, j, 0)));
  });

  it('identity guidance raises the teacher similarity of the saved images to their own y (same seeds)', async () => {
    const plain = await new IdentitySampler(
      generator,
      teacher,
      loop,
      guidanceConfigSchema.parse({ scale: 0 }),
      noFilter,
      undefined,
      1,
    ).generateIdentity(0, y(), s);
    const sampler = new IdentitySampler(generator, teacher, loop, guidanceConfigSchema.parse({ scale: 200 }), noFilter, undefined, 1);
    const before = tf.memory().numTensors;
    const guided = await sampler.generateIdentity(0, y(), s);
    await sampler.generateIdentity(1, y(), s);
    expect(tf.memory().numTensors).toBe(before); // no tensor left behind by guided sampling
    sampler.dispose();
    expect(meanSimilarity(guided)).toBeGreaterThan(meanSimilarity(plain) + 0.05);
  });

  it('the full gradient through the UNet equals the x̂0 shortcut when the network ignores x_t (an untrained UNet outputs 0)', () => {
    const n = 2;
    const t = 10;
    const xt = tf.tidy(() => tf.mul(0.3, tf.sin(tf.reshape(tf.range(0, n * R * R * 3), [n, R, R, 3]))) as tf.Tensor4D);
    const yT = tf.tensor2d(y().slice(0, n * DIM), [n, DIM]);
    const sT = tf.zeros([n, 4]) as tf.Tensor2D;
    const a = generator.diffusion.schedule.alphasCumprod[t];
    const x0 = tf.div(xt, Math.sqrt(a)) as tf.Tensor4D; // ε̂ = 0
    const common = {
      teacher,
      input: new TeacherInput(R, teacher.inputSize, teacher.inputTemplate),
      y: yT,
      s: sT,
      net: generator.net,
      schedule: generator.diffusion.schedule,
      at: new Set([t]),
    };
    const shortcut = identityGuidance({ ...common, config: guidanceConfigSchema.parse({ scale: 3 }) })(xt, t, x0) as tf.Tensor4D;
    const full = identityGuidance({ ...common, config: guidanceConfigSchema.parse({ scale: 3, gradient: 'full' }) })(
      xt,
      t,
      x0,
    ) as tf.Tensor4D;
    const scale = tf.max(tf.abs(shortcut)).dataSync()[0];
    expect(scale).toBeGreaterThan(0);
    expect(tf.max(tf.abs(tf.sub(full, shortcut))).dataSync()[0]).toBeLessThan(1e-3 * scale);
    expect(identityGuidance({ ...common, config: guidanceConfigSchema.parse({ scale: 3 }) })(xt, t + 1, x0)).toBeUndefined();
    common.input.dispose();
    tf.dispose([xt, yT, sT, x0, shortcut, full]);
  });

  it('replaces rejected images with new seeds up to the budget, then leaves the slot empty', async () => {
    const strict = filterConfigSchema.parse({ minSimilarity: 1, faceCheck: false, replacements: 2 });
    const out = await new IdentitySampler(
      generator,
      teacher,
      loop,
      guidanceConfigSchema.parse({ scale: 0 }),
      strict,
      undefined,
      3,
    ).generateIdentity(9, y(), s);
    expect(out.images.every((im) => im === undefined)).toBe(true);
    expect(out.attempts).toHaveLength(SLOTS * 3);
    expect(out.attempts.every((r) => !r.accepted && r.rejectedBy === 'similarity')).toBe(true);
    expect(new Set(out.attempts.map((r) => r.seed)).size).toBe(SLOTS * 3);
    expect(out.attempts.filter((r) => r.attempt === 2).map((r) => r.seed)).toEqual([0, 1, 2].map((j) => imageSeed(3, 9, j, 2)));
  });
});
