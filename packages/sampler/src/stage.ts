import { accessSync, constants, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { z } from 'zod';
import {
  InvalidInputError,
  Rng,
  hashJson,
  readTensorFile,
  sha256,
  writeFileAtomic,
  writeJsonAtomic,
  writeTensorFile,
  type ShardContext,
  type StageContext,
  type StageDefinition,
} from '@id3/core';
import {
  embedCrops,
  loadGenerator,
  readAttributes,
  readGeneratorCard,
  readGeneratorDescriptor,
  recordGeneratorCard,
  resolveModelPath,
  TeacherInput,
  type LoadedGenerator,
} from '@id3/diffusion';
import {
  ATTRIBUTE_SCALING,
  decodeImage,
  DEFAULT_EMBEDDER,
  embedderInfo,
  loadEmbedder,
  teacherCalibration,
  unscaleAttributes,
  type FaceEmbedder,
  type RgbImage,
} from '@id3/faces';
import { attributeSpecSchema, drawAttributes, meanAttributes, type AttributePool } from './attributes';
import { calibrateFaceCheck, type FaceCheck } from './face-check';
import { writeDatasetCard } from './card';
import { filterConfigSchema, IdentitySampler, quantise, samplerLoopSchema, type AttemptRecord } from './generate';
import { flagLeakingIdentities, nearestNeighbours, quantile } from './leakage';
import { guidanceConfigSchema } from './guidance';
import { attributeRng, imageSeed } from './seeds';

/** `model` naming the pipeline's own generator; anything else is a generator folder (e.g. models/<name>). */
export const STAGE_MODEL = 'stage:train-diffusion';

const AUTO_CHECK = 'auto';
const PREFERRED_CHECK = 'mobileface-256';

/** The card's second embedder for a generator with this teacher ('auto' picks one that is not it). */
export function checkEmbedderFor(configured: string | null, teacher: string): string | null {
  if (configured !== AUTO_CHECK) return configured;
  return teacher === PREFERRED_CHECK ? DEFAULT_EMBEDDER : PREFERRED_CHECK;
}

export const sampleConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    model: z.string().min(1).default(STAGE_MODEL),
    /** The generator's resolution (checked against the model; picks prepare's crops for the card). */
    resolution: z.number().int().positive().default(32),
    identities: z
      .object({
        /** The first `count` identities of the identities stage (default: all). */
        count: z.number().int().positive().optional(),
        /** Images per identity: the first `images` of its m embeddings (default: all m). */
        images: z.number().int().positive().optional(),
      })
      .strict()
      .default({}),
    loop: samplerLoopSchema.default({}),
    guidance: guidanceConfigSchema.default({}),
    attributes: attributeSpecSchema.default({ kind: 'empirical' }),
    filter: filterConfigSchema.default({}),
    leakage: z
      .object({
        /**
         * Cosine at or above which a synthetic image counts as a training person. 'held-out-p99'
         * (default): the 99th percentile of real never-seen faces' cosine to their nearest
         * training face, in the same embedding path — 1% of real new people would be flagged.
         * 'calibrated': the teacher's LFW same-person threshold at FAR 1e-3 (one pair at a time:
         * against thousands of training faces it flags most real people too; see the README).
         */
        threshold: z.union([z.number().min(-1).max(1), z.literal('held-out-p99'), z.literal('calibrated')]).default('held-out-p99'),
        /** Drop flagged identities from the dataset (they are always reported). */
        drop: z.boolean().default(false),
      })
      .strict()
      .default({}),
    identitiesPerShard: z.number().int().positive().default(10),
    card: z
      .object({
        gridIdentities: z.number().int().positive().default(8),
        gridImages: z.number().int().positive().default(8),
        /** Identities drawn again with guidance off on the same seeds, for the card. */
        guidanceComparison: z.number().int().nonnegative().default(4),
        /** Images whose age is read back (the age net is the slow part). */
        readBackImages: z.number().int().nonnegative().default(200),
        /**
         * A second face model (registered embedder name) that reads the accepted images for the
         * card — not the teacher, which guided and filtered them; null for none. 'auto': MobileFace,
         * or face-api's dlib net when MobileFace is the teacher.
         */
        checkEmbedder: z.string().min(1).nullable().default(AUTO_CHECK),
      })
      .strict()
      .default({}),
  })
  .strict();
export type SampleConfig = z.output<typeof sampleConfigSchema>;

const identityName = (i: number): string => `id${String(i).padStart(6, '0')}`;
const shardId = (k: number): string => `identities-${String(k).padStart(5, '0')}`;
const shardIndex = (id: string): number => Number(id.slice('identities-'.length));

