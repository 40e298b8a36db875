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
import { embedCrops, loadGenerator, readGeneratorDescriptor, TeacherInput, type LoadedGenerator } from '@id3/diffusion';
import { ATTRIBUTE_SCALING, decodeImage, embedderInfo, loadEmbedder, resolveSourcePath, unscaleAttributes, type RgbImage } from '@id3/faces';
import { attributeSpecSchema, drawAttributes, meanAttributes, type AttributePool } from './attributes';
import { calibrateFaceCheck, type FaceCheck } from './face-check';
import { filterConfigSchema, IdentitySampler, samplerLoopSchema, type AttemptRecord } from './generate';
import { guidanceConfigSchema } from './guidance';
import { attributeRng } from './seeds';

/** `model` naming the pipeline's own generator; anything else is a generator folder (e.g. models/<name>). */
export const STAGE_MODEL = 'stage:train-diffusion';

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
        /** Cosine above which a synthetic image counts as a training person ('calibrated': the teacher's LFW same-person threshold at FAR 1e-3). */
        threshold: z.union([z.number().min(-1).max(1), z.literal('calibrated')]).default('calibrated'),
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
  return { y: values as Float32Array, dim: header.shape[1], m, identities, images, sha256: header.sha256 };
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
  if (g.resolution !== config.resolution) refuse(`the generator samples at ${g.resolution}×${g.resolution}, sample.resolution is ${config.resolution}`);
  if (g.identityDim !== ids.dim) refuse(`the generator takes ${g.identityDim}-d identities, ${inputs.embeddings} holds ${ids.dim}-d ones`);
  if (g.attributes.scaling !== ATTRIBUTE_SCALING) refuse(`attribute scaling '${g.attributes.scaling}' is not this version's '${ATTRIBUTE_SCALING}'`);
  const scaled = readTensorFile(inputs.attributesScaled);
  const width = scaled.header.shape[1];
  if (width !== generator.net.config.attributeDim) refuse(`the generator takes ${generator.net.config.attributeDim} attributes, prepare has ${width}`);
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
  for (let j = 0; j < inp.images; j++) s.set(drawAttributes(config.attributes, inp.pool, attributeRng(config.seed, identity, j), inp.mean), j * a);
  return s;
}

function identityRows(inp: Inputs, identity: number): Float32Array {
  return inp.y.slice(identity * inp.m * inp.dim, (identity * inp.m + inp.images) * inp.dim);
}

