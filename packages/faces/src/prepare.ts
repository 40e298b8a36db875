import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  binEdges,
  histogram,
  histogramSvg,
  readTensorFile,
  sha256,
  svgToPng,
  writeFileAtomic,
  writeJsonAtomic,
  writeTensorFile,
  type StageDefinition,
} from '@id3/core';
import { dataDir } from './data-dir';
import { decodeImageBytes, resizeImage, type RgbImage } from './image-io';
import { predictAge } from './models/age';
import { alignForEmbedder } from './models/align-for-embedder';
import { detectAndAlign } from './models/detect-align';
import { DEFAULT_EMBEDDER, embedderInfo, embedderNames, loadEmbedder, unknownEmbedderMessage } from './models/embedders';
import { embedImage, type FaceEmbedder } from './models/face-embedder';
import { headPoseFrom68 } from './pose';
import { readImageFolders } from './readers/folders';
import { readUtkFace } from './readers/utkface';
import { writeProceduralFaces } from './procedural';

/**
 * The `prepare` stage: a folder of real face photos → ArcFace-aligned crops at the configured
 * resolutions, teacher embeddings y and attributes s (age, pitch, yaw, roll) per accepted image,
 * stored as one tensor file per array plus a JSON index; unreadable images and images without a
 * usable face go to a rejects list with the reason, and the stage completes for the rest.
 */
export const prepareConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    source: z.discriminatedUnion('kind', [
      z
        .object({
          /** 'utkface': UTKFace file names carry age/gender/race labels; 'folders': one folder per identity. */
          kind: z.enum(['utkface', 'folders']),
          /** A folder; `data:` prefixes a path inside the shared data dir (ID3_DATA_DIR, default ../shared/data). */
          path: z.string().min(1),
        })
        .strict(),
      z
        .object({
          /** The built-in procedural face set (procedural.ts), rendered into the stage directory. */
          kind: z.literal('procedural'),
          identities: z.number().int().min(2),
          perIdentity: z.number().int().min(2),
          size: z.number().int().min(64).max(512).default(160),
        })
        .strict(),
    ]),
    /** Use only the first `limit` images (sorted by name) — for quick runs. */
    limit: z.number().int().positive().optional(),
    /** Images per shard: the unit a worker takes and a killed run loses. */
    imagesPerShard: z.number().int().positive().default(250),
    /** Square crop sides to store (the ArcFace template is scaled to each). */
    sizes: z.array(z.number().int().min(16).max(512)).nonempty().default([112]),
    detector: z.enum(['tiny', 'ssd']).default('tiny'),
    /** Without a detected face: centre crop (pre-aligned sets) or reject. */
    fallback: z.enum(['center-crop', 'reject']).default('reject'),
    /** Centre crop: the side of the ArcFace crop as a fraction of the image (LFW ~0.5, UTKFace ~0.85). */
    fallbackFraction: z.number().min(0.1).max(1).default(0.5),
    /** The face embedder whose embeddings are y: any registered name (embedderNames()). */
    teacher: z
      .string()
      .refine(
        (name) => embedderNames().includes(name),
        (name) => ({ message: unknownEmbedderMessage(name) }),
      )
      .default(DEFAULT_EMBEDDER),
  })
  .strict();
export type PrepareConfig = z.output<typeof prepareConfigSchema>;

/** Attributes are stored raw (years, degrees) and scaled to about [-1, 1] for conditioning. */
export const ATTRIBUTE_NAMES = ['age', 'pitch', 'yaw', 'roll'] as const;
export const ATTRIBUTE_SCALING = 'age/50-1, angles/90';
export function scaleAttributes([age, pitch, yaw, roll]: readonly number[]): number[] {
  return [age / 50 - 1, pitch / 90, yaw / 90, roll / 90];
}
export function unscaleAttributes([age, pitch, yaw, roll]: readonly number[]): number[] {
  return [(age + 1) * 50, pitch * 90, yaw * 90, roll * 90];
}

