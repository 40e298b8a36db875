import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeStage, initBackend, mergeConfig, tf, type ProgressEvent } from '@id3/core';
import { evaluationRows, type HeldOutHistoryRow } from '../held-out-evaluation';
import { heldOutRows } from '../holdout';
import { loadGenerator } from '../generator';
import { identitySpaceStage } from '../identity-space-stage';
import { sampleConditions } from '../sampling';
import { trainDiffusionStage } from '../stage';
import { tinyPrepared } from './fixtures/tiny-prepared';

// The train-diffusion stage's conditioning read-outs: at every checkpoint, across a resume, and
// in the proxy mode (a training subset, evaluated on its own rows). Same tiny set-up as stage.test.ts.
jest.setTimeout(180_000);

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const R = 16;
const prepared = tinyPrepared(R);

const config = (steps: number, extra: object = {}) =>
  mergeConfig(
    {
      seed: 1,
      resolution: R,
      unet: { baseChannels: 8, channelMult: [1, 2], attentionResolutions: [8], groups: 4, conditionHidden: [32, 16] },
      trainer: { steps, batchSize: 4, warmupSteps: 2, checkpointEvery: 2, logEvery: 1, threads: 1, identity: { subBatch: 1, every: 2 } },
      holdout: 3,
      preview: { rows: 2, samples: 1, ddimSteps: 2 },
      evaluation: { count: 3, ddimSteps: 2, checkpointDdimSteps: 2 },
    },
    extra,
  );

