import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, initBackend, tf } from '@id3/core';
import { loadEmbedder, type FaceEmbedder } from '@id3/faces';
import { gaussianNoise } from '../gaussian-diffusion';
import { pearson } from '../held-out-evaluation';
import { sampleConditions } from '../sampling';
import { id3LossTerms } from '../loss';
import { makeSchedule, scheduleConfigSchema } from '../schedule';
import { GaussianDiffusion } from '../gaussian-diffusion';
import { TeacherInput } from '../teacher-input';
import {
  DiffusionTrainer,
  listCheckpoints,
  trainerConfigSchema,
  type DiffusionTrainerOptions,
  type TrainerConfigInput,
  type TrainingData,
} from '../trainer';
import { UNet, unetConfigSchema } from '../unet';

// Worker threads start a wasm backend each: a slow machine needs more than Jest's 5 s default.
jest.setTimeout(120_000);

let teacher: FaceEmbedder;
beforeAll(async () => {
  await initBackend('wasm', () => undefined);
  teacher = await loadEmbedder('faceapi-dlib-128');
});

const R = 16;
const unetConfig = unetConfigSchema.parse({
  resolution: R,
  baseChannels: 8,
  channelMult: [1, 2],
  attentionResolutions: [8],
  groups: 4,
  identityDim: 128,
  conditionHidden: [32, 16],
});

/** n random unit rows of width d (stand-ins for teacher embeddings). */
function unitRows(rng: Rng, n: number, d: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const v = rng.fillNormal(new Float32Array(d));
    const norm = Math.hypot(...v);
    out.set(
      v.map((x) => x / norm),
      i * d,
    );
  }
  return out;
}

/** Synthetic prepared data: a bright left half (so a flip is visible), unit y, attributes. */
function syntheticData(n: number): TrainingData {
  const rng = new Rng(11);
  const crops = new Uint8Array(n * R * R * 3);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < R * R; p++) {
      const x = p % R;
      const v = (x < R / 2 ? 200 : 40) + Math.floor(rng.uniform() * 30);
      crops.fill(v, (i * R * R + p) * 3, (i * R * R + p + 1) * 3);
    }
  }
  const y = unitRows(rng, n, 128);
  const s = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) s.set([0.1 * i - 0.5, 0.05, 0.4 + 0.01 * i, 0.2], i * 4);
  return { size: R, crops, y, identityDim: 128, s, attributeDim: 4, trainRows: Array.from({ length: n }, (_, i) => i) };
}

function makeTrainer(overrides: Partial<TrainerConfigInput> = {}, options: DiffusionTrainerOptions = {}): DiffusionTrainer {
  const config = trainerConfigSchema.parse({
    seed: 3,
    batchSize: 4,
    steps: 10,
    warmupSteps: 3,
    identity: { subBatch: 1, every: 3 },
    logEvery: 2,
    ...overrides,
  });
  return new DiffusionTrainer(
    unetConfig,
    scheduleConfigSchema.parse({ steps: 100 }),
    config,
    syntheticData(8),
    teacher,
    'test-key',
    options,
  );
}