/** Real crops at the generated resolution: the face check's calibration and the card's references. */
function preparedCrops(inputs: Readonly<Record<string, string>>, resolution: number): { crops: Uint8Array; n: number } {
  const { header, values } = readTensorFile(inputs[`crops${resolution}`]);
  return { crops: values as Uint8Array, n: header.shape[0] };
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
async function faceCheckFor(config: SampleConfig, dir: string, inputs: Readonly<Record<string, string>>, pool: AttributePool): Promise<FaceCheck | undefined> {
  if (!config.filter.faceCheck) return undefined;
  const { crops } = preparedCrops(inputs, config.resolution);
  const rows = new Rng(config.seed).fork('sample/face-check').shuffle([...pool.rows]).slice(0, config.filter.faceCalibrationImages);
  const key = sha256(JSON.stringify({ rows, q: config.filter.faceQuantile, crops: readTensorFile(inputs[`crops${config.resolution}`]).header.sha256 }));
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
  const inp = loadInputs(config, inputs);
  try {
    const teacher = await loadEmbedder(inp.generator.descriptor.teacher, 'sample.model teacher');
    const faceCheck = await faceCheckFor(config, dir, inputs, inp.pool);
    const sampler = new IdentitySampler(inp.generator, teacher, config.loop, config.guidance, config.filter, faceCheck, config.seed);
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
        embeddings: Array.from({ length: inp.images }, (_, j) => Array.from(out.embeddings.subarray(j * teacher.dim, (j + 1) * teacher.dim))),
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
  externalInputs: (config): Record<string, string> => (config.model === STAGE_MODEL ? {} : { model: resolveSourcePath(config.model) }),
  check(config, sections) {
    const td = sections['train-diffusion'];
    if (config.model === STAGE_MODEL && td && td.resolution !== config.resolution) {
      throw new InvalidInputError(`field 'sample.resolution': ${config.resolution}, but train-diffusion.resolution is ${String(td.resolution)}`, {
        field: 'sample.resolution',
      });
    }
    if (config.model !== STAGE_MODEL) readGeneratorDescriptor(resolveSourcePath(config.model));
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
    const dim = sections.anchors?.dim;
    if (typeof teacher === 'string' && typeof dim === 'number' && embedderInfo(teacher, 'prepare.teacher').dim !== dim)
      throw new InvalidInputError(`field 'anchors.dim': ${dim}, but the generator's teacher ${teacher} embeds in ${embedderInfo(teacher).dim} dimensions`, {
        field: 'anchors.dim',
      });
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
  const { config, dir, inputs, shards, progress } = ctx;
  const inp = loadInputs(config, inputs);
  try {
    const key = generationKey(config, inp);
    const merged: MergedIdentity[] = [];
    for (const shard of shards) {
      const first = shardIndex(shard.id) * config.identitiesPerShard;
      const last = Math.min(inp.identities, first + config.identitiesPerShard);
      for (let i = first; i < last; i++) {
        const path = join(shard.dir, 'identities', `${identityName(i)}.json`);
        if (!existsSync(path)) throw new InvalidInputError(`${path}: shard ${shard.id} is recorded done but identity ${i} is missing`, { file: path });
        const record = JSON.parse(readFileSync(path, 'utf8')) as IdentityRecord;
        if (record.key !== key) throw new InvalidInputError(`${path}: identity ${i} was generated under another config (its shard must be rerun)`, { file: path });
        merged.push({ record, folder: join(shard.dir, 'images', identityName(i)) });
      }
    }
    return await writeDataset(ctx, inp, merged, progress);
  } finally {
    inp.generator.net.dispose();
  }
}

async function writeDataset(
  { config, dir, inputs }: StageContext<SampleConfig>,
  inp: Inputs,
  merged: readonly MergedIdentity[],
  progress: StageContext<SampleConfig>['progress'],
) {
  const r = config.resolution;
  const px = r * r * 3;
  const minImages = config.filter.minImagesPerIdentity ?? Math.ceil(inp.images / 2);
  const kept = merged.filter((m) => m.record.acceptedSlots.length >= minImages);
  const droppedTooFew = merged.filter((m) => m.record.acceptedSlots.length < minImages).map((m) => identityName(m.record.identity));
  progress({ phase: 'merge', message: `${kept.length} of ${merged.length} identities kept` });

  // The dataset folder, rebuilt from the shards each time (cheap; the shards are the truth).
  const datasetDir = join(dir, 'dataset');
  rmSync(datasetDir, { recursive: true, force: true });
  const rows: { path: string; label: number; identity: string; slot: number }[] = [];
  const crops = new Uint8Array(kept.reduce((a, m) => a + m.record.acceptedSlots.length, 0) * px);
  for (const [label, m] of kept.entries()) {
    const name = identityName(m.record.identity);
    mkdirSync(join(datasetDir, name), { recursive: true });
    for (const j of m.record.acceptedSlots) {
      const path = join(datasetDir, name, `${j}.png`);
      cpSync(join(m.folder, `${j}.png`), path);
      const image = await decodeImage(path);
      crops.set(image.data, rows.length * px);
      rows.push({ path, label, identity: name, slot: j });
    }
  }
  const keptSet = new Set(kept.map((m) => m.record.identity));
  const manifestLines = merged.flatMap((m) =>
    m.record.attempts.map((a) =>
      JSON.stringify({
        identity: identityName(a.identity),
        slot: a.slot,
        attempt: a.attempt,
        yRow: a.identity * inp.m + a.slot,
        s: unscaleAttributes(m.record.s[a.slot]),
        seed: a.seed,
        similarity: a.similarity,
        faceResidual: a.faceResidual,
        accepted: a.accepted,
        rejectedBy: a.rejectedBy,
        inDataset: a.accepted && keptSet.has(a.identity),
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
  writeJsonAtomic(outputs.index, { rows });

  const attempts = merged.flatMap((m) => m.record.attempts);
  const generated = attempts.length;
  const accepted = attempts.filter((a) => a.accepted).length;
  const seconds = merged.reduce((a, m) => a + m.record.seconds, 0);
  return {
    outputs,
    metrics: {
      identities: kept.length,
      identitiesDropped: droppedTooFew.length,
      images: rows.length,
      generated,
      acceptanceRate: generated ? accepted / generated : 0,
      rejectedSimilarity: attempts.filter((a) => a.rejectedBy === 'similarity').length,
      rejectedFace: attempts.filter((a) => a.rejectedBy === 'face').length,
      imagesPerSecond: seconds > 0 ? rows.length / seconds : 0,
      generatedPerSecond: seconds > 0 ? generated / seconds : 0,
    },
  };
}