interface Entry {
  readonly path: string;
  readonly label?: number;
  readonly labels?: Record<string, number>;
}

export function resolveSourcePath(path: string): string {
  return path.startsWith('data:') ? join(dataDir(), path.slice('data:'.length)) : resolve(path);
}

interface Listing {
  readonly entries: Entry[];
  /** Files the listing itself refused (e.g. a UTKFace name without labels). */
  readonly rejects: { path: string; reason: string }[];
}

/** The images to prepare, sorted by name and cut to `limit`: what the shards split. */
async function listSource(config: PrepareConfig, dir: string): Promise<Listing> {
  let listing: Listing;
  try {
    listing = await listAll(config, dir);
  } catch (err) {
    throw new InvalidInputError(`field 'prepare.source.path': ${(err as Error).message}`, { field: 'prepare.source.path' });
  }
  return { entries: config.limit ? listing.entries.slice(0, config.limit) : listing.entries, rejects: listing.rejects };
}

async function listAll(config: PrepareConfig, dir: string): Promise<Listing> {
  const source = config.source;
  if (source.kind === 'procedural') {
    const truth = await renderedProceduralSet(join(dir, 'source'), {
      identities: source.identities,
      perIdentity: source.perIdentity,
      size: source.size,
      seed: config.seed,
    });
    return {
      entries: truth.images.map((t) => ({
        path: t.path,
        label: t.identity,
        labels: { age: t.attributes.age, yaw: t.attributes.yaw, pitch: t.attributes.pitch, roll: t.attributes.roll },
      })),
      rejects: [],
    };
  }
  const path = resolveSourcePath(source.path);
  if (!existsSync(path)) throw new InvalidInputError(`folder not found: ${path}`, { file: path });
  if (source.kind === 'utkface') {
    const { records, rejected } = readUtkFace(path);
    return { entries: records.map((r) => ({ path: r.path, labels: { age: r.age, gender: r.gender, race: r.race } })), rejects: rejected };
  }
  const { images } = readImageFolders(path);
  return { entries: images.map((i) => ({ path: i.path, label: i.label })), rejects: [] };
}

interface ProceduralTruth {
  readonly seed: number;
  readonly identities: number;
  readonly perIdentity: number;
  readonly size: number;
  readonly images: { path: string; identity: number; attributes: { yaw: number; pitch: number; roll: number; age: number } }[];
}

/** The procedural set, rendered once: every shard process lists the same files (labels.json is written last). */
async function renderedProceduralSet(
  root: string,
  o: { identities: number; perIdentity: number; size: number; seed: number },
): Promise<ProceduralTruth> {
  const labelsPath = join(root, 'labels.json');
  if (existsSync(labelsPath)) {
    const truth = JSON.parse(readFileSync(labelsPath, 'utf8')) as ProceduralTruth;
    const same = truth.seed === o.seed && truth.identities === o.identities && truth.perIdentity === o.perIdentity && truth.size === o.size;
    if (same && truth.images.every((t) => existsSync(t.path))) return truth;
  }
  await writeProceduralFaces(root, o);
  return JSON.parse(readFileSync(labelsPath, 'utf8')) as ProceduralTruth;
}

interface IndexRow {
  readonly path: string;
  readonly sha256: string;
  readonly method: string;
  readonly label?: number;
  readonly labels?: Record<string, number>;
}

/** One shard's results, as its files hold them. */
interface ShardRows {
  readonly index: IndexRow[];
  readonly rejects: { path: string; reason: string }[];
  readonly attributes: number[][];
  readonly fallbacks: number;
  readonly images: number;
  readonly seconds: number;
}

const shardId = (k: number): string => `chunk-${String(k).padStart(5, '0')}`;
const shardIndex = (id: string): number => Number(id.slice('chunk-'.length));