/** What a finished identity leaves in its shard folder (written last, atomically). */
interface IdentityRecord {
  /** What the identity was generated under (see generationKey): a record of another config is redone. */
  readonly key: string;
  readonly identity: number;
  readonly attempts: AttemptRecord[];
  readonly acceptedSlots: number[];
  /** Per slot, requested attributes (scaled) and the teacher embedding of the accepted image. */
  readonly s: number[][];
  readonly embeddings: number[][];
  readonly seconds: number;
}

interface Inputs {
  readonly generator: LoadedGenerator;
  readonly y: Float32Array;
  readonly dim: number;
  readonly m: number;
  readonly identities: number;
  readonly images: number;
  readonly pool: AttributePool;
  readonly mean: Float32Array;
  /** sha256 of the generator weights, identity embeddings and attributes read. */
  readonly hashes: readonly string[];
}

/**
 * Everything an identity's images depend on: the generating settings and the inputs' content,
 * not the card, leakage or sharding settings (those do not change a single image).
 */
function generationKey(config: SampleConfig, inp: Inputs): string {
  const { seed, resolution, identities, loop, guidance, attributes, filter } = config;
  return hashJson({ seed, resolution, images: identities.images, loop, guidance, attributes, filter, inputs: inp.hashes });
}

function generatorPath(config: SampleConfig, inputs: Readonly<Record<string, string>>): string {
  return config.model === STAGE_MODEL ? inputs.generator : inputs.model;
}

/** Identity embeddings and counts, checked against the config (errors name the field or file). */
function readIdentities(config: SampleConfig, inputs: Readonly<Record<string, string>>) {
  const { header, values } = readTensorFile(inputs.embeddings);
  const m = Number((header.meta as { m?: number } | undefined)?.m);
  if (header.shape.length !== 2 || !Number.isInteger(m) || m < 1 || header.shape[0] % m !== 0)
    throw new InvalidInputError(`${inputs.embeddings}: expected identity embeddings [n·m, dim] with meta.m`, { file: inputs.embeddings });
  const available = header.shape[0] / m;
  const identities = config.identities.count ?? available;
  const images = config.identities.images ?? m;
  if (identities > available)
    throw new InvalidInputError(`field 'sample.identities.count': ${identities} asked, the identities stage has ${available}`, {
      field: 'sample.identities.count',
    });
  if (images > m)
    throw new InvalidInputError(`field 'sample.identities.images': ${images} asked, the identities stage drew m = ${m} per identity`, {
      field: 'sample.identities.images',
    });
  const space = (header.meta as { identitySpace?: string } | undefined)?.identitySpace ?? 'teacher';
  return { y: values as Float32Array, dim: header.shape[1], m, identities, images, sha256: header.sha256, space };
}

function loadInputs(config: SampleConfig, inputs: Readonly<Record<string, string>>): Inputs {
  const ids = readIdentities(config, inputs);
  const path = generatorPath(config, inputs);
  const generator = loadGenerator(path);
  const g = generator.descriptor;
  const field = config.model === STAGE_MODEL ? 'sample.model' : `sample.model (${path})`;
  const refuse = (message: string): never => {
    generator.net.dispose();
    throw new InvalidInputError(`field '${field}': ${message}`, { field: 'sample.model', file: path });
  };
  if (g.resolution !== config.resolution)
    refuse(`the generator samples at ${g.resolution}×${g.resolution}, sample.resolution is ${config.resolution}`);
  if (g.identityDim !== ids.dim) refuse(`the generator takes ${g.identityDim}-d identities, ${inputs.embeddings} holds ${ids.dim}-d ones`);
  // Identities placed in a whitened space still live on the teacher's sphere (design b), which a
  // teacher-space generator takes; a generator conditioned in an identity space needs that very space.
  if (g.identitySpace !== 'teacher' && g.identitySpace !== ids.space)
    refuse(`the generator conditions in identity space ${g.identitySpace}, ${inputs.embeddings} was made in ${ids.space}`);
  if (g.attributes.scaling !== ATTRIBUTE_SCALING)
    refuse(`attribute scaling '${g.attributes.scaling}' is not this version's '${ATTRIBUTE_SCALING}'`);
  const scaled = readTensorFile(inputs.attributesScaled);
  const width = scaled.header.shape[1];
  if (width !== generator.net.config.attributeDim)
    refuse(`the generator takes ${generator.net.config.attributeDim} attributes, prepare has ${width}`);
  const n = scaled.header.shape[0];
  // Attributes are resampled from the images the generator trained on, when they are these.
  const held = scaled.header.sha256 === g.trainingData.attributesSha256 ? new Set(g.trainingData.heldOut) : new Set<number>();
  const rows = Array.from({ length: n }, (_, i) => i).filter((i) => !held.has(i));
  const pool = { scaled: scaled.values as Float32Array, width, rows };
  const weights = readTensorFile(join(dirname(generator.path), g.weights)).header.sha256;
  return { ...ids, generator, pool, mean: meanAttributes(pool), hashes: [weights, ids.sha256, scaled.header.sha256] };
}

