import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { InvalidInputError, sha256, svgToPng, tf, writeFileAtomic, writeJsonAtomic, type StageDefinition } from '@id3/core';
import {
  decodeImageBytes, detectAndAlign, embedWithFlip, loadFaceApiTeacher, readCfpPairs, readInsightfaceBin, readLfwPairs,
  resolveSourcePath, type RgbImage, type TeacherEmbedder,
} from '@id3/faces';
import { EmbeddingCache } from './embedding-cache';
import { PAPER_BENCHMARKS, paperTable, rocSvg, scoreHistogramSvg, type PaperBenchmark } from './report';
import { evaluateVerification, pairDistances, type VerificationResult } from './verification';

const benchmarkSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('lfw'), name: z.string().default('LFW'), pairs: z.string().default('data:lfw/pairs.txt'), images: z.string().default('data:lfw/lfw-deepfunneled'), folds: z.number().int().min(2).max(10).optional() }).strict(),
  z.object({ kind: z.literal('cfp'), name: z.string().default('CFP-FP'), root: z.string(), split: z.enum(['FP', 'FF']).default('FP') }).strict(),
  /** insightface verification .bin (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin). */
  z.object({ kind: z.literal('bin'), name: z.string(), path: z.string(), folds: z.number().int().min(2).default(10) }).strict(),
]);

