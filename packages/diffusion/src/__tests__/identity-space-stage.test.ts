import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunStore, executeStage, hashJson, initBackend, readTensorFile, writeTensorFile, type ProgressEvent } from '@id3/core';
import { readIdentitySpace, toWhitened } from '@id3/anchors';
import { prepareStage } from '@id3/faces';
import { heldOutRows } from '../holdout';
import { identitySpaceConfigSchema, identitySpaceStage } from '../identity-space-stage';

jest.setTimeout(180_000);

const R = 16;
let prepared = '';
let N = 0;

/** The real prepare stage on procedural faces (5 people × 4 images) at 16×16, run once and copied per test. */
beforeAll(async () => {
  await initBackend('wasm', () => undefined);
  prepared = mkdtempSync(join(tmpdir(), 'id3-prepared-'));
  const r = await executeStage(
    prepareStage,
    { seed: 0, source: { kind: 'procedural', identities: 5, perIdentity: 4 }, sizes: [R], fallback: 'center-crop', fallbackFraction: 0.75 },
    { store: new RunStore(prepared), progress: () => undefined, backend: 'wasm' },
  );
  N = r.manifest.metrics.accepted;
});
afterAll(() => rmSync(prepared, { recursive: true, force: true }));

const dirs: string[] = [];
function runDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'id3-space-stage-'));
  dirs.push(d);
  cpSync(join(prepared, 'prepare'), join(d, 'prepare'), { recursive: true });
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const config = { seed: 0, resolution: R, holdout: 3, minFit: 8, k: 4, batch: 4, checkpointEvery: 8, pairs: 500 };

