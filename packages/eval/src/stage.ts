import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  readTensorFile,
  sha256,
  svgToPng,
  writeFileAtomic,
  writeJsonAtomic,
  writeTensorFile,
  type StageDefinition,
} from '@id3/core';
import {
  alignForEmbedder,
  decodeImageBytes,
  detectAndAlign,
  embedImage,
  embedderNames,
  headPoseFrom68,
  loadEmbedder,
  readCfpPairs,
  readInsightfaceBin,
  readLfwPairs,
  resolveSourcePath,
  resizeImage,
  type AlignResult,
  type FaceEmbedder,
  type RgbImage,
} from '@id3/faces';
import { loadTrainedEmbedder } from '@id3/fr-train';
import { CropCache, EmbeddingCache } from './embedding-cache';
import { poseBinnedAccuracy, yawDifferences, type PoseBinnedAccuracy } from './pose-bins';
import { PAPER_BENCHMARKS, paperTable, rocSvg, scoreHistogramSvg, type PaperBenchmark } from './report';
import { evaluateDistances, pairCorrectness, pairDistances, type VerificationOptions, type VerificationResult } from './verification';

const benchmarkSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('lfw'),
      name: z.string().default('LFW'),
      pairs: z.string().default('data:lfw/pairs.txt'),
      images: z.string().default('data:lfw/lfw-deepfunneled'),
      folds: z.number().int().min(2).max(10).optional(),
    })
    .strict(),
  z
    .object({ kind: z.literal('cfp'), name: z.string().default('CFP-FP'), root: z.string(), split: z.enum(['FP', 'FF']).default('FP') })
    .strict(),
  /** insightface verification .bin (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin). */
  z.object({ kind: z.literal('bin'), name: z.string(), path: z.string(), folds: z.number().int().min(2).default(10) }).strict(),
]);

/** The eval config's name for the recognizer the run's fr-train stage produced. */
export const TRAINED_MODEL = 'stage:fr-train';

/** The model under test, loaded: a registered teacher or the run's trained recognizer. */
async function loadModel(config: EvalConfig, inputs: Readonly<Record<string, string>>): Promise<FaceEmbedder & { dispose?(): void }> {
  if (config.model === TRAINED_MODEL) return loadTrainedEmbedder(inputs.model);
  return loadEmbedder(config.model.slice('teacher:'.length), 'eval.model');
}

/**
 * The crop `model` expects, cut exactly as its training images were: the ArcFace crop (the
 * detector's 112 alignment) resized to its input size — what prepare stores — or, for a dlib-chip
 * network, the chip from the landmarks.
 */
async function cropFor(model: FaceEmbedder, image: RgbImage, found: AlignResult & { ok: true }): Promise<RgbImage> {
  if (model.alignment !== 'arcface' || model.inputSize === found.image.width) return alignForEmbedder(image, found, model);
  return resizeImage(found.image, model.inputSize, model.inputSize);
}

export const evalConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /**
     * The model under test: `teacher:<registered face embedder>` (a pretrained network) or
     * `stage:fr-train` (the recognizer this run trained).
     */
    model: z
      .string()
      .default('teacher:faceapi-dlib-128')
      .refine(
        (m) => m === TRAINED_MODEL || (m.startsWith('teacher:') && embedderNames().includes(m.slice('teacher:'.length))),
        (m) => ({
          message: `unknown model '${m}' (known: ${[...embedderNames().map((n) => `teacher:${n}`), TRAINED_MODEL].join(', ')})`,
        }),
      ),
    benchmarks: z.array(benchmarkSchema).nonempty(),
    detector: z.enum(['tiny', 'ssd']).default('tiny'),
    /**
     * Embedding and crop cache (by model or crop layout, and image hash); default: ID3_CACHE_DIR
     * (which a worker sets to `.id3/cache/eval`, shared by every run on the machine) or the stage directory.
     */
    cacheDir: z.string().optional(),
    /** Pairs per shard: a shard is the unit a worker takes and a killed worker loses. */
    pairsPerShard: z.number().int().positive().default(500),
  })
  .strict();
export type EvalConfig = z.output<typeof evalConfigSchema>;