export const evalConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /** The model under test. Until fr-train exists, the pretrained teacher. */
    model: z.literal('teacher:faceapi-dlib-128').default('teacher:faceapi-dlib-128'),
    benchmarks: z.array(benchmarkSchema).nonempty(),
    detector: z.enum(['tiny', 'ssd']).default('tiny'),
    /** Embedding cache (by model and image hash); default: ID3_CACHE_DIR or the stage directory. */
    cacheDir: z.string().optional(),
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
    return { name: spec.name, a: pairs.map((p) => ({ path: p.a })), b: pairs.map((p) => ({ path: p.b })), issame: pairs.map((p) => p.same), foldOf: pairs.map((p) => p.fold), fallbackFraction: 0.5 };
  }
  if (spec.kind === 'cfp') {
    const list = readCfpPairs(resolveSourcePath(spec.root), spec.split);
    return { name: spec.name, a: list.pairs.map((p) => ({ path: p.a })), b: list.pairs.map((p) => ({ path: p.b })), issame: list.pairs.map((p) => p.same), foldOf: list.pairs.map((p) => p.fold), fallbackFraction: 0.5 };
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

/** Detect, cut the teacher's dlib chip, embed image + flip (cached by image hash). */
async function embedRef(ref: ImageRef, teacher: TeacherEmbedder, cache: EmbeddingCache, o: { detector: 'tiny' | 'ssd'; fallbackFraction: number }, counters: { fallbacks: number; computed: number }): Promise<Float32Array> {
  // Key on the file's bytes (plus what changes the crop), so a cache hit decodes nothing.
  const source = 'bytes' in ref ? ref.source : ref.path;
  let bytes: Buffer;
  try {
    bytes = 'bytes' in ref ? ref.bytes : readFileSync(ref.path);
  } catch (err) {
    throw new InvalidInputError(`cannot read image ${source}: ${(err as Error).message}`, { file: source });
  }
  const hash = sha256(Buffer.concat([Buffer.from(`${o.detector}:${o.fallbackFraction}:`), bytes]));
  const hit = cache.get(hash, teacher.dim);
  if (hit) return hit;
  const image: RgbImage = await decodeImageBytes(bytes, source);
  const aligned = await detectAndAlign(image, { size: teacher.inputSize, template: 'dlib', padding: 0.25, detector: o.detector, fallback: 'center-crop', fallbackFraction: o.fallbackFraction });
  if (!aligned.ok) throw new Error(aligned.reason);
  if (aligned.method === 'center-crop') counters.fallbacks++;
  const e = tf.tidy(() => embedWithFlip(teacher, tf.tensor4d(Float32Array.from(aligned.image.data), [1, teacher.inputSize, teacher.inputSize, 3])));
  const v = (await e.data()) as Float32Array;
  e.dispose();
  cache.set(hash, v);
  counters.computed++;
  return v;
}

/**
 * The `eval` stage: one model × a list of verification benchmarks → results.json, report.md (the
 * paper's table layout), an ROC plot over all benchmarks and a genuine/impostor score histogram
 * per benchmark.
 */
export const evalStage: StageDefinition<typeof evalConfigSchema> = {
  name: 'eval',
  version: 1,
  schema: evalConfigSchema,
  async run({ config, dir, progress }) {
    const teacher = await loadFaceApiTeacher();
    const cache = new EmbeddingCache(config.cacheDir ?? process.env.ID3_CACHE_DIR ?? join(dir, 'cache'), config.model.replace(/[^A-Za-z0-9._-]/g, '_'));
    const results: Record<string, VerificationResult> = {};
    const metrics: Record<string, number> = {};
    const outputs: Record<string, string> = {};
    const curves: { label: string; result: VerificationResult }[] = [];
    for (const spec of config.benchmarks) {
      let bench: LoadedBenchmark;
      try {
        bench = loadBenchmark(spec);
      } catch (err) {
        throw new InvalidInputError(`benchmark '${spec.name}': ${(err as Error).message}`, { field: 'eval.benchmarks' });
      }
      const counters = { fallbacks: 0, computed: 0 };
      const started = Date.now();
      const dim = teacher.dim;
      const ea = new Float32Array(bench.issame.length * dim);
      const eb = new Float32Array(bench.issame.length * dim);
      for (let i = 0; i < bench.issame.length; i++) {
        ea.set(await embedRef(bench.a[i], teacher, cache, { detector: config.detector, fallbackFraction: bench.fallbackFraction }, counters), i * dim);
        eb.set(await embedRef(bench.b[i], teacher, cache, { detector: config.detector, fallbackFraction: bench.fallbackFraction }, counters), i * dim);
        progress({ phase: `embed ${bench.name}`, step: i + 1, total: bench.issame.length });
      }
      const r = evaluateVerification(ea, eb, dim, bench.issame, bench.foldOf ? { foldOf: bench.foldOf } : {});
      results[bench.name] = r;
      curves.push({ label: bench.name, result: r });
      const key = bench.name.replace(/[^A-Za-z0-9]/g, '');
      Object.assign(metrics, {
        [`${key}_accuracy`]: r.accuracy,
        [`${key}_accuracyStd`]: r.accuracyStd,
        [`${key}_tarAtFar1e3`]: r.tar,
        [`${key}_auc`]: r.auc,
        [`${key}_eer`]: r.eer,
        [`${key}_fallbacks`]: counters.fallbacks,
        [`${key}_msPerComputedImage`]: counters.computed ? (Date.now() - started) / counters.computed : 0,
      });
      const hist = join(dir, `scores-${key}.png`);
      writeFileAtomic(hist, await svgToPng(scoreHistogramSvg(`${config.model} on ${bench.name}: genuine vs impostor`, pairDistances(ea, eb, dim), bench.issame, r.thresholds.reduce((s, t) => s + t, 0) / r.thresholds.length)));
      outputs[`scores_${key}`] = hist;
    }
    const paper = Object.fromEntries(Object.entries(results).filter(([name]) => (PAPER_BENCHMARKS as readonly string[]).includes(name))) as Partial<Record<PaperBenchmark, VerificationResult>>;
    const others = Object.entries(results).filter(([name]) => !(PAPER_BENCHMARKS as readonly string[]).includes(name));
    const pct = (v: number) => (100 * v).toFixed(2);
    const md = [
      `# Verification report: ${config.model}`,
      '',
      paperTable([{ model: config.model, results: paper }]),
      '',
      '| benchmark | pairs | accuracy | TAR @ FAR=1e-3 | AUC | EER |',
      '|---|---|---|---|---|---|',
      ...Object.entries(results).map(([name, r]) => `| ${name} | ${r.pairs} | ${pct(r.accuracy)} ± ${pct(r.accuracyStd)} | ${pct(r.tar)} ± ${pct(r.tarStd)} | ${r.auc.toFixed(4)} | ${pct(r.eer)} |`),
      ...(others.length ? ['', `Not in the paper's table: ${others.map(([n]) => n).join(', ')}.`] : []),
      '',
    ].join('\n');
    outputs.report = join(dir, 'report.md');
    writeFileAtomic(outputs.report, md);
    outputs.results = join(dir, 'results.json');
    writeJsonAtomic(outputs.results, { model: config.model, results });
    outputs.roc = join(dir, 'roc.png');
    writeFileAtomic(outputs.roc, await svgToPng(rocSvg(`ROC: ${config.model}`, curves)));
    return { outputs, metrics };
  },
};