describe('identity-space stage', () => {
  it('embeds the crops through TeacherInput, fits on the training rows only, writes a loadable artefact; re-runs skip', async () => {
    const store = new RunStore(runDir());
    const r = await executeStage(identitySpaceStage, config, { store, progress: () => undefined, backend: 'wasm' });
    const m = r.manifest.metrics;
    expect(m).toMatchObject({ images: N, fitCount: N - 3, heldOut: 3, dim: 128, k: 4 });
    expect(m.varianceKept).toBeGreaterThan(0);
    expect(m.varianceKept).toBeLessThan(1);
    // The teacher squeezes cartoons together; in the whitened space pairs are far less alike.
    expect(m.rawPairCosMean).toBeGreaterThan(0.8);
    expect(Math.abs(m.whitenedPairCosMean)).toBeLessThan(0.5);
    // At 16×16 through TeacherInput the teacher still sees roughly what it sees on its own chip.
    expect(m.pathCosToPreparedMean).toBeGreaterThan(0.8);

    const emb = readTensorFile(store.abs(r.manifest.outputs.embeddings.path));
    expect(emb.header.shape).toEqual([N, 128]);
    let sq = 0;
    for (let a = 0; a < 128; a++) sq += (emb.values[10 * 128 + a] as number) ** 2;
    expect(sq).toBeCloseTo(1, 4);
    const fitRows = Array.from(readTensorFile(store.abs(r.manifest.outputs.fitRows.path)).values);
    const held = heldOutRows(N, 0, 3);
    expect(fitRows).toHaveLength(N - 3);
    expect(fitRows.some((row) => held.includes(row))).toBe(false);

    const space = readIdentitySpace(store.abs(r.manifest.outputs.identitySpace.path), { teacher: 'faceapi-dlib-128', dim: 128 });
    expect(space.header.fit.count).toBe(N - 3);
    expect(space.header.fit.source).toMatch(/16×16 crops mapped onto its input by TeacherInput/);
    expect(space.sha256).toBe(r.manifest.outputs.identitySpace.sha256);
    expect(toWhitened(space.map, emb.values as Float32Array).length).toBe(N * 4);

    expect((await executeStage(identitySpaceStage, config, { store, progress: () => undefined, backend: 'wasm' })).skipped).toBe(true);
    // Another k refits on the same embeddings without embedding anything again.
    const events: ProgressEvent[] = [];
    const other = await executeStage(identitySpaceStage, { ...config, k: 3 }, { store, progress: (e) => events.push(e), backend: 'wasm' });
    expect(other.manifest.metrics.k).toBe(3);
    expect(events.some((e) => e.phase === 'resume' && e.step === N)).toBe(true);
    expect(events.some((e) => e.phase === 'embed')).toBe(false);
    expect(other.manifest.outputs.embeddings.sha256).toBe(r.manifest.outputs.embeddings.sha256);
  });

  it('a killed run resumes from its partial embeddings', async () => {
    const root = runDir();
    const store = new RunStore(root);
    // A partial run that had embedded rows 0..7 (planted: a recognisable vector) before it was killed.
    const crops = readTensorFile(join(root, 'prepare', `crops-${R}.json`));
    const planted = new Float32Array(N * 128);
    for (let i = 0; i < 8; i++) planted[i * 128 + 5] = 1;
    writeTensorFile(join(store.stageDir('identity-space'), 'embeddings-partial'), 'float32', [N, 128], planted, {
      key: hashJson({ crops: crops.header.sha256, teacher: 'faceapi-dlib-128', size: R }),
      done: 8,
    });
    const events: ProgressEvent[] = [];
    const r = await executeStage(identitySpaceStage, config, { store, progress: (e) => events.push(e), backend: 'wasm' });
    expect(events.some((e) => e.phase === 'resume' && e.step === 8)).toBe(true);
    expect(events.filter((e) => e.phase === 'embed').map((e) => e.step)).toEqual([16, N]);
    const emb = readTensorFile(store.abs(r.manifest.outputs.embeddings.path)).values;
    expect(emb[7 * 128 + 5]).toBe(1); // kept, not recomputed
    expect(emb[8 * 128 + 5]).not.toBe(1);
    expect(existsSync(join(root, 'identity-space', 'embeddings-partial.json'))).toBe(false);
  });

  it('refuses to fit on fewer training embeddings than minFit, naming the field', async () => {
    const store = new RunStore(runDir());
    await expect(
      executeStage(identitySpaceStage, { ...config, minFit: 5000 }, { store, progress: () => undefined, backend: 'wasm' }),
    ).rejects.toThrow(
      new RegExp(`field 'identity-space\\.minFit': only ${N - 3} training embeddings \\(${N} prepared − 3 held out\\), fewer than 5000`),
    );
  });

  it("refuses at plan time a resolution prepare did not make, or a split other than train-diffusion's", () => {
    const c = identitySpaceConfigSchema.parse(config);
    const check = (sections: Record<string, Record<string, unknown>>) => () => identitySpaceStage.check?.(c, sections);
    expect(check({ prepare: { sizes: [112, 32] } })).toThrow(
      /field 'identity-space\.resolution': 16 is not one of prepare\.sizes \[112, 32\]/,
    );
    expect(
      check({ prepare: { sizes: [16], teacher: 'faceapi-dlib-128' }, 'train-diffusion': { resolution: 16, holdout: 3, seed: 0 } }),
    ).not.toThrow();
    expect(check({ 'train-diffusion': { resolution: 16, holdout: 64, seed: 0 } })).toThrow(
      /field 'identity-space\.holdout': 3 differs from train-diffusion\.holdout 64/,
    );
    expect(check({ 'train-diffusion': { resolution: 32, holdout: 3, seed: 0 } })).toThrow(/field 'identity-space\.resolution'/);
    expect(check({ 'train-diffusion': { resolution: 16, holdout: 3, seed: 7 } })).toThrow(/field 'identity-space\.seed'/);
    expect(check({ 'train-diffusion': { resolution: 16, holdout: 3, seed: 0, holdoutBy: 'person' } })).toThrow(
      /field 'identity-space\.holdoutBy': image differs from train-diffusion\.holdoutBy person/,
    );
    expect(() => identitySpaceStage.check?.({ ...c, k: 200 }, { prepare: { teacher: 'faceapi-dlib-128' } })).toThrow(
      /field 'identity-space\.k': 200 exceeds the teacher's embedding size 128/,
    );
  });
});
