import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeStage, initBackend, readTensorFile, type ProgressEvent } from '@id3/core';
import { anchorsStage, identitiesStage } from '../index';

describe('anchors and identities stages through the run store', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it('writes anchors, statistics and a real PNG; identities read them; re-runs skip', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-anchors-')));
    const events: ProgressEvent[] = [];
    const opts = { store, progress: (e: ProgressEvent) => events.push(e), backend: 'wasm' };
    const anchors = await executeStage(
      anchorsStage,
      { seed: 0, n: 200, dim: 16, iterations: 60, neighbours: 8, refreshEvery: 10, checkpointEvery: 20 },
      opts,
    );
    expect(anchors.skipped).toBe(false);
    const m = anchors.manifest.metrics;
    expect(m.minAngleDeg).toBeGreaterThan(m.random_minAngleDeg);
    expect(m.maxCos).toBeLessThan(m.random_maxCos);
    const { header, values } = readTensorFile(store.abs(anchors.manifest.outputs.anchors.path));
    expect(header.shape).toEqual([200, 16]);
    expect(values.length).toBe(3200);
    const png = await sharp(store.abs(anchors.manifest.outputs.plot.path)).metadata();
    expect(png.format).toBe('png');
    expect(png.width).toBeGreaterThan(100);
    expect(events.some((e) => e.phase === 'checkpoint')).toBe(true);

    const ids = await executeStage(identitiesStage, { seed: 0, m: 5, lb: 0.7, ub: 0.9 }, opts);
    expect(ids.manifest.metrics.embeddings).toBe(1000);
    expect(ids.manifest.metrics.anchorCosMin).toBeGreaterThanOrEqual(0.7 - 1e-6);
    expect(ids.manifest.metrics.anchorCosMax).toBeLessThanOrEqual(0.9 + 1e-6);
    // In 16-d, 200 anchors are only ~50° apart, so a few band samples sit nearer another anchor.
    expect(ids.manifest.metrics.ownAnchorNearestFraction).toBeGreaterThan(0.95);
    // Read through the anchors manifest; the header carries the data file's hash.
    expect(ids.manifest.inputs).toEqual({ anchors: anchors.manifest.outputs.anchors });

    expect(
      (
        await executeStage(
          anchorsStage,
          { seed: 0, n: 200, dim: 16, iterations: 60, neighbours: 8, refreshEvery: 10, checkpointEvery: 20 },
          opts,
        )
      ).skipped,
    ).toBe(true);
    expect((await executeStage(identitiesStage, { seed: 0, m: 5, lb: 0.7, ub: 0.9 }, opts)).skipped).toBe(true);
  });

  it('identities fails with a clear message when anchors are missing', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-anchors-')));
    await expect(
      executeStage(identitiesStage, { seed: 0, m: 5, lb: 0.7, ub: 0.9 }, { store, progress: () => undefined, backend: 'wasm' }),
    ).rejects.toThrow(/reads the outputs of stage 'anchors', which has not completed .*: run 'anchors' first/);
  });

  it('rejects an inverted band naming the field', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-anchors-')));
    await expect(
      executeStage(identitiesStage, { seed: 0, m: 5, lb: 0.9, ub: 0.7 }, { store, progress: () => undefined, backend: 'wasm' }),
    ).rejects.toThrow(/field 'lb': lb must not exceed ub/);
  });
});