/**
 * Detect, align, crop at every size, embed with the teacher and read the attributes of each
 * entry; unreadable images and images without a usable face become rejects with the reason.
 */
async function prepareEntries(
  entries: readonly Entry[],
  config: PrepareConfig,
  teacher: FaceEmbedder,
  onImage: (done: number, accepted: number, rejected: number) => void,
): Promise<ShardRows & { crops: Uint8Array[][]; embeddings: Float32Array[] }> {
  const crops = config.sizes.map(() => [] as Uint8Array[]);
  const embeddings: Float32Array[] = [];
  const attributes: number[][] = [];
  const index: IndexRow[] = [];
  const rejects: { path: string; reason: string }[] = [];
  let fallbacks = 0;
  const started = Date.now();
  for (const [i, entry] of entries.entries()) {
    let image: RgbImage;
    let bytes: Buffer;
    try {
      bytes = readFileSync(entry.path); // read once: decoded here, hashed for the index below
      image = await decodeImageBytes(bytes, entry.path);
    } catch (err) {
      rejects.push({ path: entry.path, reason: (err as Error).message });
      onImage(i + 1, index.length, rejects.length);
      continue;
    }
    const found = await detectAndAlign(image, {
      size: 112,
      detector: config.detector,
      fallback: config.fallback,
      fallbackFraction: config.fallbackFraction,
    });
    if (!found.ok) {
      rejects.push({ path: entry.path, reason: found.reason });
      onImage(i + 1, index.length, rejects.length);
      continue;
    }
    const { landmarks68: landmarks, method } = found;
    if (method === 'center-crop') fallbacks++;
    const aligned = found.image;
    for (const [k, size] of config.sizes.entries()) crops[k].push((size === 112 ? aligned : await resizeImage(aligned, size, size)).data);
    // The teacher sees its own crop (a dlib chip for face-api), cut from the same landmarks.
    embeddings.push(await embedImage(teacher, alignForEmbedder(image, found, teacher)));
    // A centre-cropped (pre-aligned) face has no landmarks: its pose is taken as frontal and its
    // age predicted on the whole image; the index records the method.
    const pose = landmarks ? headPoseFrom68(landmarks) : { pitch: 0, yaw: 0, roll: 0 };
    const age = (await predictAge(image, landmarks ?? { x: 0, y: 0, w: image.width, h: image.height })).age;
    attributes.push([age, pose.pitch, pose.yaw, pose.roll]);
    index.push({
      path: entry.path,
      sha256: sha256(bytes),
      method,
      ...(entry.label !== undefined ? { label: entry.label } : {}),
      ...(entry.labels ? { labels: entry.labels } : {}),
    });
    onImage(i + 1, index.length, rejects.length);
  }
  return { crops, embeddings, attributes, index, rejects, fallbacks, images: entries.length, seconds: (Date.now() - started) / 1000 };
}

