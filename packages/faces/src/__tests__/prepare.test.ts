import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunStore, executeStage, initBackend, readTensorFile } from '@id3/core';
import { prepareStage, requireDataPath } from '../index';

// The prepare stage on real UTKFace photos (copied to a temp folder, never into the repo),
// plus a truncated JPEG, a text file posing as a photo and a file whose name is not UTKFace's.
jest.setTimeout(300_000);

describe('prepare stage', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it('aligns, embeds and attributes real faces; bad files land in the rejects list and the stage completes', async () => {
    const src = requireDataPath('utkface', 'images');
    const dir = mkdtempSync(join(tmpdir(), 'id3-prepare-'));
    const names = readdirSync(src)
      .sort()
      .filter((_, i) => i % 1000 === 0)
      .slice(0, 6);
    for (const n of names) copyFileSync(join(src, n), join(dir, n));
    writeFileSync(join(dir, '30_0_0_20170000000000001.jpg.chip.jpg'), readFileSync(join(src, names[0])).subarray(0, 1500));
    writeFileSync(join(dir, '31_1_0_20170000000000002.jpg.chip.jpg'), 'not an image');
    writeFileSync(join(dir, 'holiday.jpg'), readFileSync(join(src, names[1])));

    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-prepare-run-')));
    const result = await executeStage(
      prepareStage,
      { seed: 0, source: { kind: 'utkface', path: dir }, sizes: [112, 32], fallback: 'center-crop' },
      {
        store,
        progress: () => undefined,
        backend: 'wasm',
      },
    );
    const m = result.manifest.metrics;
    expect(m.images).toBe(9);
    expect(m.accepted).toBe(6);
    expect(m.rejected).toBe(3);
    expect(m.imagesPerSecond).toBeGreaterThan(0);
    const rejects = JSON.parse(readFileSync(store.abs(result.manifest.outputs.rejects.path), 'utf8')).rejects as {
      path: string;
      reason: string;
    }[];
    expect(rejects.map((r) => r.path.split('/').pop()).sort()).toEqual([
      '30_0_0_20170000000000001.jpg.chip.jpg',
      '31_1_0_20170000000000002.jpg.chip.jpg',
      'holiday.jpg',
    ]);
    expect(rejects.find((r) => r.path.endsWith('holiday.jpg'))?.reason).toMatch(/file name is not/);
    expect(rejects.find((r) => r.path.endsWith('0001.jpg.chip.jpg'))?.reason).toMatch(/cannot decode image/);

    const crops = readTensorFile(store.abs(result.manifest.outputs.crops112.path));
    expect(crops.header.shape).toEqual([6, 112, 112, 3]);
    expect(readTensorFile(store.abs(result.manifest.outputs.crops32.path)).header.shape).toEqual([6, 32, 32, 3]);
    const emb = readTensorFile(store.abs(result.manifest.outputs.embeddings.path));
    expect(emb.header.shape).toEqual([6, 128]);
    const e = emb.values as Float32Array;
    for (let r = 0; r < 6; r++) expect(Math.abs(Math.hypot(...e.subarray(r * 128, (r + 1) * 128)) - 1)).toBeLessThan(1e-4);
    const attrs = readTensorFile(store.abs(result.manifest.outputs.attributes.path)).values as Float32Array;
    for (let r = 0; r < 6; r++) {
      expect(attrs[r * 4]).toBeGreaterThan(0); // age
      for (let c = 1; c < 4; c++) expect(Math.abs(attrs[r * 4 + c])).toBeLessThanOrEqual(90);
    }
    expect(result.manifest.outputs.hist_age.bytes).toBeGreaterThan(1000);

    // The same folder in chunks of 2 (4 shards, one of them with the truncated JPEG): the merged
    // outputs are byte for byte the one-chunk run's.
    const sharded = new RunStore(mkdtempSync(join(tmpdir(), 'id3-prepare-run-')));
    const inChunks = await executeStage(
      prepareStage,
      { seed: 0, source: { kind: 'utkface', path: dir }, sizes: [112, 32], fallback: 'center-crop', imagesPerShard: 2 },
      { store: sharded, progress: () => undefined, backend: 'wasm' },
    );
    expect(inChunks.manifest.metrics.shards).toBe(4);
    for (const name of ['crops112', 'crops32', 'embeddings', 'attributes', 'attributesScaled', 'index', 'rejects']) {
      expect([name, inChunks.manifest.outputs[name].sha256]).toEqual([name, result.manifest.outputs[name].sha256]);
    }

    // The folder is an input by its listing (names, sizes, content hashes): a new photo makes the stage
    // and its shards stale (a shard's record is keyed by the stage's inputs), so all is redone.
    expect(
      (
        await executeStage(
          prepareStage,
          { seed: 0, source: { kind: 'utkface', path: dir }, sizes: [112, 32], fallback: 'center-crop', imagesPerShard: 2 },
          { store: sharded, progress: () => undefined, backend: 'wasm' },
        )
      ).skipped,
    ).toBe(true);
    copyFileSync(join(src, names[2]), join(dir, '45_0_0_20170000000000009.jpg.chip.jpg'));
    const grown = await executeStage(
      prepareStage,
      { seed: 0, source: { kind: 'utkface', path: dir }, sizes: [112, 32], fallback: 'center-crop', imagesPerShard: 2 },
      { store: sharded, progress: () => undefined, backend: 'wasm' },
    );
    expect(grown.skipped).toBe(false);
    expect(grown.manifest.metrics.accepted).toBe(7);
    expect(grown.manifest.inputs.source.sha256).not.toBe(inChunks.manifest.inputs.source.sha256);
  });

  it('an image with no face is rejected with the reason when the fallback is reject', async () => {
    const src = requireDataPath('orl');
    const dir = mkdtempSync(join(tmpdir(), 'id3-prepare-noface-'));
    mkdirSync(join(dir, 'a'));
    copyFileSync(join(src, 's1', '1.pgm'), join(dir, 'a', 'face.pgm'));
    writeFileSync(
      join(dir, 'a', 'wall.png'),
      await sharp({ create: { width: 120, height: 120, channels: 3, background: '#8a8f99' } })
        .png()
        .toBuffer(),
    );
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-prepare-run-')));
    const r = await executeStage(
      prepareStage,
      { seed: 0, source: { kind: 'folders', path: dir }, fallback: 'reject' },
      { store, progress: () => undefined, backend: 'wasm' },
    );
    const rejects = JSON.parse(readFileSync(store.abs(r.manifest.outputs.rejects.path), 'utf8')).rejects as {
      path: string;
      reason: string;
    }[];
    expect(rejects).toEqual([{ path: join(dir, 'a', 'wall.png'), reason: 'no face detected' }]);
    expect(r.manifest.metrics.accepted).toBe(1);
  });

  it('a missing source folder is invalid input naming the field', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-prepare-run-')));
    await expect(
      executeStage(
        prepareStage,
        { seed: 0, source: { kind: 'utkface', path: '/nonexistent/faces' } },
        { store, progress: () => undefined, backend: 'wasm' },
      ),
    ).rejects.toThrow(/field 'prepare\.source\.path': folder not found: \/nonexistent\/faces/);
  });
});
