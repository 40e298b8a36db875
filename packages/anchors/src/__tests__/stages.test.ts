import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { z } from 'zod';
import { Rng, RunStore, executeStage, initBackend, readTensorFile, type ProgressEvent, type StageDefinition } from '@id3/core';
import { anchorsStage, fitIdentitySpace, identitiesStage, writeIdentitySpace } from '../index';

/**
 * Stands in for the identity-space stage (packages/diffusion, which embeds prepared crops): writes
 * an artefact fitted on unit embeddings in a narrow cone, like a metric-learned teacher's.
 */
const fakeIdentitySpace: StageDefinition<z.ZodObject<{ seed: z.ZodNumber; k: z.ZodNumber }>> = {
  name: 'identity-space',
  version: 1,
  schema: z.object({ seed: z.number(), k: z.number() }),
  async run({ config, dir }) {
    const dim = 16;
    const n = 4000;
    const rng = new Rng(config.seed);
    const x = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) {
      let sq = 0;
      for (let a = 0; a < dim; a++) {
        x[i * dim + a] = a === 0 ? 1 : rng.normal() * (0.3 / Math.sqrt(a));
        sq += x[i * dim + a] ** 2;
      }
      for (let a = 0; a < dim; a++) x[i * dim + a] /= Math.sqrt(sq);
    }
    const space = writeIdentitySpace(dir, fitIdentitySpace(x, dim, { k: config.k }), {
      teacher: 'faceapi-dlib-128',
      count: n,
      dataSha256: '0'.repeat(64),
      source: 'a synthetic cone',
    });
    return { outputs: { identitySpace: space.path }, metrics: { k: space.map.k } };
  },
};

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

  it("whitened placement: Tammes in the identity space's k directions, handed on as teacher embeddings inside the data cone", async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-anchors-')));
    const opts = { store, progress: () => undefined, backend: 'wasm' };
    const space = await executeStage(fakeIdentitySpace, { seed: 1, k: 6 }, opts);
    const anchorsConfig = { seed: 0, n: 200, dim: 16, iterations: 60, neighbours: 8, refreshEvery: 10, space: 'whitened' };
    const anchors = await executeStage(anchorsStage, anchorsConfig, opts);
    const m = anchors.manifest.metrics;
    expect(m.placementDim).toBe(6);
    expect(m.minAngleDeg).toBeGreaterThan(m.random_minAngleDeg);
    // Spread over the whitened sphere (mean cos ≈ 0), but on the teacher's sphere inside the cone.
    expect(Math.abs(m.meanCos)).toBeLessThan(0.05);
    expect(m.teacher_meanCos).toBeGreaterThan(0.7);
    const teacherAnchors = readTensorFile(store.abs(anchors.manifest.outputs.anchors.path));
    const whitened = readTensorFile(store.abs(anchors.manifest.outputs.anchorsWhitened.path));
    expect(teacherAnchors.header.shape).toEqual([200, 16]);
    expect(whitened.header.shape).toEqual([200, 6]);
    const sha = whitened.header.meta?.identitySpace;
    expect(sha).toBe(space.manifest.outputs.identitySpace.sha256);
    expect(teacherAnchors.header.meta).toMatchObject({ placement: 'whitened', identitySpace: sha, identitySpaceK: 6 });
    expect(anchors.manifest.inputs).toEqual({ identitySpace: space.manifest.outputs.identitySpace });

    const ids = await executeStage(identitiesStage, { seed: 0, m: 5, lb: 0.7, ub: 0.9, space: 'whitened' }, opts);
    const im = ids.manifest.metrics;
    expect(im.embeddings).toBe(1000);
    expect(im.anchorCosMin).toBeGreaterThanOrEqual(0.7 - 1e-6);
    expect(im.anchorCosMax).toBeLessThanOrEqual(0.9 + 1e-6);
    // The whitened band is tighter on the teacher's sphere (the cone is narrow).
    expect(im.teacherAnchorCosMin).toBeGreaterThan(0.8);
    const y = readTensorFile(store.abs(ids.manifest.outputs.embeddings.path));
    expect(y.header.shape).toEqual([1000, 16]);
    expect(y.header.meta).toMatchObject({ placement: 'whitened', identitySpace: sha, band: [0.7, 0.9] });
    for (let r = 0; r < 1000; r += 97) {
      let sq = 0;
      for (let a = 0; a < 16; a++) sq += (y.values[r * 16 + a] as number) ** 2;
      expect(sq).toBeCloseTo(1, 5);
    }
    expect(readTensorFile(store.abs(ids.manifest.outputs.embeddingsWhitened.path)).header.shape).toEqual([1000, 6]);

    // A new identity space under anchors made in the old one: identities refuses to mix them.
    await executeStage(fakeIdentitySpace, { seed: 2, k: 6 }, opts);
    await expect(executeStage(identitiesStage, { seed: 0, m: 5, lb: 0.7, ub: 0.9, space: 'whitened' }, opts)).rejects.toThrow(
      /anchors-whitened\.json: made in identity space "[0-9a-f]{64}", but this run's identity space is [0-9a-f]{64}/,
    );
    // …and the anchors, whose input changed, are no longer current.
    expect((await executeStage(anchorsStage, anchorsConfig, opts)).skipped).toBe(false);
  });

  it('refuses, at plan time, identities placed in another space than the anchors', () => {
    expect(() =>
      identitiesStage.check?.(
        { seed: 0, m: 5, lb: 0.7, ub: 0.9, blockRows: 2048, histogramBins: 200, space: 'teacher' },
        { anchors: { space: 'whitened' } },
      ),
    ).toThrow(/field 'identities\.space': 'teacher' differs from anchors\.space 'whitened'/);
    expect(() =>
      identitiesStage.check?.(
        { seed: 0, m: 5, lb: 0.7, ub: 0.9, blockRows: 2048, histogramBins: 200, space: 'whitened' },
        { anchors: { space: 'whitened' } },
      ),
    ).not.toThrow();
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