/** Scaled s rows for one identity's slots (each slot from its own stream: stable under resharding). */
function identityAttributes(config: SampleConfig, inp: Inputs, identity: number): Float32Array {
  const a = inp.pool.width;
  const s = new Float32Array(inp.images * a);
  for (let j = 0; j < inp.images; j++)
    s.set(drawAttributes(config.attributes, inp.pool, attributeRng(config.seed, identity, j), inp.mean), j * a);
  return s;
}

function identityRows(inp: Inputs, identity: number): Float32Array {
  return inp.y.slice(identity * inp.m * inp.dim, (identity * inp.m + inp.images) * inp.dim);
}

/** Real crops at the generated resolution: the face check's calibration and the card's references. */
interface PreparedCrops {
  readonly crops: Uint8Array;
  readonly n: number;
  readonly sha256: string;
}

function preparedCrops(inputs: Readonly<Record<string, string>>, resolution: number): PreparedCrops {
  const { header, values } = readTensorFile(inputs[`crops${resolution}`]);
  return { crops: values as Uint8Array, n: header.shape[0], sha256: header.sha256 };
}

const cropAt = (crops: Uint8Array, size: number, i: number): RgbImage => ({
  width: size,
  height: size,
  data: crops.subarray(i * size * size * 3, (i + 1) * size * size * 3),
});

/**
 * The face check's calibration, computed once per stage folder (any shard may be first; the
 * result is deterministic, so a race writes the same bytes).
 */
async function faceCheckFor(
  config: SampleConfig,
  dir: string,
  inputs: Readonly<Record<string, string>>,
  pool: AttributePool,
): Promise<FaceCheck | undefined> {
  if (!config.filter.faceCheck) return undefined;
  const { crops, sha256: cropsSha } = preparedCrops(inputs, config.resolution);
  const rows = new Rng(config.seed)
    .fork('sample/face-check')
    .shuffle([...pool.rows])
    .slice(0, config.filter.faceCalibrationImages);
  const key = sha256(JSON.stringify({ rows, q: config.filter.faceQuantile, crops: cropsSha }));
  const path = join(dir, 'face-check.json');
  if (existsSync(path)) {
    const cached = JSON.parse(readFileSync(path, 'utf8')) as { key: string; check: FaceCheck };
    if (cached.key === key) return cached.check;
  }
  const check = await calibrateFaceCheck(
    rows.map((r) => cropAt(crops, config.resolution, r)),
    config.filter.faceQuantile,
  );
  writeJsonAtomic(path, { key, check });
  return check;
}