describe('DiffusionTrainer', () => {
  it('keeps tf.memory().numTensors flat over training steps (with and without the identity term)', async () => {
    const trainer = makeTrainer();
    await trainer.trainStep();
    await trainer.trainStep();
    await trainer.trainStep(); // step 3: the identity term (every 3) has run once too
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const log = await trainer.trainStep();
      expect(Number.isFinite(log.total)).toBe(true);
    }
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
  });

  it('10 steps straight = 5 steps + checkpoint + resume in a new trainer + 5 steps, bit for bit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-trainer-'));
    try {
      const straight = makeTrainer();
      for (let i = 0; i < 10; i++) await straight.trainStep();

      const first = makeTrainer();
      for (let i = 0; i < 5; i++) await first.trainStep();
      await first.saveCheckpoint(dir);
      await first.trainStep(); // work after the checkpoint is lost on a crash
      first.dispose();

      const resumed = makeTrainer();
      const r = resumed.resumeFrom(dir);
      expect(r && 'step' in r ? r.step : undefined).toBe(5);
      for (let i = 0; i < 5; i++) await resumed.trainStep();

      expect(resumed.step).toBe(10);
      expect(await resumed.net.flatWeights()).toEqual(await straight.net.flatWeights());
      expect(resumed.snapshotWeights()).toEqual(straight.snapshotWeights());
      expect(await resumed.emaNet().flatWeights()).toEqual(straight.snapshotWeights().ema);
      expect(resumed.history).toEqual(straight.history.map((h) => ({ ...h, imagesPerSecond: expect.any(Number) as number })));
      // and it really trained: the weights moved
      expect(await straight.net.flatWeights()).not.toEqual(await makeTrainer().net.flatWeights());
      straight.dispose();
      resumed.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('checkpoints are written whole (temp dir + rename), pruned to keepCheckpoints; another key is not resumed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-ckpt-'));
    try {
      const t = makeTrainer({ keepCheckpoints: 2, identity: { enabled: false } });
      for (let i = 0; i < 3; i++) {
        await t.trainStep();
        await t.saveCheckpoint(dir);
      }
      expect(listCheckpoints(dir).map((c) => c.step)).toEqual([2, 3]);
      expect(readdirSync(dir).filter((n) => n.startsWith('.tmp'))).toEqual([]);
      const other = new DiffusionTrainer(
        unetConfig,
        scheduleConfigSchema.parse({ steps: 100 }),
        trainerConfigSchema.parse({ seed: 3, steps: 5 }),
        syntheticData(8),
        teacher,
        'another-key',
      );
      expect(other.resumeFrom(dir)).toEqual({ ignored: expect.stringContaining('another config') as string });
      expect(other.step).toBe(0);
      // The old run's checkpoints are moved aside, so the new run's own checkpoints resume.
      expect(listCheckpoints(dir)).toEqual([]);
      await other.trainStep();
      await other.saveCheckpoint(dir);
      const again = new DiffusionTrainer(
        unetConfig,
        scheduleConfigSchema.parse({ steps: 100 }),
        trainerConfigSchema.parse({ seed: 3, steps: 5 }),
        syntheticData(8),
        teacher,
        'another-key',
      );
      expect(again.resumeFrom(dir)).toMatchObject({ step: 1 });
      again.dispose();
      t.dispose();
      other.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      for (const stale of readdirSync(tmpdir()).filter((n) => n.startsWith(`${dir.split('/').pop()}.stale-`)))
        rmSync(join(tmpdir(), stale), { recursive: true, force: true });
    }
  });

  it('flip augmentation mirrors the image and negates yaw and roll only', () => {
    const t = makeTrainer({ batchSize: 32, conditionDropout: 0 });
    const data = t.data;
    const b = t.drawBatch();
    let flipped = 0;
    for (let i = 0; i < 32; i++) {
      const px = R * R * 3;
      // bright left half in the data; a flipped sample is bright on the right
      const left = b.x0[i * px];
      const right = b.x0[i * px + (R - 1) * 3];
      const s = b.s.subarray(i * 4, i * 4 + 4);
      const row = Array.from({ length: 8 }, (_, r) => r).find((r) => Math.abs(data.s[r * 4] - s[0]) < 1e-6);
      expect(row).toBeDefined();
      const orig = data.s.subarray(row! * 4, row! * 4 + 4);
      if (left < right) {
        flipped++;
        expect(Array.from(s)).toEqual([orig[0], orig[1], -orig[2], -orig[3]]);
      } else {
        expect(Array.from(s)).toEqual(Array.from(orig));
      }
    }
    expect(flipped).toBeGreaterThan(5);
    expect(flipped).toBeLessThan(27);
    t.dispose();
  });

  it('data-parallel: 2 threads (a worker thread with its own wasm backend) give the 1-thread losses and weights', async () => {
    const one = makeTrainer({ threads: 1, identity: { enabled: false } });
    const two = makeTrainer({ threads: 2, identity: { enabled: false } });
    await two.startWorkers(2, 'wasm');
    expect(two.threads).toBe(2);
    for (let i = 0; i < 3; i++) {
      const [a, b] = [await one.trainStep(), await two.trainStep()];
      expect(b.total).toBeCloseTo(a.total, 5);
      expect(b.gradNorm).toBeCloseTo(a.gradNorm, 4);
    }
    const [wa, wb] = [await one.net.flatWeights(), await two.net.flatWeights()];
    let maxDiff = 0;
    for (let k = 0; k < wa.length; k++) maxDiff = Math.max(maxDiff, Math.abs(wa[k] - wb[k]));
    expect(maxDiff).toBeLessThan(1e-6); // only the order of float sums differs
    const before = tf.memory().numTensors;
    await two.trainStep();
    expect(tf.memory().numTensors).toBe(before);
    one.dispose();
    await two.close();
  });

  it('conditioned on other rows than y (the identity space): the UNet takes the k-d rows on every thread, the identity term keeps y', async () => {
    const k = 6;
    const base = syntheticData(8);
    const condition = { values: unitRows(new Rng(5), 8, k), dim: k };
    const make = (threads: number, identity: TrainerConfigInput['identity']) =>
      new DiffusionTrainer(
        { ...unetConfig, identityDim: k },
        scheduleConfigSchema.parse({ steps: 100 }),
        trainerConfigSchema.parse({ seed: 3, batchSize: 4, steps: 10, warmupSteps: 3, identity, threads }),
        { ...base, condition },
        teacher,
        'test-key',
      );
    // Data parallel (identity term off: its sub-batch is spread over the shards, so it picks other samples).
    const one = make(1, { enabled: false });
    const two = make(2, { enabled: false });
    try {
      await two.startWorkers(2, 'wasm');
      for (let i = 0; i < 3; i++) {
        const [a, b] = [await one.trainStep(), await two.trainStep()];
        expect(b.total).toBeCloseTo(a.total, 5);
      }
      // The condition reaches the network: other rows, another loss.
      const other = new DiffusionTrainer(
        { ...unetConfig, identityDim: k },
        scheduleConfigSchema.parse({ steps: 100 }),
        one.config,
        { ...base, condition: { values: unitRows(new Rng(6), 8, k), dim: k } },
        teacher,
        'test-key',
      );
      const fresh = make(1, { enabled: false });
      const losses = [];
      for (let i = 0; i < 6; i++) losses.push([(await fresh.trainStep()).total, (await other.trainStep()).total]);
      // Zero-initialised output layers: the condition moves the loss once gradients have reached the blocks.
      expect(losses[0][1]).toBe(losses[0][0]);
      expect(losses.slice(3).some(([a, b]) => a !== b)).toBe(true);
      [other, fresh].forEach((t) => t.dispose());
      // The identity term compares f(x̂0) with the 128-d y.
      const withId = make(1, { subBatch: 2, every: 1 });
      expect(withId.drawBatch().c?.length).toBe(4 * k);
      expect((await withId.trainStep()).identityCos).not.toBe(0);
      withId.dispose();
      expect(
        () =>
          new DiffusionTrainer(unetConfig, scheduleConfigSchema.parse({ steps: 100 }), one.config, { ...base, condition }, teacher, 'k'),
      ).toThrow(/field 'unet\.identityDim': 128 but the identity-space conditions are 6-d/);
    } finally {
      one.dispose();
      await two.close();
    }
  });

  it('the tfjs-ops optimiser path (GPU backends: weights, moments and EMA on the device) trains as the js-loop path, keeps numTensors flat, resumes exactly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-trainer-ops-'));
    try {
      const js = makeTrainer({ identity: { enabled: false } });
      const ops = makeTrainer({ identity: { enabled: false } }, { optimizer: 'tfjs-ops' });
      for (let i = 0; i < 2; i++) {
        const [a, b] = [await js.trainStep(), await ops.trainStep()];
        expect(b.total).toBeCloseTo(a.total, 5);
        expect(b.gradNorm).toBeCloseTo(a.gradNorm, 4);
      }
      await ops.saveCheckpoint(dir);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 2; i++) {
        await js.trainStep();
        await ops.trainStep();
      }
      expect(tf.memory().numTensors).toBe(before);
      const maxDiff = (x: Float32Array, y: Float32Array): number => x.reduce((m, v, k) => Math.max(m, Math.abs(v - y[k])), 0);
      const [sj, so] = [js.snapshotWeights(), ops.snapshotWeights()];
      expect(maxDiff(sj.weights, so.weights)).toBeLessThan(1e-5); // float32 tf ops vs float64 JS arithmetic
      expect(maxDiff(sj.ema, so.ema)).toBeLessThan(1e-5);
      expect(await ops.emaNet().flatWeights()).toEqual(so.ema);

      const resumed = makeTrainer({ identity: { enabled: false } }, { optimizer: 'tfjs-ops' });
      expect(resumed.resumeFrom(dir)).toMatchObject({ step: 2 });
      for (let i = 0; i < 2; i++) await resumed.trainStep();
      expect(resumed.snapshotWeights()).toEqual(so);
      // One checkpoint format for both paths.
      const onCpuPath = makeTrainer({ identity: { enabled: false } }, { optimizer: 'js-loop' });
      expect(onCpuPath.resumeFrom(dir)).toMatchObject({ step: 2 });
      [js, ops, resumed, onCpuPath].forEach((t) => t.dispose());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('learning rate warms up linearly', () => {
    const t = makeTrainer({ learningRate: 1e-3, warmupSteps: 4, identity: { enabled: false } });
    expect([1, 2, 4, 100].map((s) => t.learningRate(s))).toEqual([2.5e-4, 5e-4, 1e-3, 1e-3]);
    t.dispose();
  });
});

