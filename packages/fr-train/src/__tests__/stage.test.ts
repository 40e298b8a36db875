import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeStage, initBackend, readTensorFile, type ProgressEvent } from '@id3/core';
import { evalStage } from '@id3/eval';
import { prepareStage, requireDataPath, writeInsightfaceRecordIo } from '@id3/faces';
import { DEFAULT_TIMED_CHECKPOINT_MINUTES, frTrainStage, timedCheckpointMinutes } from '../stage';

// Real faces end to end: ORL's first 20 people (10 greyscale photos each, ../shared/data/orl)
// through prepare (detection, ArcFace alignment, 32×32 crops), then a small IResNet trained on
// 9 photos of each; it must identify their held-out 10th photo far above chance (1 in 20). Then
// eval scores the trained network on LFW pairs as it scores any teacher.
jest.setTimeout(600_000);

const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-fr-stage-')));
const opts = { store, progress: () => undefined, backend: 'wasm' };
const trainConfig = {
  seed: 0,
  resolution: 32,
  backbone: { depth: 18, width: 0.125, embeddingDim: 64 },
  trainer: { steps: 150, batchSize: 32, learningRate: 0.1, warmupSteps: 10, marginWarmupSteps: 30, checkpointEvery: 75, logEvery: 5 },
  validationPerIdentity: 1,
};

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
  requireDataPath('orl', 's1');
  const prepared = await executeStage(
    prepareStage,
    {
      seed: 0,
      source: { kind: 'folders', path: 'data:orl' },
      limit: 200,
      sizes: [112, 32],
      fallback: 'center-crop',
      fallbackFraction: 0.9,
    },
    { ...opts, fieldPrefix: 'prepare' },
  );
  expect(prepared.manifest.metrics.accepted).toBeGreaterThanOrEqual(190);
});