async function writePng(path: string, data: Uint8Array, size: number): Promise<void> {
  const png = await sharp(Buffer.from(data), { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
  writeFileAtomic(path, png);
}

/** One shard: its identities in order, each resumable (a finished identity is never redone). */
async function runShard({ config, dir, inputs, shard, shardDir, progress }: ShardContext<SampleConfig>) {
  assertWritable(shardDir);
  const inp = loadInputs(config, inputs);
  let sampler: IdentitySampler | undefined;
  try {
    const teacher = await loadEmbedder(inp.generator.descriptor.teacher, 'sample.model teacher');
    const faceCheck = await faceCheckFor(config, dir, inputs, inp.pool);
    sampler = new IdentitySampler(inp.generator, teacher, config.loop, config.guidance, config.filter, faceCheck, config.seed);
    const first = shardIndex(shard) * config.identitiesPerShard;
    const last = Math.min(inp.identities, first + config.identitiesPerShard);
    const key = generationKey(config, inp);
    let generated = 0;
    let accepted = 0;
    let seconds = 0;
    let resumed = 0;
    for (let i = first; i < last; i++) {
      const name = identityName(i);
      const recordPath = join(shardDir, 'identities', `${name}.json`);
      const done = existsSync(recordPath) ? (JSON.parse(readFileSync(recordPath, 'utf8')) as IdentityRecord) : undefined;
      if (done?.key === key) {
        const rec = done;
        generated += rec.attempts.length;
        accepted += rec.acceptedSlots.length;
        seconds += rec.seconds;
        resumed++;
        continue;
      }
      const started = performance.now();
      const s = identityAttributes(config, inp, i);
      const out = await sampler.generateIdentity(i, identityRows(inp, i), s);
      const folder = join(shardDir, 'images', name);
      rmSync(folder, { recursive: true, force: true }); // images of another config, or of a killed attempt
      mkdirSync(folder, { recursive: true });
      const acceptedSlots: number[] = [];
      for (const [j, image] of out.images.entries()) {
        if (!image) continue;
        await writePng(join(folder, `${j}.png`), image, config.resolution);
        acceptedSlots.push(j);
      }
      const a = inp.pool.width;
      const record: IdentityRecord = {
        key,
        identity: i,
        attempts: out.attempts,
        acceptedSlots,
        s: Array.from({ length: inp.images }, (_, j) => Array.from(s.subarray(j * a, (j + 1) * a))),
        embeddings: Array.from({ length: inp.images }, (_, j) =>
          Array.from(out.embeddings.subarray(j * teacher.dim, (j + 1) * teacher.dim)),
        ),
        seconds: (performance.now() - started) / 1000,
      };
      mkdirSync(join(shardDir, 'identities'), { recursive: true });
      writeJsonAtomic(recordPath, record);
      generated += out.attempts.length;
      accepted += acceptedSlots.length;
      seconds += record.seconds;
      progress({
        phase: 'sample',
        step: i - first + 1,
        total: last - first,
        message: `${name}: ${acceptedSlots.length}/${inp.images} accepted`,
        metrics: { accepted, generated },
      });
    }
    return { metrics: { identities: last - first, resumedIdentities: resumed, generated, accepted, seconds } };
  } finally {
    sampler?.dispose();
    inp.generator.net.dispose();
  }
}

export const sampleStage: StageDefinition<typeof sampleConfigSchema> = {
  name: 'sample',
  version: 1,
  schema: sampleConfigSchema,
  upstream: ['prepare', 'train-diffusion', 'identities'],
  reads: (config) => ({
    identities: ['embeddings'],
    prepare: ['attributesScaled', 'attributes', `crops${config.resolution}`],
    ...(config.model === STAGE_MODEL ? { 'train-diffusion': ['generator'] } : {}),
  }),
  // A generator folder (e.g. models/<name>, relative to the repository root): its content is an input.
  externalInputs: (config): Record<string, string> => (config.model === STAGE_MODEL ? {} : { model: resolveModelPath(config.model) }),
  check(config, sections) {
    const td = sections['train-diffusion'];
    if (config.model === STAGE_MODEL && td && td.resolution !== config.resolution) {
      throw new InvalidInputError(
        `field 'sample.resolution': ${config.resolution}, but train-diffusion.resolution is ${String(td.resolution)}`,
        {
          field: 'sample.resolution',
        },
      );
    }
    let teacherOfModel = sections.prepare?.teacher as string | undefined;
    if (config.model !== STAGE_MODEL) {
      const folder = resolveModelPath(config.model);
      teacherOfModel = readGeneratorDescriptor(folder).descriptor.teacher;
      if (existsSync(join(folder, 'card.json'))) readGeneratorCard(folder);
    }
    if (config.card.checkEmbedder && config.card.checkEmbedder !== AUTO_CHECK) {
      embedderInfo(config.card.checkEmbedder, 'sample.card.checkEmbedder'); // unknown names fail here
      if (teacherOfModel) checkIsNotTeacher(config.card.checkEmbedder, teacherOfModel);
    }
    const sizes = sections.prepare?.sizes as number[] | undefined;
    if (sizes && !sizes.includes(config.resolution))
      throw new InvalidInputError(`field 'sample.resolution': ${config.resolution} is not one of prepare.sizes [${sizes.join(', ')}]`, {
        field: 'sample.resolution',
      });
    const m = sections.identities?.m as number | undefined;
    if (m !== undefined && config.identities.images !== undefined && config.identities.images > m)
      throw new InvalidInputError(`field 'sample.identities.images': ${config.identities.images} asked, identities.m is ${m}`, {
        field: 'sample.identities.images',
      });
    const teacher = sections.prepare?.teacher;
    if (typeof teacher === 'string' && config.model === STAGE_MODEL) leakageThreshold(config, teacher);
    const dim = sections.anchors?.dim;
    if (typeof teacher === 'string' && typeof dim === 'number' && embedderInfo(teacher, 'prepare.teacher').dim !== dim)
      throw new InvalidInputError(
        `field 'anchors.dim': ${dim}, but the generator's teacher ${teacher} embeds in ${embedderInfo(teacher).dim} dimensions`,
        {
          field: 'anchors.dim',
        },
      );
  },
  shards: {
    plan({ config, inputs }) {
      const { identities } = readIdentities(config, inputs);
      return Array.from({ length: Math.ceil(identities / config.identitiesPerShard) }, (_, k) => shardId(k));
    },
    run: (ctx) => runShard(ctx),
  },
  run: (ctx) => mergeDataset(ctx),
};

/** Refuse before sampling when the stage folder cannot be written (names the folder). */
export function assertWritable(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    const probe = join(dir, `.write-probe-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (err) {
    throw new InvalidInputError(`output folder ${dir} is not writable: ${(err as Error).message}`, { file: dir });
  }
}

interface MergedIdentity {
  readonly record: IdentityRecord;
  readonly folder: string;
}

async function mergeDataset(ctx: StageContext<SampleConfig>) {
  const { config, inputs, shards, progress } = ctx;
  const inp = loadInputs(config, inputs);
  try {
    const key = generationKey(config, inp);
    const merged: MergedIdentity[] = [];
    for (const shard of shards) {
      const first = shardIndex(shard.id) * config.identitiesPerShard;
      const last = Math.min(inp.identities, first + config.identitiesPerShard);
      for (let i = first; i < last; i++) {
        const path = join(shard.dir, 'identities', `${identityName(i)}.json`);
        if (!existsSync(path))
          throw new InvalidInputError(`${path}: shard ${shard.id} is recorded done but identity ${i} is missing`, { file: path });
        const record = JSON.parse(readFileSync(path, 'utf8')) as IdentityRecord;
        if (record.key !== key)
          throw new InvalidInputError(`${path}: identity ${i} was generated under another config (its shard must be rerun)`, {
            file: path,
          });
        merged.push({ record, folder: join(shard.dir, 'images', identityName(i)) });
      }
    }
    const { outputs, metrics } = await writeDataset(ctx, inp, merged, progress);
    return { outputs, metrics: { ...metrics, shards: shards.length } };
  } finally {
    inp.generator.net.dispose();
  }
}

/**
 * Teacher embeddings of the prepared crops at the generated resolution through the same path
 * the synthetic images take (TeacherInput, flip-summed): the leakage search compares like with
 * like. Cached in the stage folder by the crops' and teacher's identity.
 */
async function referenceEmbeddings(dir: string, prepared: PreparedCrops, resolution: number, teacher: FaceEmbedder): Promise<Float32Array> {
  const path = join(dir, `reference-embeddings-${resolution}`);
  if (existsSync(`${path}.json`)) {
    const cached = readTensorFile(`${path}.json`);
    const meta = cached.header.meta as { crops?: string; teacher?: string } | undefined;
    if (meta?.crops === prepared.sha256 && meta.teacher === teacher.name) return cached.values as Float32Array;
  }
  const input = TeacherInput.forTeacher(teacher, resolution);
  try {
    const unit = Float32Array.from(prepared.crops, (v) => v / 127.5 - 1);
    const emb = await embedCrops(teacher, input, unit, resolution);
    writeTensorFile(path, 'float32', [prepared.n, teacher.dim], emb, { crops: prepared.sha256, teacher: teacher.name });
    return emb;
  } finally {
    input.dispose();
  }
}

/** Real never-seen faces needed before their 99th percentile means anything. */
const MIN_HELD_OUT = 50;

function leakageThreshold(config: SampleConfig, teacher: string, heldOutNearest?: () => Float32Array): { cosine: number; source: string } {
  const t = config.leakage.threshold;
  if (typeof t === 'number') return { cosine: t, source: 'sample.leakage.threshold' };
  if (t === 'held-out-p99') {
    if (!heldOutNearest) return { cosine: Number.NaN, source: 'held-out-p99' }; // plan time: nothing to check yet
    const nearest = heldOutNearest();
    if (nearest.length < MIN_HELD_OUT)
      throw new InvalidInputError(
        `field 'sample.leakage.threshold': 'held-out-p99' needs at least ${MIN_HELD_OUT} real faces the generator never trained on, this generator's data has ${nearest.length} here (raise train-diffusion.holdout, or give a cosine)`,
        { field: 'sample.leakage.threshold' },
      );
    return {
      cosine: quantile(Array.from(nearest), 0.99),
      source: `99th percentile of ${nearest.length} real held-out faces' cosine to their nearest training face (same embedding path)`,
    };
  }
  const c = teacherCalibration(teacher);
  if (!c)
    throw new InvalidInputError(
      `field 'sample.leakage.threshold': teacher ${teacher} has no calibrated same-person threshold (run npm run bench:lfw -- --teacher ${teacher} --write-calibration, or give a cosine)`,
      { field: 'sample.leakage.threshold' },
    );
  return { cosine: c.cosine, source: `${teacher}: same-person threshold at FAR ${c.farTarget} on ${c.benchmark} (${c.command})` };
}

const gather = (x: Float32Array, width: number, rows: readonly number[]): Float32Array => {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(x.subarray(r * width, (r + 1) * width), i * width));
  return out;
};