export const prepareStage: StageDefinition<typeof prepareConfigSchema> = {
  name: 'prepare',
  version: 2,
  schema: prepareConfigSchema,
  // A source folder is an input by its listing (names, sizes, mtimes): a changed folder re-runs.
  externalInputs(config): Record<string, string> {
    if (config.source.kind === 'procedural') return {};
    const path = resolveSourcePath(config.source.path);
    if (!existsSync(path))
      throw new InvalidInputError(`field 'prepare.source.path': folder not found: ${path}`, { field: 'prepare.source.path', file: path });
    return { source: path };
  },
  /**
   * Shards: chunks of `imagesPerShard` images in name order. A killed run loses at most the
   * chunks in flight; any worker can take any chunk.
   */
  shards: {
    async plan({ config, dir }) {
      const { entries } = await listSource(config, dir);
      return Array.from({ length: Math.ceil(entries.length / config.imagesPerShard) }, (_, k) => shardId(k));
    },
    async run({ config, dir, shard, shardDir, progress }) {
      const { entries } = await listSource(config, dir);
      const start = shardIndex(shard) * config.imagesPerShard;
      const chunk = entries.slice(start, start + config.imagesPerShard);
      const teacher = await loadEmbedder(config.teacher, 'prepare.teacher');
      const r = await prepareEntries(chunk, config, teacher, (done, accepted, rejected) =>
        progress({ phase: 'align', step: done, total: chunk.length, metrics: { accepted, rejected } }),
      );
      const n = r.index.length;
      for (const [k, size] of config.sizes.entries())
        writeTensorFile(join(shardDir, `crops-${size}`), 'uint8', [n, size, size, 3], concat(r.crops[k], n * size * size * 3));
      writeTensorFile(join(shardDir, 'embeddings'), 'float32', [n, teacher.dim], concat(r.embeddings, n * teacher.dim));
      const rows: ShardRows = {
        index: r.index,
        rejects: r.rejects,
        attributes: r.attributes,
        fallbacks: r.fallbacks,
        images: r.images,
        seconds: r.seconds,
      };
      writeJsonAtomic(join(shardDir, 'rows.json'), rows);
      return { metrics: { images: r.images, accepted: n, rejected: r.rejects.length, seconds: r.seconds } };
    },
  },
  async run({ config, dir, shards, progress }) {
    const listing = await listSource(config, dir);
    progress({ phase: 'merge', message: `${listing.entries.length} images in ${shards.length} shard(s)` });
    const teacher = embedderInfo(config.teacher, 'prepare.teacher');
    const parts = shards.map((s) => ({ dir: s.dir, rows: JSON.parse(readFileSync(join(s.dir, 'rows.json'), 'utf8')) as ShardRows }));
    const index = parts.flatMap((p) => p.rows.index);
    const attributes = parts.flatMap((p) => p.rows.attributes);
    const rejects = [...listing.rejects, ...parts.flatMap((p) => p.rows.rejects)];
    const n = index.length;
    const images = parts.reduce((t, p) => t + p.rows.images, 0);
    if (n === 0) throw new InvalidInputError(`field 'prepare.source': no usable face in ${images} images`, { field: 'prepare.source' });
    const gather = (name: string, width: number): Uint8Array | Float32Array => {
      const pieces = parts.map((p) => readTensorFile(join(p.dir, name)).values as Uint8Array | Float32Array);
      const out = pieces[0] instanceof Uint8Array ? new Uint8Array(n * width) : new Float32Array(n * width);
      let offset = 0;
      for (const piece of pieces) {
        out.set(piece, offset);
        offset += piece.length;
      }
      return out;
    };

    const outputs: Record<string, string> = {};
    for (const size of config.sizes) {
      outputs[`crops${size}`] = writeTensorFile(
        join(dir, `crops-${size}`),
        'uint8',
        [n, size, size, 3],
        gather(`crops-${size}`, size * size * 3) as Uint8Array,
        {
          what: 'ArcFace-aligned RGB crops',
        },
      );
      outputs[`crops${size}Data`] = join(dir, `crops-${size}.bin`);
    }
    const emb = gather('embeddings', teacher.dim) as Float32Array;
    outputs.embeddings = writeTensorFile(join(dir, 'embeddings'), 'float32', [n, teacher.dim], emb, {
      teacher: teacher.name,
      what: 'unit teacher embeddings y',
    });
    outputs.embeddingsData = join(dir, 'embeddings.bin');
    outputs.attributes = writeTensorFile(join(dir, 'attributes'), 'float32', [n, 4], Float32Array.from(attributes.flat()), {
      columns: ATTRIBUTE_NAMES,
      units: 'years, degrees',
    });
    outputs.attributesData = join(dir, 'attributes.bin');
    outputs.attributesScaled = writeTensorFile(
      join(dir, 'attributes-scaled'),
      'float32',
      [n, 4],
      Float32Array.from(attributes.flatMap(scaleAttributes)),
      {
        columns: ATTRIBUTE_NAMES,
        scaling: ATTRIBUTE_SCALING,
      },
    );
    outputs.attributesScaledData = join(dir, 'attributes-scaled.bin');
    outputs.index = join(dir, 'index.json');
    writeJsonAtomic(outputs.index, { rows: index });
    outputs.rejects = join(dir, 'rejects.json');
    writeJsonAtomic(outputs.rejects, { rejects });
    for (const [c, name] of ATTRIBUTE_NAMES.entries()) {
      const values = attributes.map((a) => a[c]);
      const [lo, hi] = name === 'age' ? [0, 100] : [-90, 90];
      const png = await svgToPng(
        histogramSvg({
          title: `prepare: ${name} of ${n} accepted faces`,
          xLabel: name === 'age' ? 'age (years)' : `${name} (degrees)`,
          edges: binEdges(lo, hi, 36),
          series: [{ label: name, color: '#1f77b4', counts: histogram(values, lo, hi, 36) }],
        }),
      );
      outputs[`hist_${name}`] = join(dir, `hist-${name}.png`);
      writeFileAtomic(outputs[`hist_${name}`], png);
    }
    const mean = (c: number) => attributes.reduce((s, a) => s + a[c], 0) / n;
    const separation = identitySeparation(
      emb,
      teacher.dim,
      index.map((r) => r.label),
    );
    const truthYaw = index.map((r) => r.labels?.yaw);
    const shardSeconds = parts.reduce((t, p) => t + p.rows.seconds, 0);
    return {
      outputs,
      metrics: {
        images: images + listing.rejects.length,
        accepted: n,
        rejected: rejects.length,
        centreCropFallbacks: parts.reduce((t, p) => t + p.rows.fallbacks, 0),
        shards: shards.length,
        // Per process: images over the time the shards spent on them (workers add up).
        imagesPerSecond: images / shardSeconds,
        meanAge: mean(0),
        meanAbsYaw: attributes.reduce((s, a) => s + Math.abs(a[2]), 0) / n,
        ...separation,
        ...(truthYaw.every((v) => v !== undefined)
          ? {
              yawCorrelationWithTruth: correlation(
                attributes.map((a) => a[2]),
                truthYaw as number[],
              ),
            }
          : {}),
      },
    };
  },
};