/** One side of a pair: an image file, or an image inside a .bin. */
type ImageRef = { path: string } | { bytes: Buffer; source: string };

interface LoadedBenchmark {
  readonly name: string;
  readonly a: ImageRef[];
  readonly b: ImageRef[];
  readonly issame: boolean[];
  readonly foldOf?: number[];
  /** Pre-aligned crops (insightface .bin): the ArcFace layout fills the image. */
  readonly fallbackFraction: number;
}

function loadBenchmark(spec: z.output<typeof benchmarkSchema>): LoadedBenchmark {
  if (spec.kind === 'lfw') {
    const list = readLfwPairs(resolveSourcePath(spec.pairs), resolveSourcePath(spec.images));
    const pairs = list.pairs.filter((p) => spec.folds === undefined || p.fold < spec.folds);
    return {
      name: spec.name,
      a: pairs.map((p) => ({ path: p.a })),
      b: pairs.map((p) => ({ path: p.b })),
      issame: pairs.map((p) => p.same),
      foldOf: pairs.map((p) => p.fold),
      fallbackFraction: 0.5,
    };
  }
  if (spec.kind === 'cfp') {
    const list = readCfpPairs(resolveSourcePath(spec.root), spec.split);
    return {
      name: spec.name,
      a: list.pairs.map((p) => ({ path: p.a })),
      b: list.pairs.map((p) => ({ path: p.b })),
      issame: list.pairs.map((p) => p.same),
      foldOf: list.pairs.map((p) => p.fold),
      fallbackFraction: 0.5,
    };
  }
  const path = resolveSourcePath(spec.path);
  const bin = readInsightfaceBin(path);
  const ref = (i: number): ImageRef => ({ bytes: bin.images[i], source: `${path}[${i}]` });
  return {
    name: spec.name,
    a: bin.issame.map((_, i) => ref(2 * i)),
    b: bin.issame.map((_, i) => ref(2 * i + 1)),
    issame: [...bin.issame],
    ...(bin.issame.length >= spec.folds ? {} : { foldOf: bin.issame.map((_, i) => i % 2) }),
    fallbackFraction: 1,
  };
}

interface EmbedCounters {
  fallbacks: number;
  computed: number;
  cached: number;
  /** Computed images whose crop needed the detector (the rest came from the crop cache). */
  detected: number;
}

/**
 * Detect, cut the crop the model was trained on, embed image + flip, and read the head yaw from
 * the same detection's 68 landmarks as prepare does (null for a centre-crop fallback: no
 * landmarks); the embedding and yaw cached by image bytes per model, the crop and yaw per crop
 * layout (so another model with the same layout needs no detector).
 */
async function embedRef(
  ref: ImageRef,
  model: FaceEmbedder,
  caches: { embeddings: EmbeddingCache; crops: CropCache },
  o: { detector: 'tiny' | 'ssd'; fallbackFraction: number },
  counters: EmbedCounters,
): Promise<{ embedding: Float32Array; yaw: number | null }> {
  // Key on the file's bytes (plus what changes the crop), so a cache hit decodes nothing.
  const source = 'bytes' in ref ? ref.source : ref.path;
  let bytes: Buffer;
  try {
    bytes = 'bytes' in ref ? ref.bytes : readFileSync(ref.path);
  } catch (err) {
    throw new InvalidInputError(`cannot read image ${source}: ${(err as Error).message}`, { file: source });
  }
  const hash = sha256(Buffer.concat([Buffer.from(`${o.detector}:${o.fallbackFraction}:`), bytes]));
  const hit = caches.embeddings.get(hash, model.dim);
  const cachedYaw = caches.embeddings.getYaw(hash);
  // An entry from before yaw was recorded is a miss: the detection it needs gives both.
  if (hit && cachedYaw !== undefined) {
    counters.cached++;
    return { embedding: hit, yaw: cachedYaw };
  }
  let entry = caches.crops.get(hash, model.inputSize);
  if (!entry) {
    const image: RgbImage = await decodeImageBytes(bytes, source);
    const found = await detectAndAlign(image, { detector: o.detector, fallback: 'center-crop', fallbackFraction: o.fallbackFraction });
    if (!found.ok) throw new Error(`${source}: ${found.reason}`);
    const yaw = found.method === 'landmarks' && found.landmarks68 ? headPoseFrom68(found.landmarks68).yaw : null;
    entry = { crop: await cropFor(model, image, found), yaw, fallback: found.method === 'center-crop' };
    caches.crops.set(hash, entry);
    counters.detected++;
  }
  if (entry.fallback) counters.fallbacks++;
  const v = await embedImage(model, entry.crop);
  caches.embeddings.set(hash, v);
  caches.embeddings.setYaw(hash, entry.yaw);
  counters.computed++;
  return { embedding: v, yaw: entry.yaw };
}