describe('conditioning is learned end to end', () => {
  it('a generator trained on images whose brightness is attribute s0 samples brightness that follows the requested s0', async () => {
    // 16×16 flat images, brightness b ∈ [-0.8, 0.8] stored as s0; y is random (uninformative).
    const n = 64;
    const rng = new Rng(21);
    const bright = Array.from({ length: n }, (_, i) => -0.8 + (1.6 * i) / (n - 1));
    const crops = new Uint8Array(n * R * R * 3);
    bright.forEach((b, i) => crops.fill(Math.round((b + 1) * 127.5), i * R * R * 3, (i + 1) * R * R * 3));
    const y = unitRows(rng, n, 128);
    const s = new Float32Array(n * 4);
    bright.forEach((b, i) => (s[i * 4] = b));
    const data: TrainingData = {
      size: R,
      crops,
      y,
      identityDim: 128,
      s,
      attributeDim: 4,
      trainRows: Array.from({ length: n }, (_, i) => i),
    };
    const config = trainerConfigSchema.parse({
      seed: 5,
      steps: 250,
      batchSize: 16,
      learningRate: 2e-3,
      warmupSteps: 20,
      emaDecay: 0.9,
      conditionDropout: 0,
      flip: false,
      threads: 1,
      identity: { enabled: false },
    });
    const trainer = new DiffusionTrainer(unetConfig, scheduleConfigSchema.parse({}), config, data, undefined, 'conditioning');
    for (let i = 0; i < 250; i++) await trainer.trainStep();
    const requested = [-0.7, -0.35, 0, 0.35, 0.7];
    const cond = {
      y: y.slice(0, requested.length * 128),
      s: Float32Array.from(requested.flatMap((b) => [b, 0, 0, 0])),
      count: requested.length,
    };
    const samples = await sampleConditions(trainer.emaNet(), trainer.diffusion, cond, { ddimSteps: 20, seed: 1 });
    const px = R * R * 3;
    const got = requested.map((_, i) => samples.subarray(i * px, (i + 1) * px).reduce((a, v) => a + v, 0) / px);
    expect(pearson(requested, got)).toBeGreaterThan(0.9);
    trainer.dispose();
  });
});