function concat<T extends Uint8Array | Float32Array>(rows: readonly T[], total: number): T {
  const out = (rows[0] instanceof Float32Array || rows.length === 0 ? new Float32Array(total) : new Uint8Array(total)) as T;
  let offset = 0;
  for (const r of rows) {
    out.set(r, offset);
    offset += r.length;
  }
  return out;
}

/**
 * How well the teacher separates labelled identities: mean cosine of same- and
 * different-identity pairs and leave-one-out rank-1 identification. Empty without labels.
 */
export function identitySeparation(emb: Float32Array, dim: number, labels: readonly (number | undefined)[]): Record<string, number> {
  if (labels.some((l) => l === undefined) || new Set(labels).size < 2) return {};
  const n = labels.length;
  let same = 0;
  let sameN = 0;
  let diff = 0;
  let diffN = 0;
  let rank1 = 0;
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    let bestLabel: number | undefined;
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      let c = 0;
      for (let k = 0; k < dim; k++) c += emb[i * dim + k] * emb[j * dim + k];
      if (labels[i] === labels[j]) {
        same += c;
        sameN++;
      } else {
        diff += c;
        diffN++;
      }
      if (c > best) {
        best = c;
        bestLabel = labels[j];
      }
    }
    if (bestLabel === labels[i]) rank1++;
  }
  return { teacherSameIdentityCos: same / sameN, teacherDifferentIdentityCos: diff / diffN, teacherRank1: rank1 / n };
}

export function correlation(a: readonly number[], b: readonly number[]): number {
  const n = a.length;
  const ma = a.reduce((s, v) => s + v, 0) / n;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
