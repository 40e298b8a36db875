import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, initBackend } from '@id3/core';
import { fitIdentitySpace, randomUnitVectors, toWhitened, writeIdentitySpace } from '@id3/anchors';
import {
  GENERATOR_FORMAT,
  loadGenerator,
  readGeneratorDescriptor,
  writeGeneratorDescriptor,
  type GeneratorDescriptorInput,
} from '../generator';
import { UNet, tinyUNetConfig } from '../unet';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const descriptor = (over: Partial<GeneratorDescriptorInput> = {}): GeneratorDescriptorInput => ({
  format: GENERATOR_FORMAT,
  weights: 'ema.json',
  resolution: 8,
  schedule: { kind: 'linear', steps: 100, betaStart: 1e-4, betaEnd: 0.02 },
  teacher: 'faceapi-dlib-128',
  identityDim: 16,
  identitySpace: 'teacher',
  attributes: { columns: ['age', 'pitch', 'yaw', 'roll'], scaling: 'age/50-1, angles/90' },
  trainingData: { attributesSha256: 'x', images: 10, heldOut: [1, 2] },
  steps: 3,
  ...over,
});

describe('a generator folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'id3-generator-'));
  beforeAll(async () => {
    const net = UNet.create(tinyUNetConfig(8, 16), 1);
    await net.save(join(dir, 'ema'));
    net.dispose();
  });

  it('loads weights and schedule from generator.json, and round-trips the descriptor', () => {
    writeGeneratorDescriptor(dir, descriptor());
    expect(readGeneratorDescriptor(dir).descriptor).toEqual({ ...descriptor(), condition: { space: 'teacher' } });
    const g = loadGenerator(join(dir, 'generator.json'));
    expect(g.net.config.identityDim).toBe(16);
    expect(g.diffusion.schedule.steps).toBe(100);
    g.net.dispose();
  });

  it('refuses a descriptor that disagrees with its weights, naming the file', () => {
    writeGeneratorDescriptor(dir, descriptor({ identityDim: 128 }));
    expect(() => loadGenerator(dir)).toThrow(
      /generator\.json: descriptor \(resolution 8, condition 128-d, 4 attributes\) does not match its weights \(8, 16, 4\)/,
    );
  });

  it('refuses a missing folder, a bad field and a foreign format, naming the file and field', () => {
    expect(() => readGeneratorDescriptor(join(dir, 'nope'))).toThrow(/nope\/generator\.json: no generator descriptor/);
    writeFileSync(join(dir, 'generator.json'), JSON.stringify({ ...descriptor(), resolution: 'big' }));
    expect(() => readGeneratorDescriptor(dir)).toThrow(/generator\.json: field 'resolution': Expected number/);
    writeFileSync(join(dir, 'generator.json'), JSON.stringify({ ...descriptor(), format: 'other/1' }));
    expect(() => readGeneratorDescriptor(dir)).toThrow(/field 'format'/);
  });
});

describe('a generator conditioned in an identity space', () => {
  const dir = mkdtempSync(join(tmpdir(), 'id3-generator-z-'));
  const dim = 16;
  const k = 6;
  let sha256 = '';
  const rng = new Rng(3);
  const fitted = randomUnitVectors(400, dim, rng);
  beforeAll(async () => {
    const map = fitIdentitySpace(fitted, dim, { k });
    sha256 = writeIdentitySpace(dir, map, { teacher: 'faceapi-dlib-128', count: 400, dataSha256: 'x', source: 'test' }).sha256;
    const net = UNet.create(tinyUNetConfig(8, k), 1);
    await net.save(join(dir, 'ema'));
    net.dispose();
  });
  const whitened = () => descriptor({ identitySpace: sha256, condition: { space: 'whitened', artefact: 'identity-space.json', sha256 } });

  it('loads its artefact from the folder and maps teacher embeddings y onto the UNet condition z', () => {
    writeGeneratorDescriptor(dir, whitened());
    const g = loadGenerator(dir);
    expect(g.net.config.identityDim).toBe(k);
    expect(g.identitySpace?.sha256).toBe(sha256);
    const y = fitted.slice(0, 3 * dim);
    const z = g.conditionOf(y);
    expect(z.length).toBe(3 * k);
    expect(Array.from(z)).toEqual(Array.from(toWhitened(g.identitySpace!.map, y)));
    expect(Math.hypot(...z.subarray(0, k))).toBeCloseTo(1, 5);
    g.net.dispose();
  });

  it('refuses another artefact, or a descriptor whose identitySpace disagrees with its condition, naming the field', () => {
    writeGeneratorDescriptor(
      dir,
      descriptor({ identitySpace: 'abc', condition: { space: 'whitened', artefact: 'identity-space.json', sha256: 'abc' } }),
    );
    expect(() => loadGenerator(dir)).toThrow(/field 'condition\.sha256'/);
    writeGeneratorDescriptor(
      dir,
      descriptor({ identitySpace: 'teacher', condition: { space: 'whitened', artefact: 'identity-space.json', sha256 } }),
    );
    expect(() => loadGenerator(dir)).toThrow(/field 'identitySpace'/);
    // A teacher-space descriptor for k-d weights: the weights' condition size is not the teacher's.
    writeGeneratorDescriptor(dir, descriptor());
    expect(() => loadGenerator(dir)).toThrow(/condition 16-d, 4 attributes\) does not match its weights \(8, 6, 4\)/);
  });
});
