import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, initBackend, learningRateAt, tf } from '@id3/core';
import { datasetFromArrays, selectIdentities, splitValidation, type FaceDataset } from '../dataset';
import { iresnetConfigSchema } from '../iresnet-config';
import { FrTrainer, frLearningRateSchedule, frTrainerConfigSchema, type FrTrainerConfigInput } from '../trainer';

jest.setTimeout(120_000);

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const SIZE = 32;
const backbone = iresnetConfigSchema.parse({ depth: 18, resolution: SIZE, width: 0.125, embeddingDim: 32 });

/** 6 classes × 5 images: a class is a coloured bar at its own height, with noise; the left half brighter. */
function syntheticData(): FaceDataset {
  const rng = new Rng(5);
  const n = 30;
  const crops = new Uint8Array(n * SIZE * SIZE * 3);
  const labels: string[] = [];
  for (let i = 0; i < n; i++) {
    const cls = i % 6;
    labels.push(`person-${cls}`);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const bar = Math.abs(y - (4 + 4 * cls)) < 2 ? 200 : 40;
        const v = Math.min(255, bar + (x < SIZE / 2 ? 30 : 0) + Math.floor(rng.uniform() * 20));
        crops.fill(v, (i * SIZE * SIZE + y * SIZE + x) * 3, (i * SIZE * SIZE + y * SIZE + x + 1) * 3);
      }
    }
  }
  return datasetFromArrays(SIZE, crops, labels, { minPerIdentity: 2 }, 'synthetic');
}

function makeTrainer(overrides: Partial<FrTrainerConfigInput> = {}): FrTrainer {
  const config = frTrainerConfigSchema.parse({
    seed: 3,
    steps: 10,
    batchSize: 8,
    learningRate: 0.05,
    warmupSteps: 2,
    logEvery: 2,
    ...overrides,
  });
  const data = syntheticData();
  return new FrTrainer(
    backbone,
    config,
    data,
    Array.from({ length: 30 }, (_, i) => i),
    'test-key',
  );
}

describe('FrTrainer', () => {
  it('keeps tf.memory().numTensors flat over training steps', async () => {
    const trainer = makeTrainer();
    await trainer.trainStep();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) expect(Number.isFinite((await trainer.trainStep()).loss)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    await trainer.validate([0, 1, 2]);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
  });

  it('10 steps straight = 5 steps + checkpoint + resume in a new trainer + 5 steps, bit for bit (BatchNorm statistics too)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-fr-ckpt-'));
    try {
      const straight = makeTrainer({ augment: 'light' });
      for (let i = 0; i < 10; i++) await straight.trainStep();
      const first = makeTrainer({ augment: 'light' });
      for (let i = 0; i < 5; i++) await first.trainStep();
      await first.saveCheckpoint(dir);
      await first.trainStep(); // lost on a crash
      first.dispose();
      const resumed = makeTrainer({ augment: 'light' });
      const r = resumed.resumeFrom(dir);
      expect(r && 'step' in r ? r.step : undefined).toBe(5);
      for (let i = 0; i < 5; i++) await resumed.trainStep();
      expect(resumed.net.flatWeightsSync()).toEqual(straight.net.flatWeightsSync());
      expect(resumed.net.flatBuffersSync()).toEqual(straight.net.flatBuffersSync());
      expect(resumed.head.flatWeightsSync()).toEqual(straight.head.flatWeightsSync());
      expect(resumed.history.map((h) => h.loss)).toEqual(straight.history.map((h) => h.loss));
      expect(straight.net.flatWeightsSync()).not.toEqual(makeTrainer().net.flatWeightsSync()); // it trained
      straight.dispose();
      resumed.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('learns the synthetic classes: the loss falls and held-out images find their class centre', async () => {
    const trainer = makeTrainer({ steps: 40, learningRate: 0.1, head: { kind: 'arcface' } });
    const losses: number[] = [];
    for (let i = 0; i < 40; i++) losses.push((await trainer.trainStep()).loss);
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(losses.slice(-8))).toBeLessThan(0.7 * mean(losses.slice(0, 8)));
    expect(await trainer.validate(Array.from({ length: 30 }, (_, i) => i))).toBeGreaterThan(0.6); // chance 1/6
    trainer.dispose();
  });

  it('data-parallel: 2 threads (a worker with its own backend and replicas) train reproducibly, keep numTensors flat, and learn', async () => {
    const run = async (): Promise<{ losses: number[]; weights: Float32Array; tensors: number[] }> => {
      const trainer = makeTrainer({ steps: 30, learningRate: 0.1 });
      await trainer.startWorkers(2, 'wasm');
      expect(trainer.threads).toBe(2);
      const losses: number[] = [];
      const tensors: number[] = [];
      for (let i = 0; i < 30; i++) {
        losses.push((await trainer.trainStep()).loss);
        tensors.push(tf.memory().numTensors);
      }
      const weights = trainer.net.flatWeightsSync();
      await trainer.close();
      return { losses, weights, tensors };
    };
    const a = await run();
    const b = await run();
    expect(b.weights).toEqual(a.weights); // the shard sum has a fixed order
    expect(new Set(a.tensors.slice(1)).size).toBe(1);
    const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
    expect(mean(a.losses.slice(-6))).toBeLessThan(0.7 * mean(a.losses.slice(0, 6)));
  });

  it('flips mirror the image; a batch is drawn from the training rows only', () => {
    const data = syntheticData();
    const config = frTrainerConfigSchema.parse({ seed: 1, steps: 1, batchSize: 16, flip: true });
    const rows = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5]; // the dataset groups rows by class: 0-4 and 5-9
    const trainer = new FrTrainer(backbone, config, data, rows, 'k');
    const { x, labels } = trainer.drawBatch();
    const px = SIZE * SIZE * 3;
    let flipped = 0;
    for (let i = 0; i < 16; i++) {
      expect([0, 1]).toContain(labels[i]);
      const left = x[i * px + (5 * SIZE + 2) * 3];
      const right = x[i * px + (5 * SIZE + SIZE - 3) * 3];
      if (right > left) flipped++; // the brighter left half moved right
    }
    expect(flipped).toBeGreaterThan(2);
    expect(flipped).toBeLessThan(14);
    trainer.dispose();
  });

  it('refuses a batch larger than the training set and a resolution the crops do not have, naming the field', () => {
    const data = syntheticData();
    expect(() => new FrTrainer(backbone, frTrainerConfigSchema.parse({ seed: 1, steps: 1, batchSize: 64 }), data, [0, 1, 2], 'k')).toThrow(
      /fr-train\.trainer\.batchSize/,
    );
    const at64 = iresnetConfigSchema.parse({ depth: 18, resolution: 64, width: 0.125, embeddingDim: 32 });
    expect(() => new FrTrainer(at64, frTrainerConfigSchema.parse({ seed: 1, steps: 1, batchSize: 2 }), data, [0, 1, 2], 'k')).toThrow(
      /fr-train\.resolution': 64 but the training crops are 32×32/,
    );
  });
});

