import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Rng,
  RunStore,
  executeStage,
  initBackend,
  readTensorFile,
  tf,
  writeTensorFile,
  type ProgressEvent,
  type StageManifest,
} from '@id3/core';
import { fitIdentitySpace, writeIdentitySpace } from '@id3/anchors';
import { loadEmbedder, prepareStage } from '@id3/faces';
import { readInitWeights, startFromInit } from '../fine-tune';
import { loadGenerator, readGeneratorDescriptor } from '../generator';
import { identitySpaceConfigSchema, identitySpaceStage } from '../identity-space-stage';
import {
  GENERATOR_CARD_FORMAT,
  SHIPPED_MODEL_MAX_BYTES,
  generatorCardSchema,
  generatorTargets,
  readGeneratorCard,
  recordGeneratorCard,
  shipGenerator,
} from '../shipped-model';
import { trainDiffusionConfigSchema, trainDiffusionStage } from '../stage';
import { DiffusionTrainer, trainerConfigSchema } from '../trainer';
import { unetConfigSchema } from '../unet';

jest.setTimeout(300_000);

const R = 16;
let prepared = '';
/** A run directory with prepare and a finished 2-step train-diffusion: what gets shipped. */
let trained = '';
let shipped = '';
const dirs: string[] = [];
const fresh = (prefix = 'id3-ship-'): string => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const withPrepare = (): string => {
  const d = fresh('id3-ship-run-');
  cpSync(join(prepared, 'prepare'), join(d, 'prepare'), { recursive: true });
  return d;
};

const unet = { baseChannels: 8, channelMult: [1, 2], attentionResolutions: [8], groups: 4, conditionHidden: [32, 16] };
const config = (steps: number, over: Record<string, unknown> = {}) => ({
  seed: 1,
  resolution: R,
  unet,
  trainer: { steps, batchSize: 4, warmupSteps: 2, checkpointEvery: 2, logEvery: 1, threads: 1, identity: { subBatch: 1, every: 2 } },
  holdout: 3,
  preview: { rows: 2, samples: 2, ddimSteps: 2 },
  evaluation: { count: 3, ddimSteps: 2 },
  ...over,
});
const train = (root: string, c: unknown, events: ProgressEvent[] = []) =>
  executeStage(trainDiffusionStage, c, {
    store: new RunStore(root),
    progress: (e) => events.push(e),
    backend: 'wasm',
    fieldPrefix: 'train-diffusion',
  });

/** The real prepare stage on procedural faces (4 people × 3 images) and a 2-step generator, once. */
beforeAll(async () => {
  await initBackend('wasm', () => undefined);
  prepared = fresh('id3-ship-prepared-');
  await executeStage(
    prepareStage,
    { seed: 0, source: { kind: 'procedural', identities: 4, perIdentity: 3 }, sizes: [R], fallback: 'center-crop', fallbackFraction: 0.75 },
    { store: new RunStore(prepared), progress: () => undefined, backend: 'wasm' },
  );
  trained = withPrepare();
  await train(trained, config(2));
  shipped = join(fresh(), 'models', 'tiny');
  shipGenerator({ runDir: trained, name: 'tiny', out: shipped, description: 'a 2-step test generator' });
});
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const manifestOf = (root: string): StageManifest => new RunStore(root).readManifest('train-diffusion')!;

