import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunStore, executeStage, initBackend } from '@id3/core';
import { anchorsStage, identitiesStage } from '@id3/anchors';
import { readGeneratorCard, shipGenerator, trainDiffusionStage } from '@id3/diffusion';
import { prepareStage } from '@id3/faces';
import { sampleStage } from '../stage';

jest.setTimeout(300_000);

const R = 16;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const fresh = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'id3-sample-shipped-'));
  dirs.push(d);
  return d;
};

/**
 * A pipeline pointed at a shipped model instead of its own generator: a tiny generator is
 * trained and shipped from one run; another run (prepare, anchors, identities, no
 * train-diffusion) samples from the shipped folder and records its card.
 */
it('sample.model naming a shipped folder samples from it and records its card in the run', async () => {
  await initBackend('wasm', () => undefined);
  const opts = (root: string, fieldPrefix?: string) => ({
    store: new RunStore(root),
    progress: () => undefined,
    backend: 'wasm',
    fieldPrefix,
  });
  const prepare = {
    seed: 0,
    source: { kind: 'procedural', identities: 4, perIdentity: 3 },
    sizes: [R],
    fallback: 'center-crop',
    fallbackFraction: 0.75,
  };

  const training = fresh();
  await executeStage(prepareStage, prepare, opts(training));
  await executeStage(
    trainDiffusionStage,
    {
      seed: 1,
      resolution: R,
      unet: { baseChannels: 8, channelMult: [1, 2], attentionResolutions: [8], groups: 4, conditionHidden: [32, 16] },
      trainer: { steps: 2, batchSize: 4, warmupSteps: 1, checkpointEvery: 2, logEvery: 1, threads: 1, identity: { subBatch: 1, every: 2 } },
      holdout: 3,
      preview: { rows: 1, samples: 1, ddimSteps: 2 },
      evaluation: { count: 3, ddimSteps: 2 },
    },
    opts(training, 'train-diffusion'),
  );
  const model = join(fresh(), 'models', 'tiny');
  shipGenerator({ runDir: training, name: 'tiny', out: model, description: 'test' });

  const run = fresh();
  await executeStage(prepareStage, prepare, opts(run));
  await executeStage(anchorsStage, { seed: 0, n: 2, dim: 128, iterations: 4, checkpointEvery: 2 }, opts(run));
  await executeStage(identitiesStage, { seed: 0, m: 2, lb: 0.7, ub: 0.9 }, opts(run));
  const config = {
    seed: 0,
    model,
    resolution: R,
    identities: { count: 2, images: 2 },
    loop: { steps: 2 },
    guidance: { scale: 0 },
    filter: { minSimilarity: -1, faceCheck: false, minImagesPerIdentity: 1 },
    leakage: { threshold: 0.999 },
    identitiesPerShard: 2,
    card: { gridIdentities: 2, gridImages: 2, guidanceComparison: 0, readBackImages: 2 },
  };
  expect(() => sampleStage.check?.(sampleStage.schema.parse(config), {})).not.toThrow();
  const r = await executeStage(sampleStage, config, opts(run, 'sample'));
  expect(r.manifest.inputs.model).toBeDefined(); // the folder's content keys the stage
  const recorded = new RunStore(run).abs(r.manifest.outputs.modelCard.path);
  expect(readFileSync(recorded)).toEqual(readFileSync(join(model, 'card.json')));
  expect(readGeneratorCard(recorded).card).toMatchObject({ name: 'tiny', steps: 2 });
  expect(r.manifest.metrics.images).toBeGreaterThan(0);
  // The card's second reading (MobileFace by default), from a model that neither guided nor filtered.
  expect(Number.isFinite(r.manifest.metrics.checkIntraInterGap)).toBe(true);
  const cardNumbers = JSON.parse(readFileSync(new RunStore(run).abs(r.manifest.outputs.cardNumbers.path), 'utf8')) as {
    check: { embedder: string } | null;
  };
  expect(cardNumbers.check?.embedder).toBe('mobileface-256');
  // The teacher as the check embedder is refused at plan time, naming the field.
  const teacher = (JSON.parse(readFileSync(join(model, 'generator.json'), 'utf8')) as { teacher: string }).teacher;
  expect(() => sampleStage.check?.(sampleStage.schema.parse({ ...config, card: { ...config.card, checkEmbedder: teacher } }), {})).toThrow(
    /field 'sample\.card\.checkEmbedder': '.+' is the generator's teacher/,
  );
  expect(() =>
    sampleStage.check?.(sampleStage.schema.parse({ ...config, card: { ...config.card, checkEmbedder: 'no-such-net' } }), {}),
  ).toThrow(/sample\.card\.checkEmbedder/);
});
