import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, RunStore, executeStage, initBackend } from '@id3/core';
import { decodeImage, prepareStage, randomAttributes, randomIdentity, renderFaceSvg, writeProceduralFaces } from '../index';

jest.setTimeout(300_000);

describe('procedural face set', () => {
  it('is deterministic per seed and differs between identities', () => {
    const a = new Rng(1);
    const b = new Rng(1);
    const svgA = renderFaceSvg(randomIdentity(a), randomAttributes(a), 112);
    expect(renderFaceSvg(randomIdentity(b), randomAttributes(b), 112)).toBe(svgA);
    const c = new Rng(2);
    expect(renderFaceSvg(randomIdentity(c), randomAttributes(c), 112)).not.toBe(svgA);
  });

  it('writes identity folders of real PNGs with ground-truth labels', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-proc-'));
    const { count, labelsPath } = await writeProceduralFaces(dir, { identities: 2, perIdentity: 3, size: 96, seed: 0 });
    expect(count).toBe(6);
    expect(labelsPath.endsWith('labels.json')).toBe(true);
    const img = await decodeImage(join(dir, 'id0001', '002.png'));
    expect([img.width, img.height]).toEqual([96, 96]);
  });

  it('runs through prepare like real photos, with the teacher’s identity separation reported', async () => {
    await initBackend('wasm', () => undefined);
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-proc-run-')));
    const r = await executeStage(
      prepareStage,
      { seed: 0, source: { kind: 'procedural', identities: 4, perIdentity: 4 }, fallback: 'center-crop', fallbackFraction: 0.75 },
      { store, progress: () => undefined, backend: 'wasm' },
    );
    const m = r.manifest.metrics;
    expect(m.accepted).toBe(16);
    // The teacher separates the rendered identities better than chance (1 in 4)…
    expect(m.teacherRank1).toBeGreaterThan(0.5);
    expect(m.teacherSameIdentityCos).toBeGreaterThan(m.teacherDifferentIdentityCos);
    // …and the landmark pose follows the rendered yaw.
    expect(m.yawCorrelationWithTruth).toBeGreaterThan(0.3);
  });
});
