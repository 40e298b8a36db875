import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, InvalidInputError, RunStore, executeStage, initBackend, parseConfig, readTensorFile, tf } from '@id3/core';
import {
  alignDlibChip,
  alignFace,
  alignForEmbedder,
  decodeImage,
  detectAndAlign,
  dlibChipTemplate5,
  embedImage,
  embedWithFlip,
  embedderInfo,
  embedderNames,
  loadEmbedder,
  prepareConfigSchema,
  prepareStage,
  readLfwPairs,
  registerEmbedder,
  requireDataPath,
  warpToTemplate,
  type FaceEmbedder,
  type RgbImage,
} from '../index';

// The face-embedder registry: lookups and their errors, both built-in networks on a real LFW
// face, the crop each one is given, and prepare with a non-default teacher.
jest.setTimeout(180_000);

const KNOWN = 'faceapi-dlib-128, mobileface-256';

describe('face embedder registry', () => {
  it('lists the built-ins, default first, with what each network needs', () => {
    expect(embedderNames().slice(0, 2)).toEqual(['faceapi-dlib-128', 'mobileface-256']);
    expect(embedderInfo('faceapi-dlib-128')).toMatchObject({
      name: 'faceapi-dlib-128',
      dim: 128,
      inputSize: 150,
      alignment: 'dlib-chip',
      padding: 0.25,
    });
    expect(embedderInfo('mobileface-256')).toMatchObject({
      name: 'mobileface-256',
      dim: 256,
      inputSize: 112,
      alignment: 'arcface',
      padding: 0,
    });
  });

  it('an unknown name is invalid input naming the field and the known names', async () => {
    const lookup = () => embedderInfo('arcface-r100', 'prepare.teacher');
    expect(lookup).toThrow(InvalidInputError);
    expect(lookup).toThrow(`field 'prepare.teacher': unknown face embedder 'arcface-r100' (known: ${KNOWN})`);
    try {
      lookup();
    } catch (err) {
      expect((err as InvalidInputError).where).toEqual({ field: 'prepare.teacher' });
    }
    expect(() => embedderInfo('x')).toThrow(`unknown face embedder 'x' (known: ${KNOWN})`);
    await expect(loadEmbedder('x', 'eval.model')).rejects.toThrow(`field 'eval.model': unknown face embedder 'x'`);
  });

  it("prepare's config accepts any registered teacher and names prepare.teacher for others", () => {
    const base = { seed: 0, source: { kind: 'folders', path: '/faces' } };
    expect(parseConfig(prepareConfigSchema, base, 'test').teacher).toBe('faceapi-dlib-128');
    expect(parseConfig(prepareConfigSchema, { ...base, teacher: 'mobileface-256' }, 'test').teacher).toBe('mobileface-256');
    const bad = () => parseConfig(prepareConfigSchema, { ...base, teacher: 'dlib' }, 'pipeline.json', 'prepare');
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(`field 'prepare.teacher': unknown face embedder 'dlib' (known: ${KNOWN})`);
  });

  it('registers a new embedder once, loads it once, and refuses a duplicate or malformed entry', async () => {
    let loads = 0;
    const fake: FaceEmbedder = {
      name: 'test-fake-4',
      dim: 4,
      inputSize: 8,
      alignment: 'arcface',
      inputTemplate: [],
      embed: (b) => tf.ones([b.shape[0], 4]),
    };
    registerEmbedder({ name: 'test-fake-4', dim: 4, inputSize: 8, alignment: 'arcface', padding: 0, load: async () => (loads++, fake) });
    expect(embedderNames()).toContain('test-fake-4');
    const [a, b] = await Promise.all([loadEmbedder('test-fake-4'), loadEmbedder('test-fake-4')]);
    expect(a).toBe(fake);
    expect(b).toBe(fake);
    expect(await loadEmbedder('test-fake-4')).toBe(fake);
    expect(loads).toBe(1);
    expect(() => registerEmbedder({ ...embedderInfo('mobileface-256') })).toThrow("face embedder 'mobileface-256' is already registered");
    expect(() => registerEmbedder({ ...embedderInfo('test-fake-4'), name: 'test-bad', dim: 0 })).toThrow(/dim must be a positive integer/);
    expect(() => registerEmbedder({ ...embedderInfo('test-fake-4'), name: 'test-bad', padding: -1 })).toThrow(/padding must be ≥ 0/);
    expect(embedderNames()).not.toContain('test-bad');
  });

  it('a load that disagrees with its registry entry fails (and is not cached)', async () => {
    const wrong: FaceEmbedder = {
      name: 'test-wrong',
      dim: 3,
      inputSize: 8,
      alignment: 'arcface',
      inputTemplate: [],
      embed: (b) => tf.ones([b.shape[0], 3]),
    };
    let loads = 0;
    registerEmbedder({ name: 'test-wrong', dim: 5, inputSize: 8, alignment: 'arcface', padding: 0, load: async () => (loads++, wrong) });
    await expect(loadEmbedder('test-wrong')).rejects.toThrow(/its registry entry says 5-d/);
    await expect(loadEmbedder('test-wrong')).rejects.toThrow(/its registry entry says 5-d/);
    expect(loads).toBe(2);
  });
});