async function writeDataset(
  { config, dir, inputs }: StageContext<SampleConfig>,
  inp: Inputs,
  merged: readonly MergedIdentity[],
  progress: StageContext<SampleConfig>['progress'],
) {
  const r = config.resolution;
  const px = r * r * 3;
  const d = inp.dim;
  const teacherName = inp.generator.descriptor.teacher;
  leakageThreshold(config, teacherName); // an uncalibrated teacher fails before any work
  const teacher = await loadEmbedder(teacherName, 'sample.model teacher');
  const minImages = config.filter.minImagesPerIdentity ?? Math.ceil(inp.images / 2);
  const enough = merged.filter((m) => m.record.acceptedSlots.length >= minImages);
  const droppedTooFew = merged.filter((m) => m.record.acceptedSlots.length < minImages).map((m) => identityName(m.record.identity));

  // Leakage: every accepted image against the generator's training faces, same embedding path.
  progress({ phase: 'leakage', message: 'embedding the training faces at the generated resolution' });
  const prepared = preparedCrops(inputs, r);
  const reference = await referenceEmbeddings(dir, prepared, r, teacher);
  const g = inp.generator.descriptor;
  const heldOut = inp.pool.rows.length < reference.length / d ? g.trainingData.heldOut : [];
  const trainingRows = inp.pool.rows;
  const embeddingsOf = (ms: readonly MergedIdentity[]): { embeddings: Float32Array; labels: Int32Array } => {
    const rows = ms.flatMap((m, label) => m.record.acceptedSlots.map((j) => ({ e: m.record.embeddings[j], label })));
    const embeddings = new Float32Array(rows.length * d);
    rows.forEach((row, i) => embeddings.set(row.e, i * d));
    return { embeddings, labels: Int32Array.from(rows, (row) => row.label) };
  };
  const trainingEmbeddings = gather(reference, d, trainingRows);
  const heldOutEmbeddings = gather(reference, d, heldOut);
  const threshold = leakageThreshold(config, teacherName, () => nearestNeighbours(heldOutEmbeddings, trainingEmbeddings, d).cosine);
  const before = embeddingsOf(enough);
  const flags = flagLeakingIdentities({ ...before, dim: d, identities: enough.length }, trainingEmbeddings, threshold.cosine);
  const flagged = new Set(flags.flagged);
  const kept = config.leakage.drop ? enough.filter((_, k) => !flagged.has(k)) : enough;
  const leakageDropped = config.leakage.drop
    ? flags.flagged.map((k) => ({ name: identityName(enough[k].record.identity), cosine: flags.maxCosine[k] }))
    : [];
  progress({ phase: 'merge', message: `${kept.length} of ${merged.length} identities kept` });

  // The dataset folder, rebuilt from the shards each time (cheap; the shards are the truth).
  const datasetDir = join(dir, 'dataset');
  rmSync(datasetDir, { recursive: true, force: true });
  const rows: { path: string; label: number; identity: string; slot: number }[] = [];
  const crops = new Uint8Array(kept.reduce((acc, m) => acc + m.record.acceptedSlots.length, 0) * px);
  const y = new Float32Array((crops.length / px) * d);
  const requestedYaw: number[] = [];
  const requestedAge: number[] = [];
  for (const [label, m] of kept.entries()) {
    const name = identityName(m.record.identity);
    mkdirSync(join(datasetDir, name), { recursive: true });
    const yRows = identityRows(inp, m.record.identity);
    for (const j of m.record.acceptedSlots) {
      const path = join(datasetDir, name, `${j}.png`);
      cpSync(join(m.folder, `${j}.png`), path);
      const image = await decodeImage(path);
      crops.set(image.data, rows.length * px);
      y.set(yRows.subarray(j * d, (j + 1) * d), rows.length * d);
      const raw = unscaleAttributes(m.record.s[j]);
      requestedAge.push(raw[0]);
      requestedYaw.push(raw[2]);
      rows.push({ path, label, identity: name, slot: j });
    }
  }
  const keptSet = new Set(kept.map((m) => m.record.identity));
  const manifestLines = merged.flatMap((m) =>
    m.record.attempts.map((at) =>
      JSON.stringify({
        identity: identityName(at.identity),
        slot: at.slot,
        attempt: at.attempt,
        yRow: at.identity * inp.m + at.slot,
        s: unscaleAttributes(m.record.s[at.slot]),
        seed: at.seed,
        similarity: at.similarity,
        faceResidual: at.faceResidual,
        accepted: at.accepted,
        rejectedBy: at.rejectedBy,
        inDataset: at.accepted && keptSet.has(at.identity),
      }),
    ),
  );
  const outputs: Record<string, string> = {
    manifest: join(dir, 'manifest.jsonl'),
    crops: writeTensorFile(join(dir, `crops-${r}`), 'uint8', [rows.length, r, r, 3], crops, {
      what: 'accepted synthetic images, row order = index.json',
    }),
    index: join(dir, 'index.json'),
  };
  writeFileAtomic(outputs.manifest, manifestLines.join('\n') + '\n');
  // A shipped model's card (card.json), copied: the run records which model made the data.
  const modelCard = config.model === STAGE_MODEL ? undefined : recordGeneratorCard(dirname(inp.generator.path), dir);
  if (modelCard) outputs.modelCard = modelCard;
  writeJsonAtomic(outputs.index, { rows });

  const attempts = merged.flatMap((m) => m.record.attempts);
  const generated = attempts.length;
  const accepted = attempts.filter((at) => at.accepted).length;
  const seconds = merged.reduce((acc, m) => acc + m.record.seconds, 0);
  const metrics: Record<string, number> = {
    identities: kept.length,
    identitiesDropped: droppedTooFew.length,
    identitiesLeaking: flags.flagged.length,
    images: rows.length,
    generated,
    acceptanceRate: generated ? accepted / generated : 0,
    rejectedSimilarity: attempts.filter((at) => at.rejectedBy === 'similarity').length,
    rejectedFace: attempts.filter((at) => at.rejectedBy === 'face').length,
    imagesPerSecond: seconds > 0 ? rows.length / seconds : 0,
    generatedPerSecond: seconds > 0 ? generated / seconds : 0,
  };
  if (rows.length === 0) return { outputs, metrics };

  // The card: what the dataset is, how recognisable its people are, and how close to real ones.
  progress({ phase: 'card', message: 'reading back attributes and writing the dataset card' });
  const final = embeddingsOf(kept);
  const readRows = new Rng(config.seed)
    .fork('sample/read-back')
    .shuffle(rows.map((_, i) => i))
    .slice(0, config.card.readBackImages)
    .sort((p, q) => p - q);
  const readBack = await readAttributes(readRows.map((i) => ({ width: r, height: r, data: crops.subarray(i * px, (i + 1) * px) })));
  const rawTraining = readTensorFile(inputs.attributes).values as Float32Array;
  const width = rawTraining.length / (reference.length / d);
  const preparedAtR = prepared.crops;
  const comparison =
    config.guidance.scale > 0 && config.card.guidanceComparison > 0 ? await guidanceComparison(config, inp, teacher, kept) : undefined;
  const checkName = checkEmbedderFor(config.card.checkEmbedder, teacherName);
  const check = checkName ? await checkEmbeddings(checkName, teacherName, crops, r) : undefined;
  const card = await writeDatasetCard(join(dir, 'card'), {
    check,
    title: `sample: ${kept.length} synthetic identities × up to ${inp.images} images`,
    seed: config.seed,
    set: {
      resolution: r,
      images: crops,
      labels: final.labels,
      identityNames: kept.map((m) => identityName(m.record.identity)),
      dim: d,
      embeddings: final.embeddings,
      y,
      requested: { yaw: Float32Array.from(requestedYaw), age: Float32Array.from(requestedAge) },
    },
    readBack: { indices: readRows, yaw: readBack.yaw, age: readBack.age },
    training: {
      embeddings: trainingEmbeddings,
      yaw: Float32Array.from(trainingRows, (row) => rawTraining[row * width + 2]),
      age: Float32Array.from(trainingRows, (row) => rawTraining[row * width]),
      crops: gather8(preparedAtR, px, trainingRows),
      cropSize: r,
    },
    realHeldOut: { embeddings: heldOutEmbeddings, crops: gather8(preparedAtR, px, heldOut) },
    leakageThreshold: threshold,
    leakageFlags: config.leakage.drop ? undefined : flags,
    leakageDropped,
    acceptance: {
      generated,
      accepted,
      rejectedSimilarity: metrics.rejectedSimilarity,
      rejectedFace: metrics.rejectedFace,
      droppedIdentities: droppedTooFew,
      warnAboveRejectedFraction: config.filter.warnRejectedFraction,
    },
    guidanceComparison: comparison,
    grid: { identities: config.card.gridIdentities, images: config.card.gridImages },
    // As many different-identity pairs as same-identity ones: accuracy on unbalanced pairs says little.
    pairs: balancedPairs(final.labels),
  });
  outputs.card = join(dir, 'card', 'report.md');
  outputs.cardNumbers = join(dir, 'card', 'card.json');
  if ('accuracy' in card.verification) metrics.teacherVerificationAccuracy = card.verification.accuracy;
  if (card.check && 'accuracy' in card.check.verification) metrics.checkVerificationAccuracy = card.check.verification.accuracy;
  if (card.check) metrics.checkIntraInterGap = card.check.intraMean - card.check.interMean;
  metrics.identityConsistency = card.similarity.identityConsistency;
  metrics.mismatchedConsistency = card.similarity.mismatchedConsistency;
  metrics.intraCosine = card.similarity.intraMean;
  metrics.interCosine = card.similarity.interMean;
  metrics.yawCorrelation = card.attributes.yaw.correlation;
  metrics.ageCorrelation = card.attributes.age.correlation;
  return { outputs, metrics };
}