describe('learning-rate schedule', () => {
  it('maps fractions of the run to the kit schedule (warm-up, then decay)', () => {
    const poly = frLearningRateSchedule({ learningRate: 0.1, warmupSteps: 10, steps: 110, decay: { kind: 'polynomial', power: 2 } });
    expect(learningRateAt(poly, 5)).toBeCloseTo(0.05, 10);
    expect(learningRateAt(poly, 10)).toBeCloseTo(0.1, 10);
    expect(learningRateAt(poly, 60)).toBeCloseTo(0.1 * 0.5 ** 2, 10);
    expect(learningRateAt(poly, 110)).toBeCloseTo(0, 10);
    const steps = frLearningRateSchedule({
      learningRate: 0.1,
      warmupSteps: 0,
      steps: 100,
      decay: { kind: 'step', at: [0.5, 0.8], gamma: 0.1 },
    });
    expect(steps.decay).toEqual({ kind: 'step', milestones: [50, 80], gamma: 0.1 });
  });
});

describe('dataset selection', () => {
  it('keeps identities with enough images, caps images and identities, renumbers classes in first-seen order', () => {
    const labels = ['a', 'b', 'a', 'c', 'b', 'a', 'd', 'd', 'd'];
    const s = selectIdentities(labels, { minPerIdentity: 2, perIdentity: 2 });
    expect(s.classNames).toEqual(['a', 'b', 'd']);
    expect(s.rows).toEqual([0, 2, 1, 4, 6, 7]);
    expect(Array.from(s.labels)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(selectIdentities(labels, { minPerIdentity: 1, maxIdentities: 2 }).classNames).toEqual(['a', 'b']);
  });

  it('refuses a single-identity set naming the field', () => {
    expect(() => datasetFromArrays(2, new Uint8Array(3 * 12), ['x', 'x', 'x'], { minPerIdentity: 1 }, 'tiny set')).toThrow(
      /tiny set: 1 identity has at least 1 images; a recognizer needs at least 2/,
    );
  });

  it('holds out images of identities that keep at least two to train on', () => {
    const labels = Int32Array.from([0, 0, 0, 0, 1, 1, 2, 2, 2]);
    const { train, validation } = splitValidation(labels, 1, 0);
    expect(validation).toHaveLength(2); // classes 0 (4 images) and 2 (3 images); class 1 has only 2
    expect(new Set([...train, ...validation]).size).toBe(9);
    expect(validation.map((r) => labels[r]).sort()).toEqual([0, 2]);
  });
});