describe('built-in embedders on a real LFW face', () => {
  let image: RgbImage;
  let found: Awaited<ReturnType<typeof detectAndAlign>> & { ok: true };
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
    const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
    image = await decodeImage(list.pairs[0].a);
    const result = await detectAndAlign(image, { size: 112 });
    if (!result.ok) throw new Error(`no face in ${list.pairs[0].a}: ${result.reason}`);
    expect(result.method).toBe('landmarks');
    found = result;
  });

  it("face-api's crop is the dlib chip prepare cut before the registry (68 landmarks, or the 5-point dlib template without them)", async () => {
    const teacher = await loadEmbedder('faceapi-dlib-128');
    const chip = alignForEmbedder(image, found, teacher);
    expect([chip.width, chip.height]).toEqual([150, 150]);
    expect(Buffer.from(chip.data).equals(Buffer.from(alignDlibChip(image, found.landmarks68!, 150, 0.25).image.data))).toBe(true);
    expect(Buffer.from(alignForEmbedder(image, found, embedderInfo('faceapi-dlib-128')).data).equals(Buffer.from(chip.data))).toBe(true);
    const fallback = alignForEmbedder(image, { ...found, landmarks68: undefined }, teacher);
    expect(
      Buffer.from(fallback.data).equals(Buffer.from(warpToTemplate(image, found.points, dlibChipTemplate5(150, 0.25), 150).image.data)),
    ).toBe(true);
  });

  it("MobileFace's crop is the ArcFace crop (the same as prepare's 112 crop)", async () => {
    const chip = alignForEmbedder(image, found, await loadEmbedder('mobileface-256'));
    expect(Buffer.from(chip.data).equals(Buffer.from(alignFace(image, found.points, 112, 0).image.data))).toBe(true);
    expect(Buffer.from(chip.data).equals(Buffer.from(found.image.data))).toBe(true);
  });

  it.each([
    ['faceapi-dlib-128', 128],
    ['mobileface-256', 256],
  ])('%s loads once and embeds its crop to a unit %i-d vector; embedImage is embedWithFlip, leaking no tensors', async (name, dim) => {
    const embedder = await loadEmbedder(name);
    expect(await loadEmbedder(name)).toBe(embedder);
    expect(embedder.dim).toBe(dim);
    expect(embedder.inputTemplate).toHaveLength(5);
    const chip = alignForEmbedder(image, found, embedder);
    await embedImage(embedder, chip); // warm-up: weights become resident
    const before = tf.memory().numTensors;
    const v = await embedImage(embedder, chip);
    expect(tf.memory().numTensors).toBe(before);
    expect(v).toHaveLength(dim);
    expect(Math.abs(Math.hypot(...v) - 1)).toBeLessThan(1e-4);
    const e = tf.tidy(() => embedWithFlip(embedder, tf.tensor4d(Float32Array.from(chip.data), [1, chip.height, chip.width, 3])));
    expect(Array.from(v)).toEqual(Array.from((await e.data()) as Float32Array));
    e.dispose();
  });
});

describe('prepare with a non-default teacher', () => {
  it('writes MobileFace 256-d unit embeddings and records the teacher', async () => {
    await initBackend('wasm', () => undefined);
    const src = requireDataPath('utkface', 'images');
    const dir = mkdtempSync(join(tmpdir(), 'id3-prepare-mobileface-'));
    for (const n of readdirSync(src)
      .sort()
      .filter((_, i) => i % 1000 === 0)
      .slice(0, 2))
      copyFileSync(join(src, n), join(dir, n));
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-prepare-mobileface-run-')));
    const result = await executeStage(
      prepareStage,
      { seed: 0, source: { kind: 'utkface', path: dir }, teacher: 'mobileface-256', fallback: 'center-crop' },
      {
        store,
        progress: () => undefined,
        backend: 'wasm',
      },
    );
    const emb = readTensorFile(store.abs(result.manifest.outputs.embeddings.path));
    expect(emb.header.shape).toEqual([2, 256]);
    expect(emb.header.meta).toMatchObject({ teacher: 'mobileface-256' });
    const e = emb.values as Float32Array;
    for (let r = 0; r < 2; r++) expect(Math.abs(Math.hypot(...e.subarray(r * 256, (r + 1) * 256)) - 1)).toBeLessThan(1e-4);
  });
});