/** The card's check must be another network than the one that guided and filtered the images. */
function checkIsNotTeacher(name: string, teacherName: string): void {
  if (name === teacherName)
    throw new InvalidInputError(
      `field 'sample.card.checkEmbedder': '${name}' is the generator's teacher, which guided and filtered the images; name another embedder or null`,
      { field: 'sample.card.checkEmbedder' },
    );
}

/** The accepted images embedded by an independent face model, through the same upscaling path as the teacher's. */
async function checkEmbeddings(name: string, teacherName: string, crops: Uint8Array, resolution: number) {
  checkIsNotTeacher(name, teacherName);
  const check = await loadEmbedder(name, 'sample.card.checkEmbedder');
  const input = TeacherInput.forTeacher(check, resolution);
  try {
    const embeddings = await embedCrops(
      check,
      input,
      Float32Array.from(crops, (v) => v / 127.5 - 1),
      resolution,
    );
    return { name: check.name, dim: check.dim, embeddings };
  } finally {
    input.dispose();
  }
}

function balancedPairs(labels: Int32Array): { same: number; different: number } {
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  const same = [...counts.values()].reduce((acc, c) => acc + (c * (c - 1)) / 2, 0);
  const n = Math.min(3000, same);
  return { same: n, different: n };
}

const gather8 = (x: Uint8Array, width: number, rows: readonly number[]): Uint8Array => {
  const out = new Uint8Array(rows.length * width);
  rows.forEach((row, i) => out.set(x.subarray(row * width, (row + 1) * width), i * width));
  return out;
};

