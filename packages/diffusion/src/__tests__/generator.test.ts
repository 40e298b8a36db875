import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@id3/core';
import { GENERATOR_FORMAT, loadGenerator, readGeneratorDescriptor, writeGeneratorDescriptor, type GeneratorDescriptor } from '../generator';
import { UNet, unetConfigSchema } from '../unet';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const descriptor = (over: Partial<GeneratorDescriptor> = {}): GeneratorDescriptor => ({
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
    const net = UNet.create(
      unetConfigSchema.parse({
        resolution: 8,
        baseChannels: 8,
        channelMult: [1, 2],
        attentionResolutions: [],
        groups: 4,
        identityDim: 16,
        conditionHidden: [16, 16],
      }),
      1,
    );
    await net.save(join(dir, 'ema'));
    net.dispose();
  });

  it('loads weights and schedule from generator.json, and round-trips the descriptor', () => {
    writeGeneratorDescriptor(dir, descriptor());
    expect(readGeneratorDescriptor(dir).descriptor).toEqual(descriptor());
    const g = loadGenerator(join(dir, 'generator.json'));
    expect(g.net.config.identityDim).toBe(16);
    expect(g.diffusion.schedule.steps).toBe(100);
    g.net.dispose();
  });

  it('refuses a descriptor that disagrees with its weights, naming the file', () => {
    writeGeneratorDescriptor(dir, descriptor({ identityDim: 128 }));
    expect(() => loadGenerator(dir)).toThrow(
      /generator\.json: descriptor \(resolution 8, identityDim 128, 4 attributes\) does not match its weights \(8, 16, 4\)/,
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
