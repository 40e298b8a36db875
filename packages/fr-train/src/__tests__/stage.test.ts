import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeStage, initBackend, type ProgressEvent } from '@id3/core';
import { evalStage } from '@id3/eval';
import { prepareStage, requireDataPath } from '@id3/faces';
import { frTrainStage } from '../stage';

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
    { seed: 0, source: { kind: 'folders', path: 'data:orl' }, limit: 200, sizes: [32], fallback: 'center-crop', fallbackFraction: 0.9 },
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
    expect((await sharp(store.abs(r.manifest.outputs.curve.path)).metadata()).format).toBe('png');
    expect(events.filter((e) => e.phase === 'checkpoint')).toHaveLength(2);
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

  it('refuses a dataset with fewer than two identities, naming the field', async () => {
    await expect(
      executeStage(frTrainStage, { ...trainConfig, select: { minPerIdentity: 11 } }, { ...opts, fieldPrefix: 'fr-train' }),
    ).rejects.toThrow(/0 identities have at least 11 images; a recognizer needs at least 2/);
  });
});