describe('ID³ loss', () => {
  it('the identity term alone gives non-zero gradients on the UNet weights (through the frozen teacher)', async () => {
    const net = UNet.create(unetConfig, 1);
    const rng = new Rng(4);
    net.setFlatWeights((await net.flatWeights()).map((v) => v + 0.05 * rng.normal()));
    const diffusion = new GaussianDiffusion(makeSchedule({ steps: 100 }));
    const input = TeacherInput.forTeacher(teacher, R);
    const data = syntheticData(2);
    const batch = {
      x0: tf.sub(tf.div(tf.tensor4d(Float32Array.from(data.crops), [2, R, R, 3]), 127.5), 1) as tf.Tensor4D,
      y: tf.tensor2d(data.y, [2, 128]),
      s: tf.tensor2d(data.s, [2, 4]),
      t: [5, 20],
      noise: gaussianNoise(rng, [2, R, R, 3]) as tf.Tensor4D,
      identityCount: 2,
    };
    const { value, grads } = tf.variableGrads(
      () => id3LossTerms(net, diffusion, batch, { reconWeight: 'gamma', identityScale: 1, teacher: { embedder: teacher, input } }).identity,
      net.variables,
    );
    const nonZero = await Promise.all(Object.values(grads).map(async (g) => (await g.data()).some((v) => v !== 0)));
    // Every UNet parameter on the path to ε̂ gets a gradient from ⟨f(x̂0), y⟩ alone.
    expect(nonZero.filter(Boolean).length).toBeGreaterThan(0.9 * nonZero.length);
    expect(Number.isFinite((await value.data())[0])).toBe(true);
    tf.dispose([value, ...Object.values(grads), batch.x0, batch.y, batch.s, batch.noise]);
    input.dispose();
    net.dispose();
  });
});