/** The first identities' attempt-0 images again, guidance on and off on the same seeds. */
async function guidanceComparison(config: SampleConfig, inp: Inputs, teacher: FaceEmbedder, kept: readonly MergedIdentity[]) {
  const ids = kept.slice(0, config.card.guidanceComparison).map((m) => m.record.identity);
  const perIdentity = Math.min(inp.images, config.card.gridImages);
  const off = { ...config.guidance, scale: 0 };
  const sampler = new IdentitySampler(inp.generator, teacher, config.loop, config.guidance, config.filter, undefined, config.seed);
  try {
    const px = config.resolution ** 2 * 3;
    const guided = new Uint8Array(ids.length * perIdentity * px);
    const unguided = new Uint8Array(ids.length * perIdentity * px);
    for (const [k, i] of ids.entries()) {
      const d = inp.dim;
      const a = inp.pool.width;
      const yRows = identityRows(inp, i).subarray(0, perIdentity * d);
      const sRows = identityAttributes(config, inp, i).subarray(0, perIdentity * a);
      const seeds = Array.from({ length: perIdentity }, (_, j) => imageSeed(config.seed, i, j, 0));
      guided.set(quantise(sampler.sample(yRows, sRows, seeds)), k * perIdentity * px);
      unguided.set(quantise(sampler.sample(yRows, sRows, seeds, off)), k * perIdentity * px);
    }
    return { identities: ids.length, perIdentity, size: config.resolution, guided, unguided };
  } finally {
    sampler.dispose();
  }
}
