import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeStage, initBackend, type ProgressEvent } from '@id3/core';
import { trainDiffusionStage } from '../stage';
import { tinyPrepared } from './fixtures/tiny-prepared';

jest.setTimeout(180_000);

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const R = 16;
const prepared = tinyPrepared(R);

const config = (steps: number) => ({
  seed: 1,
  resolution: R,
  unet: { baseChannels: 8, channelMult: [1, 2], attentionResolutions: [8], groups: 4, conditionHidden: [32, 16] },
  trainer: { steps, batchSize: 4, warmupSteps: 2, checkpointEvery: 2, logEvery: 1, threads: 1, identity: { subBatch: 1, every: 2 } },
  holdout: 3,
  preview: { rows: 2, samples: 2, ddimSteps: 2 },
  evaluation: { count: 3, ddimSteps: 2 },
});

async function run(root: string, steps: number, events: ProgressEvent[] = []) {
  return executeStage(trainDiffusionStage, config(steps), {
    store: new RunStore(root),
    progress: (e) => events.push(e),
    backend: 'wasm',
    fieldPrefix: 'train-diffusion',
  });
}

describe('train-diffusion stage', () => {
  const dirs: string[] = [];
  const fresh = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'id3-train-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('trains from the prepared tensors, writes model, previews, loss curve and evaluation; extending a finished run resumes it exactly', async () => {
    const straight = fresh();
    prepared.copyInto(straight);
    const full = await run(straight, 4);
    const m = full.manifest;
    expect(m.metrics).toMatchObject({ steps: 4, trainImages: prepared.count - 3, evalCount: 3 });
    for (const k of ['ema', 'weights', 'preview', 'lossCurve', 'history', 'evaluation']) expect(m.outputs[k]).toBeDefined();
    const preview = await sharp(join(straight, m.outputs.preview.path)).metadata();
    // 2 rows × (1 real + 2 samples) tiles of 16 px with 2 px gutters, scaled ×4
    expect([preview.width, preview.height]).toEqual([(3 * R + 4 * 2) * 4, (2 * R + 3 * 2) * 4]);
    const evaluation = JSON.parse(readFileSync(join(straight, m.outputs.evaluation.path), 'utf8')) as { metrics: Record<string, number> };
    const ev = evaluation.metrics;
    // Mean cosines of unit embeddings, in the manifest as evaluation.json records them; the real
    // held-out photos (the ceiling) are nearer their own teacher embedding than another row's.
    for (const k of ['idCosMatched', 'idCosMismatched', 'realIdCosMatched', 'realIdCosMismatched']) {
      expect(Number.isFinite(ev[k])).toBe(true);
      expect(Math.abs(ev[k])).toBeLessThanOrEqual(1 + 1e-6);
      expect(m.metrics[k]).toBe(ev[k]);
    }
    expect(ev.realIdCosMatched).toBeGreaterThan(ev.realIdCosMismatched);

    // Stopped after 2 steps, then asked for 4: resumes at 2 and ends bit-identical.
    const split = fresh();
    prepared.copyInto(split);
    await run(split, 2);
    const events: ProgressEvent[] = [];
    const extended = await run(split, 4, events);
    expect(events.find((e) => e.phase === 'resume')?.step).toBe(2);
    expect(readFileSync(join(split, extended.manifest.outputs.emaData.path))).toEqual(readFileSync(join(straight, m.outputs.emaData.path)));
    expect(readFileSync(join(split, extended.manifest.outputs.weightsData.path))).toEqual(
      readFileSync(join(straight, m.outputs.weightsData.path)),
    );

    // Same config again: skipped, nothing recomputed.
    expect((await run(split, 4)).skipped).toBe(true);
  });

  it('names what is missing when prepare has not run, or did not make this resolution', async () => {
    const empty = fresh();
    await expect(run(empty, 2)).rejects.toMatchObject({
      name: 'InvalidInputError',
      message: expect.stringMatching(/reads the outputs of stage 'prepare', which has not completed .*: run 'prepare' first/),
    });
    const other = fresh();
    prepared.copyInto(other);
    await expect(
      executeStage(
        trainDiffusionStage,
        { ...config(2), resolution: 32 },
        { store: new RunStore(other), progress: () => undefined, backend: 'wasm', fieldPrefix: 'train-diffusion' },
      ),
    ).rejects.toMatchObject({
      message: expect.stringMatching(/reads output 'crops32' of stage 'prepare', which has none by that name \(it has: crops16, /),
    });
    await expect(
      executeStage(
        trainDiffusionStage,
        { ...config(2), trainer: { steps: 0 } },
        { store: new RunStore(other), progress: () => undefined, backend: 'wasm', fieldPrefix: 'train-diffusion' },
      ),
    ).rejects.toMatchObject({ message: expect.stringMatching(/train-diffusion\.trainer\.steps/) });
  });
});