/**
 * `pairs-<key>.json`: the protocol's outcome for every pair, in benchmark order, so two models
 * scored on the same pairs can be compared with a paired test (McNemar on `correct`).
 */
export interface PairResults {
  readonly benchmark: string;
  readonly pairs: number;
  /** Fold of each pair (the benchmark's own folds, or contiguous KFold). */
  readonly folds: number[];
  readonly issame: boolean[];
  /** Squared L2 distance between the normalised embeddings, rounded to 6 decimals. */
  readonly distance: number[];
  /** Threshold chosen for each fold on the other folds (pairs with distance < it are "same"). */
  readonly threshold: number[];
  /** Right under its fold's threshold; the mean over a fold is that fold's reported accuracy. */
  readonly correct: boolean[];
  /**
   * |yaw_a − yaw_b| in degrees (head pose from each image's 68 landmarks, as prepare measures
   * it), rounded to 0.01; null where either image had no landmarks (a centre-crop fallback).
   */
  readonly yawDifference: (number | null)[];
}

function pairResults(
  name: string,
  dist: Float64Array,
  issame: readonly boolean[],
  r: VerificationResult,
  o: VerificationOptions,
  yawDifference: (number | null)[],
): PairResults {
  // pairCorrectness refuses any mismatch with r.foldAccuracies, so the file cannot disagree with results.json.
  const { fold, correct } = pairCorrectness(dist, issame, r, o);
  return {
    benchmark: name,
    pairs: r.pairs,
    folds: fold,
    issame: [...issame],
    // `correct` is decided on the unrounded distances; the rounding only keeps the file small.
    distance: Array.from(dist, (d) => Number(d.toFixed(6))),
    threshold: [...r.thresholds],
    correct,
    yawDifference,
  };
}

/** Bin metric names: `0to10`, `10to20`, `20up`. */
const binName = (min: number, max: number): string => (max === Infinity ? `${min}up` : `${min}to${max}`);

/**
 * Metrics of the accuracy by yaw difference: the top quartile (`<key>_poseTopQuartileAccuracy`,
 * its pair count and smallest |Δyaw|) and each fixed bin; an empty group has no accuracy metric.
 */
function poseMetrics(key: string, p: PoseBinnedAccuracy): Record<string, number> {
  const m: Record<string, number> = {
    [`${key}_poseTopQuartilePairs`]: p.top.pairs,
    [`${key}_poseUnknownPairs`]: p.unknown,
  };
  if (p.top.accuracy !== null) {
    m[`${key}_poseTopQuartileAccuracy`] = p.top.accuracy;
    m[`${key}_poseTopQuartileMinYawDifference`] = p.top.min;
  }
  for (const b of p.bins) {
    m[`${key}_poseYaw${binName(b.min, b.max)}Pairs`] = b.pairs;
    if (b.accuracy !== null) m[`${key}_poseYaw${binName(b.min, b.max)}Accuracy`] = b.accuracy;
  }
  return m;
}