describe('fr-train stage', () => {
  it('trains on prepared ORL faces and identifies held-out photos of the training people far above chance', async () => {
    const events: ProgressEvent[] = [];
    const r = await executeStage(frTrainStage, trainConfig, { ...opts, progress: (e) => events.push(e), fieldPrefix: 'fr-train' });
    const m = r.manifest.metrics;
    expect(m.identities).toBe(20);
    expect(m.steps).toBe(150);
    console.log(
      `fr-train on ORL: validation accuracy ${m.validationAccuracy} (20 people, chance 0.05), final loss ${m.finalLoss}, ${m.imagesPerSecond} images/s`,
    );
    expect(m.validationAccuracy).toBeGreaterThan(0.5);
    const card = JSON.parse(readFileSync(store.abs(r.manifest.outputs.card.path), 'utf8')) as {
      steps: number;
      dataset: { identities: number };
    };
    expect(card).toMatchObject({ steps: 150, dataset: { identities: 20 } });
    // Two panels, loss above and accuracy below (800 × 360 each).
    expect(await sharp(store.abs(r.manifest.outputs.curve.path)).metadata()).toMatchObject({ format: 'png', width: 800, height: 720 });
    expect(events.filter((e) => e.phase === 'checkpoint' && !e.message?.includes('(timed'))).toHaveLength(2);
    // Same config again: current, skipped.
    expect((await executeStage(frTrainStage, trainConfig, opts)).skipped).toBe(true);
  });

  it('eval scores the trained model (stage:fr-train) on benchmark pairs, with crops cut as its training crops were', async () => {
    const r = await executeStage(
      evalStage,
      {
        seed: 0,
        model: 'stage:fr-train',
        benchmarks: [{ kind: 'bin', name: 'lfw-sample', path: 'data:samples/insightface-bin/sample-py3.bin' }],
      },
      { ...opts, fieldPrefix: 'eval' },
    );
    expect(r.manifest.inputs.model.sha256).toBe(store.readManifest('fr-train')?.outputs.model.sha256);
    expect(r.manifest.metrics.lfwsample_accuracy).toBeGreaterThanOrEqual(0.5);
    expect(readFileSync(store.abs(r.manifest.outputs.report.path), 'utf8')).toMatch(/# Verification report: stage:fr-train/);
  });

  it('trains from an insightface RecordIO set (112×112 JPEG records, resized to the training resolution)', async () => {
    // Write the prepared 112 crops of ORL's first 5 people as train.rec + train.idx, as face2rec does.
    const crops = readTensorFile(store.abs(store.readManifest('prepare')?.outputs.crops112.path ?? ''));
    const index = JSON.parse(readFileSync(store.abs(store.readManifest('prepare')?.outputs.index.path ?? ''), 'utf8')) as {
      rows: { label: number }[];
    };
    const px = 112 * 112 * 3;
    const images: { label: number; image: Uint8Array }[] = [];
    for (const [i, row] of index.rows.entries()) {
      if (row.label >= 5) continue;
      const raw = Buffer.from((crops.values as Uint8Array).subarray(i * px, (i + 1) * px));
      images.push({
        label: row.label,
        image: await sharp(raw, { raw: { width: 112, height: 112, channels: 3 } })
          .jpeg({ quality: 95 })
          .toBuffer(),
      });
    }
    const dir = mkdtempSync(join(tmpdir(), 'id3-rec-'));
    writeInsightfaceRecordIo(join(dir, 'train.rec'), join(dir, 'train.idx'), images);
    const recStore = new RunStore(mkdtempSync(join(tmpdir(), 'id3-fr-rec-')));
    const r = await executeStage(
      frTrainStage,
      {
        ...trainConfig,
        dataset: { kind: 'recordio', rec: join(dir, 'train.rec'), idx: join(dir, 'train.idx') },
        trainer: { ...trainConfig.trainer, steps: 4, batchSize: 8, checkpointEvery: 4 },
      },
      { store: recStore, progress: () => undefined, backend: 'wasm', fieldPrefix: 'fr-train' },
    );
    expect(r.manifest.metrics).toMatchObject({ identities: 5, steps: 4, trainImages: images.length - 5 });
    expect(Object.keys(r.manifest.inputs).sort()).toEqual(['idx', 'rec']);
  });

  it('timed checkpoints (the worker’s ID3_CHECKPOINT_MINUTES) change no output: model and history equal an unbroken run’s', async () => {
    const small = { ...trainConfig, trainer: { ...trainConfig.trainer, steps: 12, batchSize: 16, checkpointEvery: 12 } };
    const train = async (minutes: string, keepCheckpoints: number) => {
      const events: ProgressEvent[] = [];
      process.env.ID3_CHECKPOINT_MINUTES = minutes;
      // Checkpoints of an earlier run with the same resume key would be resumed (and nothing trained).
      rmSync(join(store.stageDir('fr-train'), 'checkpoints'), { recursive: true, force: true });
      try {
        // keepCheckpoints changes the config hash (so the stage runs again) and nothing the training computes.
        const config = { ...small, trainer: { ...small.trainer, keepCheckpoints } };
        const r = await executeStage(frTrainStage, config, { ...opts, progress: (e) => events.push(e), fieldPrefix: 'fr-train' });
        const timed = events.filter((e) => e.phase === 'checkpoint' && e.message?.includes('(timed')).map((e) => e.step);
        expect(r.manifest.metrics).toMatchObject({ steps: 12, resumedFromStep: 0 });
        const outputs = r.manifest.outputs;
        // The history without its one wall-clock field (speed), which no two runs share.
        const history = (
          JSON.parse(readFileSync(store.abs(outputs.history.path), 'utf8')) as { history: Record<string, unknown>[] }
        ).history.map(({ imagesPerSecond: _, ...point }) => point);
        return { timed, weights: [outputs.model.sha256, outputs.modelData.sha256], history };
      } finally {
        delete process.env.ID3_CHECKPOINT_MINUTES;
      }
    };
    const unbroken = await train('0', 2);
    expect(unbroken.timed).toEqual([]);
    const everyStep = await train('1e-9', 3);
    expect(everyStep.timed).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]); // step 12 is the schedule's own
    expect(everyStep.weights).toEqual(unbroken.weights);
    expect(everyStep.history).toEqual(unbroken.history);
    expect(unbroken.history.map((h) => h.step)).toEqual([5, 10]); // logEvery 5: the points compared are there
  });

  it('ID3_CHECKPOINT_MINUTES: unset or empty is the default, 0 is off, anything else not ≥ 0 is refused naming it', () => {
    expect(timedCheckpointMinutes(undefined)).toBe(DEFAULT_TIMED_CHECKPOINT_MINUTES);
    expect(timedCheckpointMinutes(' ')).toBe(DEFAULT_TIMED_CHECKPOINT_MINUTES);
    expect(timedCheckpointMinutes('0')).toBe(0);
    expect(timedCheckpointMinutes('2.5')).toBe(2.5);
    for (const bad of ['-1', 'ten', 'Infinity'])
      expect(() => timedCheckpointMinutes(bad)).toThrow(/ID3_CHECKPOINT_MINUTES: '.*' is not a number of minutes ≥ 0/);
  });

  it('refuses a dataset with fewer than two identities, naming the field', async () => {
    await expect(
      executeStage(frTrainStage, { ...trainConfig, select: { minPerIdentity: 11 } }, { ...opts, fieldPrefix: 'fr-train' }),
    ).rejects.toThrow(/0 identities have at least 11 images; a recognizer needs at least 2/);
  });
});