/** A copy of the shipped folder claiming to be conditioned in a whitened space (its artefact fitted on random unit rows). */
function whitenedFolder(): { dir: string; sha256: string } {
  const dir = join(fresh(), 'whitened');
  cpSync(shipped, dir, { recursive: true });
  const rng = new Rng(4);
  const x = new Float32Array(40 * 128);
  for (let i = 0; i < 40; i++) {
    const v = rng.fillNormal(new Float32Array(128));
    v[0] += 8; // a cone, like a teacher's
    const n = Math.hypot(...v);
    x.set(
      v.map((a) => a / n),
      i * 128,
    );
  }
  const space = writeIdentitySpace(dir, fitIdentitySpace(x, 128, { k: 4 }), {
    teacher: 'faceapi-dlib-128',
    count: 40,
    dataSha256: 'test',
    source: 'random unit rows',
  });
  const g = JSON.parse(readFileSync(join(dir, 'generator.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(
    join(dir, 'generator.json'),
    JSON.stringify({
      ...g,
      identitySpace: space.sha256,
      condition: { space: 'whitened', artefact: 'identity-space.json', sha256: space.sha256 },
    }),
  );
  expect(readGeneratorDescriptor(dir).descriptor.condition.space).toBe('whitened');
  return { dir, sha256: space.sha256 };
}
describe('shipping a generator', () => {
  it('copies the EMA weights (never weights.*), generator.json and figures, writes card.json + README.md; loadGenerator accepts the folder', () => {
    const files = readdirSync(shipped).sort();
    expect(files).toEqual(
      expect.arrayContaining([
        'README.md',
        'card.json',
        'ema.bin',
        'ema.json',
        'evaluation.json',
        'generator.json',
        'loss-curve.png',
        'preview-final.png',
      ]),
    );
    expect(files.filter((f) => f.startsWith('weights'))).toEqual([]);
    expect(readFileSync(join(shipped, 'ema.bin'))).toEqual(readFileSync(join(trained, 'train-diffusion', 'model', 'ema.bin')));
    const g = loadGenerator(shipped);
    expect(g.descriptor.resolution).toBe(R);
    g.net.dispose();

    const { card } = readGeneratorCard(shipped);
    const m = manifestOf(trained);
    const ev = (
      JSON.parse(readFileSync(join(trained, 'train-diffusion', 'evaluation.json'), 'utf8')) as { metrics: Record<string, number> }
    ).metrics;
    expect(card).toMatchObject({
      format: GENERATOR_CARD_FORMAT,
      name: 'tiny',
      steps: 2,
      createdFrom: { run: expect.any(String), stage: 'train-diffusion' },
    });
    expect(card.trainSeconds).toBeCloseTo(m.durationMs / 1000, 6);
    expect(card.timing.basis).toBe('single attempt');
    expect(card.heldOut.identityGap).toBeCloseTo(ev.idCosMatched - ev.idCosMismatched, 12);
    expect(card.heldOut.realIdentityGap).toBeCloseTo(ev.realIdCosMatched - ev.realIdCosMismatched, 12);
    expect(card.heldOut).toMatchObject({ evalCount: 3, on: 'held-out' });
    for (const k of ['yawCorrelation', 'ageCorrelation'] as const)
      expect(card.heldOut[k] === null || Number.isFinite(card.heldOut[k])).toBe(true);
    expect(card.trainingData).toMatchObject({ images: m.metrics.trainImages + 3, heldOut: 3, identities: 4 });
    expect(card.trainingData.source).toMatch(/procedural face set: 4 identities × 3 images/);
    expect(card.trainer.identity.scale).toBe(1);
    expect(card.machine.backend).toBe('wasm');
    expect(card.generator.condition).toEqual({ space: 'teacher' });
    const figures = card.figures.map((f) => f.file);
    expect(figures.slice(0, 2)).toEqual(['preview-final.png', 'loss-curve.png']);
    expect(figures.includes('heldout-curve.png')).toBe(existsSync(join(trained, 'train-diffusion', 'heldout-curve.png')));
    const total = card.files.reduce((s, f) => s + f.bytes, 0);
    expect(total).toBeLessThan(SHIPPED_MODEL_MAX_BYTES);
    const readme = readFileSync(join(shipped, 'README.md'), 'utf8');
    expect(readme).toMatch(/^# tiny: ID³ generator/);
    expect(readme).toContain('![preview-final.png](preview-final.png)');
    expect(readme).toContain(`| identity gap | ${card.heldOut.identityGap.toFixed(3)} |`);
    expect(readme).toContain('## Against the targets');
  });

  it('generatorTargets: half the real gap and correlations of 0.5, each met or missed by how much', () => {
    const heldOut = {
      identityGap: 0.02,
      realIdentityGap: 0.1,
      idCosMatched: 0.9,
      idCosMismatched: 0.88,
      realIdCosMatched: 0.97,
      realIdCosMismatched: 0.87,
      yawCorrelation: 0.62,
      ageCorrelation: null,
      realYawCorrelation: 0.6,
      realAgeCorrelation: 0.5,
      evalCount: 128,
      on: 'held-out' as const,
    };
    expect(generatorTargets(heldOut)).toEqual([
      {
        name: 'identity gap',
        target: "≥ 0.050 (half the real photos' 0.100)",
        value: '0.020 (40% of the target)',
        met: false,
        short: '0.030 short',
      },
      { name: 'yaw correlation', target: '≥ 0.50', value: '0.620', met: true, short: '' },
      { name: 'age correlation', target: '≥ 0.50', value: 'not measured', met: false, short: 'not measured' },
    ]);
    expect(generatorTargets({ ...heldOut, identityGap: 0.05 })[0]).toMatchObject({ met: true, short: '' });
  });

  it('card.json round-trips through its schema; a bad or missing field is refused, naming the file and the field', () => {
    const { card, path } = readGeneratorCard(shipped);
    expect(generatorCardSchema.parse(JSON.parse(JSON.stringify(card)))).toEqual(card);
    const dir = fresh();
    const write = (value: unknown) => writeFileSync(join(dir, 'card.json'), JSON.stringify(value));
    write({ ...card, heldOut: { ...card.heldOut, identityGap: 'big' } });
    expect(() => readGeneratorCard(dir)).toThrow(/card\.json: field 'heldOut\.identityGap': Expected number, received string/);
    const noTime: Partial<typeof card> = { ...card };
    delete noTime.trainSeconds;
    write(noTime);
    expect(() => readGeneratorCard(dir)).toThrow(/card\.json: field 'trainSeconds': Required/);
    write({ ...card, format: 'id3-generator-card/0' });
    expect(() => readGeneratorCard(dir)).toThrow(/field 'format'/);
    expect(() => readGeneratorCard(join(dir, 'nope'))).toThrow(/nope\/card\.json: no model card/);
    expect(path).toBe(join(shipped, 'card.json'));
    // What a stage that used the folder records: a byte copy of its card (none for a folder without one).
    const out = fresh();
    expect(recordGeneratorCard(shipped, out)).toBe(join(out, 'model-card.json'));
    expect(readFileSync(join(out, 'model-card.json'))).toEqual(readFileSync(path));
    expect(recordGeneratorCard(join(trained, 'train-diffusion', 'model'), out, 'other.json')).toBeUndefined();
  });

  it('refuses a model over 20 MB, saying its size, and leaves nothing behind; refuses to overwrite unless asked', () => {
    const run = fresh();
    cpSync(trained, run, { recursive: true });
    writeFileSync(join(run, 'train-diffusion', 'heldout-curve.png'), Buffer.alloc(21_000_000)); // a fake, oversized figure
    const out = join(fresh(), 'big');
    expect(() => shipGenerator({ runDir: run, name: 'big', out, description: '' })).toThrow(
      /big: the shipped model would be 2\d\.\d\d MB \(\d+ bytes\), more than the 20\.00 MB limit; largest files: heldout-curve\.png 21\.00 MB/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(join(out, '..'))).toEqual([]);
    expect(() => shipGenerator({ runDir: trained, name: 'tiny', out: shipped, description: '' })).toThrow(/tiny: already exists/);
  });

  it('a generator conditioned in a whitened space ships with its identity-space artefact', () => {
    const run = fresh();
    cpSync(trained, run, { recursive: true });
    const { dir, sha256 } = whitenedFolder();
    const files = ['generator.json', 'identity-space.json', 'identity-space-map.json', 'identity-space-map.bin'];
    for (const f of files) cpSync(join(dir, f), join(run, 'train-diffusion', 'model', f));
    const out = join(fresh(), 'whitened');
    const { card } = shipGenerator({ runDir: run, name: 'whitened', out, description: '' });
    expect(card.generator.condition).toEqual({ space: 'whitened', artefact: 'identity-space.json', sha256 });
    for (const f of files) expect(readFileSync(join(out, f))).toEqual(readFileSync(join(dir, f)));
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain('"identity-space": { "from": "models/whitened" }');
  });

  it('a resumed run: the attempts in events.jsonl are added up, a killed one named', () => {
    const run = fresh();
    cpSync(trained, run, { recursive: true });
    const store = new RunStore(run);
    const m = manifestOf(run);
    store.writeManifest({ ...m, metrics: { ...m.metrics, resumedFromStep: 1 } });
    // Rewrite the log: a killed attempt, a failed one (10 s), then the recorded completion.
    const t0 = Date.parse(m.startedAt) - 100_000;
    const line = (dt: number, event: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ time: new Date(t0 + dt).toISOString(), stage: 'train-diffusion', event, pid: 1, ...extra }) + '\n';
    writeFileSync(join(run, 'events.jsonl'), line(0, 'start') + line(20_000, 'start') + line(30_000, 'fail', { error: 'x' }));
    appendFileSync(
      join(run, 'events.jsonl'),
      line(100_000, 'start') + line(100_000 + m.durationMs, 'complete', { durationMs: m.durationMs }),
    );
    const { card } = shipGenerator({ runDir: run, name: 'resumed', out: join(fresh(), 'resumed'), description: '' });
    expect(card.timing).toMatchObject({ basis: 'attempts summed', attempts: 3, killedAttempts: 1 });
    expect(card.trainSeconds).toBeCloseTo(10 + m.durationMs / 1000, 6);
    expect(card.timing.note).toMatch(/1 killed attempt\(s\) left no end time/);
    expect(card.timing.stepSeconds).toBeGreaterThan(0);
  });
});

describe('identity-space.from: adopting a shipped generator’s identity space', () => {
  const spaceConfig = (from: string) => ({ seed: 0, resolution: R, holdout: 3, from });

  it('refuses a generator conditioned on the teacher’s own sphere, naming the config field, the file and its field', async () => {
    const c = identitySpaceConfigSchema.parse(spaceConfig(shipped));
    expect(() => identitySpaceStage.check?.(c, { prepare: { teacher: 'faceapi-dlib-128' } })).toThrow(
      /field 'identity-space\.from': .*tiny\/generator\.json: field 'condition\.space': the generator is conditioned on the teacher's own embedding sphere/,
    );
    await expect(
      executeStage(identitySpaceStage, spaceConfig(shipped), {
        store: new RunStore(withPrepare()),
        progress: () => undefined,
        backend: 'wasm',
      }),
    ).rejects.toThrow(/field 'identity-space\.from': .*generator\.json: field 'condition\.space'/);
  });

  it('copies a whitened generator’s artefact byte for byte (same sha256), skipping the fit checks; refuses another teacher', async () => {
    const { dir, sha256 } = whitenedFolder();
    const c = identitySpaceConfigSchema.parse({ ...spaceConfig(dir), holdout: 64, resolution: 32 });
    // Adopted, not fitted: train-diffusion's split and resolution do not matter.
    expect(() =>
      identitySpaceStage.check?.(c, {
        prepare: { teacher: 'faceapi-dlib-128', sizes: [R] },
        'train-diffusion': { resolution: R, holdout: 3, seed: 1 },
      }),
    ).not.toThrow();
    expect(() => identitySpaceStage.check?.(c, { prepare: { teacher: 'other-teacher' } })).toThrow(
      /field 'identity-space\.from': .*whitened\/generator\.json: field 'teacher': the generator's teacher is 'faceapi-dlib-128', this run's \(prepare\.teacher\) is 'other-teacher'/,
    );
    const store = new RunStore(withPrepare());
    const r = await executeStage(identitySpaceStage, spaceConfig(dir), { store, progress: () => undefined, backend: 'wasm' });
    expect(r.manifest.outputs.identitySpace.sha256).toBe(sha256);
    expect(r.manifest.metrics).toMatchObject({ adopted: 1, k: 4, dim: 128 });
    expect(readFileSync(store.abs(r.manifest.outputs.identitySpaceMapData.path))).toEqual(
      readFileSync(join(dir, 'identity-space-map.bin')),
    );
    expect(readGeneratorCard(store.abs(r.manifest.outputs.modelCard.path)).card.name).toBe('tiny');
  });
});

describe('train-diffusion.init: fine-tuning from a shipped generator', () => {
  it('starts the weights and their EMA from the folder’s EMA weights: the same network at step 0', async () => {
    const teacher = await loadEmbedder('faceapi-dlib-128');
    const source = loadGenerator(shipped);
    const unetConfig = unetConfigSchema.parse({ ...unet, resolution: R, identityDim: 128, attributeDim: 4 });
    const init = readInitWeights(shipped, {
      unet: unetConfig,
      resolution: R,
      teacher: 'faceapi-dlib-128',
      condition: { space: 'teacher' },
    });
    const n = 4;
    const data = {
      size: R,
      crops: new Uint8Array(n * R * R * 3).fill(90),
      y: new Float32Array(n * 128).fill(1 / Math.sqrt(128)),
      identityDim: 128,
      s: new Float32Array(n * 4),
      attributeDim: 4,
      trainRows: [0, 1, 2, 3],
    };
    const trainer = new DiffusionTrainer(
      unetConfig,
      source.descriptor.schedule,
      trainerConfigSchema.parse({ seed: 9, steps: 1, batchSize: 2, threads: 1 }),
      data,
      teacher,
      'k',
    );
    try {
      startFromInit(trainer, init);
      const flat = readTensorFile(join(shipped, 'ema.json')).values as Float32Array;
      const { weights, ema } = trainer.snapshotWeights();
      expect(weights).toEqual(flat);
      expect(ema).toEqual(flat);
      expect(trainer.step).toBe(0);
      // Same weights, same ε̂ (so the same loss at step 0) as the shipped generator.
      const inputs = () => ({
        xt: tf.randomNormal([2, R, R, 3], 0, 1, 'float32', 3) as tf.Tensor4D,
        t: [10, 500],
        y: tf.fill([2, 128], 1 / Math.sqrt(128)) as tf.Tensor2D,
        s: tf.zeros([2, 4]) as tf.Tensor2D,
      });
      const a = tf.tidy(() => trainer.emaNet().forward(inputs()).arraySync());
      const b = tf.tidy(() => trainer.net.forward(inputs()).arraySync());
      const c = tf.tidy(() => source.net.forward(inputs()).arraySync());
      expect(a).toEqual(c);
      expect(b).toEqual(c);
    } finally {
      await trainer.close();
      source.net.dispose();
    }
  });

  it('the stage fine-tunes from it, resumes its own checkpoints, and never resumes a checkpoint of another init', async () => {
    const root = withPrepare();
    const events: ProgressEvent[] = [];
    const first = await train(root, config(2, { init: shipped }), events);
    expect(first.manifest.metrics).toMatchObject({ steps: 2, initSteps: 2, resumedFromStep: 0 });
    expect(events.some((e) => e.phase === 'init' && /EMA weights after 2 steps/.test(e.message ?? ''))).toBe(true);
    expect(first.manifest.inputs.init).toBeDefined();

    // Extending it resumes the fine-tune's checkpoint (the init is not applied again).
    const more: ProgressEvent[] = [];
    await train(root, config(4, { init: shipped }), more);
    expect(more.find((e) => e.phase === 'resume')?.step).toBe(2);
    expect(more.some((e) => e.phase === 'init')).toBe(false);

    // Another init (other weights, same architecture): its checkpoints are set aside, it starts from its own weights.
    const other = join(fresh(), 'other');
    cpSync(shipped, other, { recursive: true });
    const ema = readTensorFile(join(other, 'ema.json'));
    writeTensorFile(
      join(other, 'ema'),
      'float32',
      ema.header.shape,
      (ema.values as Float32Array).map((v) => v + 0.01),
      ema.header.meta,
    );
    const third: ProgressEvent[] = [];
    await train(root, config(4, { init: other }), third);
    expect(third.some((e) => e.phase === 'resume' && 'step' in e && e.step !== undefined)).toBe(false);
    expect(third.some((e) => e.phase === 'resume' && /starting fresh/.test(e.message ?? ''))).toBe(true);
    expect(third.some((e) => e.phase === 'init')).toBe(true);
  });

  it('refuses an init whose UNet differs from the run’s, at plan time and at run time, naming train-diffusion.init and the field', async () => {
    const wider = config(2, { init: shipped, unet: { ...unet, baseChannels: 16 } });
    const message =
      /field 'train-diffusion\.init': .*tiny\/ema\.json: field 'meta\.config\.baseChannels': the init generator has 8, this run's UNet baseChannels \(train-diffusion\.unet\) is 16/;
    expect(() =>
      trainDiffusionStage.check?.(trainDiffusionConfigSchema.parse(wider), { prepare: { sizes: [R], teacher: 'faceapi-dlib-128' } }),
    ).toThrow(message);
    await expect(train(withPrepare(), wider)).rejects.toThrow(message);
    expect(() =>
      trainDiffusionStage.check?.(trainDiffusionConfigSchema.parse(config(2, { init: shipped, resolution: 32 })), {
        prepare: { sizes: [R, 32] },
      }),
    ).toThrow(
      /field 'train-diffusion\.init': .*tiny\/generator\.json: field 'resolution': the init generator has 16, this run's train-diffusion\.resolution is 32/,
    );
    expect(() =>
      trainDiffusionStage.check?.(trainDiffusionConfigSchema.parse(config(2, { init: join(shipped, 'nope') })), {
        prepare: { sizes: [R] },
      }),
    ).toThrow(/field 'train-diffusion\.init': .*nope\/generator\.json: no generator descriptor/);
  });
});