/** report.md's table of accuracy by yaw difference: accuracy (%) and pair count per group. */
function poseTable(poses: Readonly<Record<string, PoseBinnedAccuracy>>): string[] {
  const entries = Object.entries(poses);
  if (entries.length === 0) return [];
  const bins = entries[0][1].bins;
  const cell = (b: { accuracy: number | null; pairs: number }): string =>
    b.accuracy === null ? `— (0)` : `${(100 * b.accuracy).toFixed(2)} (${b.pairs})`;
  return [
    '## Accuracy by head-pose difference',
    '',
    "Pairs grouped by |yaw_a − yaw_b| (degrees, from each image's 68 landmarks); each cell: accuracy (%) of",
    "the per-pair outcomes under their fold's threshold (pairs). Top 25%: the pairs with the largest",
    'difference (from the value shown); pairs with an image without landmarks are in no group.',
    '',
    `| benchmark | top 25% | ${bins.map((b) => b.label).join(' | ')} | no yaw |`,
    `|---|---|${bins.map(() => '---|').join('')}---|`,
    ...entries.map(
      ([name, p]) =>
        `| ${name} | ${cell(p.top)}${p.top.accuracy === null ? '' : `, ≥ ${p.top.min.toFixed(1)}°`} | ${p.bins.map(cell).join(' | ')} | ${p.unknown} |`,
    ),
    '',
  ];
}

/** One field per line, each array on one line (~130 kB for 6,000 pairs; indented JSON would double it). */
function compactJson(value: object): string {
  const lines = Object.entries(value).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return `{\n${lines.join(',\n')}\n}\n`;
}

const benchmarkKey = (name: string): string => name.replace(/[^A-Za-z0-9]/g, '');

/** Shard ids: `<benchmark index>-<benchmark key>-<chunk>`, in benchmark then pair order. */
function shardIds(config: EvalConfig, pairCounts: readonly number[]): string[] {
  return pairCounts.flatMap((count, b) => {
    const chunks = Math.ceil(count / config.pairsPerShard);
    return Array.from(
      { length: chunks },
      (_, k) => `${b}-${benchmarkKey(config.benchmarks[b].name) || 'bench'}-${String(k).padStart(4, '0')}`,
    );
  });
}

function parseShardId(id: string): { benchmark: number; chunk: number } {
  const [b, , k] = id.split('-');
  return { benchmark: Number(b), chunk: Number(k) };
}

function loadBenchmarkNamed(spec: z.output<typeof benchmarkSchema>): LoadedBenchmark {
  try {
    return loadBenchmark(spec);
  } catch (err) {
    throw new InvalidInputError(`benchmark '${spec.name}': ${(err as Error).message}`, { field: 'eval.benchmarks' });
  }
}

/** Bump when the detector or the alignment changes: crops cached before are then not reused. */
const CROP_LAYOUT_VERSION = 1;

/**
 * Embeddings cached per model (a trained model by its weights' hash: a retrained one is another
 * model); crops per layout (alignment, side, template), shared by every model that takes them.
 */
function modelCaches(config: EvalConfig, dir: string, model: FaceEmbedder): { embeddings: EmbeddingCache; crops: CropCache } {
  const root = config.cacheDir ?? process.env.ID3_CACHE_DIR ?? join(dir, 'cache');
  const template = sha256(Buffer.from(JSON.stringify(model.inputTemplate))).slice(0, 12);
  return {
    embeddings: new EmbeddingCache(root, model.name.replace(/[^A-Za-z0-9._-]/g, '_')),
    // CROP_LAYOUT_VERSION: a change to detection or alignment makes the cached crops another layout.
    crops: new CropCache(root, `v${CROP_LAYOUT_VERSION}-${model.alignment}-${model.inputSize}-${template}`),
  };
}

/**
 * The `eval` stage: one model × a list of verification benchmarks → results.json, report.md (the
 * paper's table layout), an ROC plot over all benchmarks, and per benchmark a genuine/impostor
 * score histogram and the per-pair outcomes (pairs-<key>.json, for paired tests between models).
 */
