import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  binEdges,
  histogram,
  histogramSvg,
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
import { DEFAULT_EMBEDDER, embedderNames, loadEmbedder, unknownEmbedderMessage } from './models/embedders';
import { embedImage } from './models/face-embedder';
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
export function scaleAttributes([age, pitch, yaw, roll]: readonly number[]): number[] {
  return [age / 50 - 1, pitch / 90, yaw / 90, roll / 90];
}

interface Entry {
  readonly path: string;
  readonly label?: number;
  readonly labels?: Record<string, number>;
}

export function resolveSourcePath(path: string): string {
  return path.startsWith('data:') ? join(dataDir(), path.slice('data:'.length)) : resolve(path);
}

async function listSource(config: PrepareConfig, dir: string): Promise<{ entries: Entry[]; rejects: { path: string; reason: string }[] }> {
  const source = config.source;
  if (source.kind === 'procedural') {
    const root = join(dir, 'source');
    const { labelsPath } = await writeProceduralFaces(root, {
      identities: source.identities,
      perIdentity: source.perIdentity,
      size: source.size,
      seed: config.seed,
    });
    const truth = JSON.parse(readFileSync(labelsPath, 'utf8')) as {
      images: { path: string; identity: number; attributes: { yaw: number; pitch: number; roll: number; age: number } }[];
    };
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

export const prepareStage: StageDefinition<typeof prepareConfigSchema> = {
  name: 'prepare',
  version: 1,
  schema: prepareConfigSchema,
  async run({ config, dir, progress }) {
    let listing;
    try {
      listing = await listSource(config, dir);
    } catch (err) {
      throw new InvalidInputError(`field 'prepare.source.path': ${(err as Error).message}`, { field: 'prepare.source.path' });
    }
    const entries = config.limit ? listing.entries.slice(0, config.limit) : listing.entries;
    progress({ phase: 'list', message: `${entries.length} images (${listing.rejects.length} file names refused)` });
    const rejects = [...listing.rejects];
    const teacher = await loadEmbedder(config.teacher, 'prepare.teacher');
    const crops = config.sizes.map(() => [] as Uint8Array[]);
    const embeddings: Float32Array[] = [];
    const attributes: number[][] = [];
    const index: { path: string; sha256: string; method: string; label?: number; labels?: Record<string, number> }[] = [];
    const started = Date.now();
    let fallbacks = 0;
    for (const [i, entry] of entries.entries()) {
      let image: RgbImage;
      let bytes: Buffer;
      try {
        bytes = readFileSync(entry.path); // read once: decoded here, hashed for the index below
        image = await decodeImageBytes(bytes, entry.path);
      } catch (err) {
        rejects.push({ path: entry.path, reason: (err as Error).message });
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
      progress({ phase: 'align', step: i + 1, total: entries.length, metrics: { accepted: index.length, rejected: rejects.length } });
    }
    const seconds = (Date.now() - started) / 1000;
    const n = index.length;
    if (n === 0)
      throw new InvalidInputError(`field 'prepare.source': no usable face in ${entries.length} images`, { field: 'prepare.source' });

    const outputs: Record<string, string> = {};
    for (const [k, size] of config.sizes.entries()) {
      const flat = new Uint8Array(n * size * size * 3);
      crops[k].forEach((c, r) => flat.set(c, r * size * size * 3));
      outputs[`crops${size}`] = writeTensorFile(join(dir, `crops-${size}`), 'uint8', [n, size, size, 3], flat, {
        what: 'ArcFace-aligned RGB crops',
      });
      outputs[`crops${size}Data`] = join(dir, `crops-${size}.bin`);
    }
    const emb = new Float32Array(n * teacher.dim);
    embeddings.forEach((e, r) => emb.set(e, r * teacher.dim));
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
        scaling: 'age/50-1, angles/90',
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
    return {
      outputs,
      metrics: {
        images: entries.length + listing.rejects.length,
        accepted: n,
        rejected: rejects.length,
        centreCropFallbacks: fallbacks,
        imagesPerSecond: entries.length / seconds,
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