async function run(root: string, steps: number, extra: object = {}, events: ProgressEvent[] = []) {
  return executeStage(trainDiffusionStage, config(steps, extra), {
    store: new RunStore(root),
    progress: (e) => events.push(e),
    backend: 'wasm',
    fieldPrefix: 'train-diffusion',
  });
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

describe('train-diffusion held-out evaluation', () => {
  const dirs: string[] = [];
  const fresh = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'id3-train-eval-'));
    dirs.push(d);
    prepared.copyInto(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('evaluates at every checkpoint (heldout-history.json, heldout-curve.png); a resumed run keeps the rows up to its checkpoint', async () => {
    const root = fresh();
    const first = await run(root, 2);
    const historyPath = join(root, first.manifest.outputs.heldoutHistory.path);
    const one = readJson<{ settings: { rows: number[] }; history: HeldOutHistoryRow[] }>(historyPath);
    expect(one.history.map((h) => h.step)).toEqual([2]);
    expect(first.manifest.outputs.heldoutCurve).toBeUndefined(); // a curve needs two points
    // The held-out rows in the evaluation's seeded order (seed = the config's, 1).
    const held = evaluationRows('held-out', heldOutRows(prepared.count, 1, 3), [], 3, 1);
    expect(one.settings.rows).toEqual(held);

    // A run cut off after a later checkpoint left a row for step 4 behind; the checkpoint at 4 is gone.
    writeFileSync(historyPath, JSON.stringify({ ...one, history: [...one.history, { ...one.history[0], step: 4, identityGap: 123 }] }));
    const events: ProgressEvent[] = [];
    const second = await run(root, 4, {}, events);
    expect(events.find((e) => e.phase === 'resume')?.step).toBe(2);
    expect(events.filter((e) => e.phase === 'evaluate' && e.step !== undefined).map((e) => e.step)).toEqual([4]);
    const two = readJson<{ history: HeldOutHistoryRow[] }>(join(root, second.manifest.outputs.heldoutHistory.path));
    expect(two.history.map((h) => h.step)).toEqual([2, 4]); // one row per checkpoint
    expect(two.history[0]).toEqual(one.history[0]); // kept as it was
    for (const h of two.history) {
      expect(Number.isFinite(h.identityGap)).toBe(true);
      expect(h.identityGap).toBeCloseTo(h.idCosMatched - h.idCosMismatched, 12);
      expect(h.evalCount).toBe(3);
    }
    expect(two.history[1].identityGap).not.toBe(123); // the cut-off run's row was dropped, then re-evaluated
    // The real photos' read-outs do not depend on the weights.
    expect(two.history[1].realIdentityGap).toBe(two.history[0].realIdentityGap);
    const curve = await sharp(join(root, second.manifest.outputs.heldoutCurve.path)).metadata();
    expect([curve.width, curve.height]).toEqual([800, 960]);

    // The final evaluation (count, ddimSteps) shuffles attributes among the held-out rows.
    const ev = readJson<{ on: string; subset: number | null; rows: number[]; attributeRows: number[]; metrics: Record<string, number> }>(
      join(root, second.manifest.outputs.evaluation.path),
    );
    expect(ev).toMatchObject({ on: 'held-out', subset: null, rows: held, attributeRows: [held[1], held[2], held[0]] });
    for (const k of ['identityGap', 'realIdentityGap', 'idCosMatched', 'realIdCosMismatched'])
      expect(second.manifest.metrics[k]).toBe(ev.metrics[k]);
    expect(second.manifest.metrics.evalOnTraining).toBe(0);
    expect(second.manifest.metrics.subset).toBeUndefined();
  });

  it("holdoutBy 'person': whole people are held out, never trained on, and they are the evaluated conditions", async () => {
    const root = fresh();
    const index = readJson<{ rows: { label: number }[] }>(join(root, 'prepare', 'index.json'));
    const labels = index.rows.map((r) => r.label);
    const held = heldOutRows(prepared.count, 1, 2, labels);
    const people = new Set(held.map((r) => labels[r]));
    expect(people.size).toBe(1); // one person of 3 photos covers a holdout of 2
    expect(held).toHaveLength(3);
    const r = await run(root, 2, { holdout: 2, holdoutBy: 'person', evaluation: { every: 'end' } });
    expect(r.manifest.metrics).toMatchObject({ trainImages: prepared.count - 3, evalCount: 3 });
    const ev = readJson<{ rows: number[] }>(join(root, r.manifest.outputs.evaluation.path));
    expect([...ev.rows].sort((a, b) => a - b)).toEqual(held);
    // a prepared set without identity labels cannot hold out people: the error names row, file and field
    const indexPath = join(root, 'prepare', 'index.json');
    writeFileSync(indexPath, JSON.stringify({ rows: index.rows.map(({ label: _label, ...rest }) => rest) }));
    await expect(run(root, 2, { holdout: 2, holdoutBy: 'person', seed: 2 })).rejects.toThrow(
      /index\.json: row 0 \(.*\) has no identity label, so field 'train-diffusion\.holdoutBy'/,
    );
  });

  it("evaluation.every 'end' writes no history; cfgScales adds classifier-free-guided evaluations of the same conditions", async () => {
    const root = fresh();
    const r = await run(root, 2, { evaluation: { every: 'end', cfgScales: [0, 1] } });
    expect(r.manifest.outputs.heldoutHistory).toBeUndefined();
    const ev = readJson<{ metrics: Record<string, number>; cfg: { cfgScale: number; metrics: Record<string, number> }[] }>(
      join(root, r.manifest.outputs.evaluation.path),
    );
    // w = 1 is the headline evaluation, not repeated; w = 0 samples the same conditions unconditionally
    expect(ev.cfg.map((c) => c.cfgScale)).toEqual([0]);
    expect(ev.cfg[0].metrics.evalCount).toBe(ev.metrics.evalCount);
    expect(ev.cfg[0].metrics.realIdentityGap).toBe(ev.metrics.realIdentityGap); // the same real photos
    expect(ev.cfg[0].metrics.idCosMatched).not.toBe(ev.metrics.idCosMatched);
    expect(r.manifest.metrics.cfg0IdentityGap).toBe(ev.cfg[0].metrics.identityGap);
  });

  it("proxy mode: subset trains on the first training rows and keys the checkpoints; evaluation.on 'training' evaluates those rows", async () => {
    const root = fresh();
    const held = new Set(heldOutRows(prepared.count, 1, 3));
    const trainRows = Array.from({ length: prepared.count }, (_, i) => i).filter((i) => !held.has(i));
    const events: ProgressEvent[] = [];
    const r = await run(root, 2, { subset: 4, evaluation: { on: 'training' } }, events);
    expect(r.manifest.metrics).toMatchObject({ trainImages: 4, subset: 4, evalOnTraining: 1, evalCount: 3 });
    expect(events.find((e) => e.phase === 'train' && e.message)?.message).toMatch(/ 4 training images /);
    const ev = readJson<{ on: string; subset: number; rows: number[]; note: string }>(join(root, r.manifest.outputs.evaluation.path));
    expect(ev).toMatchObject({ on: 'training', subset: 4, rows: evaluationRows('training', [], trainRows.slice(0, 4), 3, 1) });
    expect(ev.note).toMatch(/^PROXY/);
    const history = readJson<{ settings: { on: string; subset: number; rows: number[] } }>(
      join(root, r.manifest.outputs.heldoutHistory.path),
    );
    expect(history.settings).toMatchObject({
      on: 'training',
      subset: 4,
      rows: evaluationRows('training', [], trainRows.slice(0, 4), 3, 1),
    });

    // Another subset is another training run: its checkpoints are not resumed.
    const again: ProgressEvent[] = [];
    await run(root, 2, { subset: 5, evaluation: { on: 'training' } }, again);
    const resume = again.find((e) => e.phase === 'resume');
    expect(resume?.step).toBeUndefined();
    expect(resume?.message).toMatch(/starting fresh/);
  });

  it('names the field: a subset larger than the training rows, checkpointCount above count', async () => {
    const root = fresh();
    await expect(run(root, 2, { subset: prepared.count })).rejects.toMatchObject({
      name: 'InvalidInputError',
      message: expect.stringMatching(/train-diffusion\.subset/),
    });
    await expect(run(root, 2, { evaluation: { checkpointCount: 4 } })).rejects.toMatchObject({
      message: expect.stringMatching(/train-diffusion\.evaluation\.checkpointCount/),
    });
  });
});