export const evalStage: StageDefinition<typeof evalConfigSchema> = {
  name: 'eval',
  version: 4, // 3: per-pair results (pairs-<key>.json); 4: head yaw per image, accuracy by yaw difference
  schema: evalConfigSchema,
  upstream: ['fr-train'],
  reads: (config): Record<string, string[]> => (config.model === TRAINED_MODEL ? { 'fr-train': ['model'] } : {}),
  /**
   * Shards: chunks of `pairsPerShard` pairs of one benchmark. Each embeds its pairs (through the
   * embedding cache, so a killed shard resumes image by image) and writes them as one tensor file.
   */
  shards: {
    plan: ({ config }) =>
      shardIds(
        config,
        config.benchmarks.map((spec) => loadBenchmarkNamed(spec).issame.length),
      ),
    async run({ config, dir, inputs, shard, shardDir, progress }) {
      const { benchmark, chunk } = parseShardId(shard);
      const bench = loadBenchmarkNamed(config.benchmarks[benchmark]);
      const start = chunk * config.pairsPerShard;
      const end = Math.min(bench.issame.length, start + config.pairsPerShard);
      const model = await loadModel(config, inputs);
      const caches = modelCaches(config, dir, model);
      const counters: EmbedCounters = { fallbacks: 0, computed: 0, cached: 0, detected: 0 };
      const started = Date.now();
      const count = end - start;
      const rows = new Float32Array(2 * count * model.dim); // the a sides, then the b sides
      const yaw = { a: [] as (number | null)[], b: [] as (number | null)[] };
      const o = { detector: config.detector, fallbackFraction: bench.fallbackFraction };
      for (let i = 0; i < count; i++) {
        const a = await embedRef(bench.a[start + i], model, caches, o, counters);
        const b = await embedRef(bench.b[start + i], model, caches, o, counters);
        rows.set(a.embedding, i * model.dim);
        rows.set(b.embedding, (count + i) * model.dim);
        yaw.a.push(a.yaw);
        yaw.b.push(b.yaw);
        progress({
          phase: `embed ${bench.name}`,
          step: i + 1,
          total: count,
          metrics: { computed: counters.computed, cached: counters.cached },
        });
      }
      writeTensorFile(join(shardDir, 'embeddings'), 'float32', [2, count, model.dim], rows, {
        benchmark: bench.name,
        pairs: [start, end],
        model: model.name,
        yaw, // degrees per image of each side, null without landmarks
      });
      model.dispose?.();
      return {
        metrics: {
          pairs: count,
          computed: counters.computed,
          cached: counters.cached,
          detected: counters.detected,
          fallbacks: counters.fallbacks,
          computeMs: counters.computed ? Date.now() - started : 0,
        },
      };
    },
  },
  async run({ config, dir, shards }) {
    const results: Record<string, VerificationResult> = {};
    const metrics: Record<string, number> = {};
    const outputs: Record<string, string> = {};
    const curves: { label: string; result: VerificationResult }[] = [];
    const poses: Record<string, PoseBinnedAccuracy> = {};
    // Every shard holds [2, pairs, dim] embeddings of the same model.
    const dim = readTensorFile(join(shards[0].dir, 'embeddings')).header.shape[2];
    for (const [b, spec] of config.benchmarks.entries()) {
      const bench = loadBenchmarkNamed(spec);
      const own = shards.filter((s) => parseShardId(s.id).benchmark === b);
      const ea = new Float32Array(bench.issame.length * dim);
      const eb = new Float32Array(bench.issame.length * dim);
      const yawA: (number | null)[] = new Array<number | null>(bench.issame.length).fill(null);
      const yawB: (number | null)[] = new Array<number | null>(bench.issame.length).fill(null);
      for (const s of own) {
        const { header, values } = readTensorFile(join(s.dir, 'embeddings'));
        const meta = header.meta as { pairs: [number, number]; yaw?: { a: (number | null)[]; b: (number | null)[] } };
        const [start, end] = meta.pairs;
        const count = end - start;
        if (header.shape[2] !== dim || header.shape[1] !== count)
          throw new Error(`${s.dir}: shard embeddings [${header.shape.join(', ')}] do not match ${count} pairs of ${dim}-d`);
        if (meta.yaw?.a.length !== count || meta.yaw.b.length !== count)
          throw new Error(`${s.dir}: shard embeddings carry no yaw for their ${count} pairs (written by an older eval)`);
        ea.set(values.subarray(0, count * dim), start * dim);
        eb.set(values.subarray(count * dim), start * dim);
        meta.yaw.a.forEach((y, i) => (yawA[start + i] = y));
        meta.yaw.b.forEach((y, i) => (yawB[start + i] = y));
      }
      const options: VerificationOptions = bench.foldOf ? { foldOf: bench.foldOf } : {};
      const dist = pairDistances(ea, eb, dim);
      const r = evaluateDistances(dist, bench.issame, options);
      results[bench.name] = r;
      curves.push({ label: bench.name, result: r });
      const key = benchmarkKey(bench.name);
      const sum = (k: string): number => own.reduce((t, s) => t + (s.metrics[k] ?? 0), 0);
      const pairs = pairResults(bench.name, dist, bench.issame, r, options, yawDifferences(yawA, yawB));
      // Binned on the rounded differences the pairs file holds, so the file reproduces these numbers.
      const pose = poseBinnedAccuracy(pairs.yawDifference, pairs.correct);
      poses[bench.name] = pose;
      Object.assign(metrics, {
        [`${key}_accuracy`]: r.accuracy,
        [`${key}_accuracyStd`]: r.accuracyStd,
        [`${key}_tarAtFar1e3`]: r.tar,
        [`${key}_auc`]: r.auc,
        [`${key}_eer`]: r.eer,
        [`${key}_fallbacks`]: sum('fallbacks'),
        [`${key}_computedImages`]: sum('computed'),
        [`${key}_detectedImages`]: sum('detected'), // of those, cut by the detector (the rest: crop cache)
        [`${key}_msPerComputedImage`]: sum('computed') ? sum('computeMs') / sum('computed') : 0,
        ...poseMetrics(key, pose),
      });
      const hist = join(dir, `scores-${key}.png`);
      writeFileAtomic(
        hist,
        await svgToPng(
          scoreHistogramSvg(
            `${config.model} on ${bench.name}: genuine vs impostor`,
            dist,
            bench.issame,
            r.thresholds.reduce((s, t) => s + t, 0) / r.thresholds.length,
          ),
        ),
      );
      outputs[`scores_${key}`] = hist;
      const pairsFile = join(dir, `pairs-${key}.json`);
      writeFileAtomic(pairsFile, compactJson(pairs));
      outputs[`pairs_${key}`] = pairsFile;
    }
    metrics.shards = shards.length;
    const paper = Object.fromEntries(
      Object.entries(results).filter(([name]) => (PAPER_BENCHMARKS as readonly string[]).includes(name)),
    ) as Partial<Record<PaperBenchmark, VerificationResult>>;
    const others = Object.entries(results).filter(([name]) => !(PAPER_BENCHMARKS as readonly string[]).includes(name));
    const pct = (v: number) => (100 * v).toFixed(2);
    const md = [
      `# Verification report: ${config.model}`,
      '',
      paperTable([{ model: config.model, results: paper }]),
      '',
      '| benchmark | pairs | accuracy | TAR @ FAR=1e-3 | AUC | EER |',
      '|---|---|---|---|---|---|',
      ...Object.entries(results).map(
        ([name, r]) =>
          `| ${name} | ${r.pairs} | ${pct(r.accuracy)} ± ${pct(r.accuracyStd)} | ${pct(r.tar)} ± ${pct(r.tarStd)} | ${r.auc.toFixed(4)} | ${pct(r.eer)} |`,
      ),
      ...(others.length ? ['', `Not in the paper's table: ${others.map(([n]) => n).join(', ')}.`] : []),
      '',
      ...poseTable(poses),
    ].join('\n');
    outputs.report = join(dir, 'report.md');
    writeFileAtomic(outputs.report, md);
    outputs.results = join(dir, 'results.json');
    // Without the per-pair index list: pairs-<key>.json has every pair's yawDifference.
    const poseBins = Object.fromEntries(
      Object.entries(poses).map(([n, p]) => [n, { known: p.known, unknown: p.unknown, top: p.top, bins: p.bins }]),
    );
    writeJsonAtomic(outputs.results, { model: config.model, results, poseBins });
    outputs.roc = join(dir, 'roc.png');
    writeFileAtomic(outputs.roc, await svgToPng(rocSvg(`ROC: ${config.model}`, curves)));
    return { outputs, metrics };
  },
};