describe('train-diffusion conditioned in the identity space', () => {
  it('trains on z = W·(y − μ) rows, and its model folder carries the artefact and maps y itself', async () => {
    const root = mkdtempSync(join(tmpdir(), 'id3-train-z-'));
    try {
      prepared.copyInto(root);
      const store = new RunStore(root);
      const space = await executeStage(
        identitySpaceStage,
        { seed: 1, resolution: R, holdout: 3, k: 4, minFit: 5 },
        { store, progress: () => undefined, backend: 'wasm', fieldPrefix: 'identity-space' },
      );
      const r = await run(root, 2, { condition: 'identity-space', evaluation: { every: 'end' } });
      const model = join(root, 'train-diffusion', 'model');
      const g = loadGenerator(model);
      expect(g.descriptor.condition).toMatchObject({ space: 'whitened', artefact: 'identity-space.json' });
      expect(g.descriptor.identitySpace).toBe(g.identitySpace?.sha256);
      expect(readFileSync(join(model, 'identity-space.json'))).toEqual(readFileSync(join(root, space.manifest.outputs.identitySpace.path)));
      expect(g.net.config.identityDim).toBe(4);
      expect(g.descriptor.identityDim).toBe(128);
      expect(Number.isFinite(r.manifest.metrics.identityGap)).toBe(true);
      // Callers pass teacher embeddings; the generator conditions on their whitened rows.
      const y = new Float32Array(128).fill(1 / Math.sqrt(128));
      const before = tf.memory().numTensors;
      const x = await sampleConditions(
        g.net,
        g.diffusion,
        { y: g.conditionOf(y), s: new Float32Array(4), count: 1 },
        { ddimSteps: 2, seed: 0 },
      );
      expect(x.length).toBe(R * R * 3);
      expect(tf.memory().numTensors).toBe(before);
      g.net.dispose();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
