/**
 * The number that proves the face pipeline works: a pretrained teacher on the full LFW View 2
 * protocol (6,000 pairs of ../shared/data/lfw), through id3's own detection, 5-point alignment,
 * flip-summed embeddings and the insightface verification protocol.
 *
 *   npm run bench:lfw -- [--teacher NAME] [--folds 10] [--template dlib|arcface] [--padding P] [--detector tiny|ssd] [--workers 2] [--write-calibration]
 *
 * `--teacher` is a face embedder's registry name (faceapi-dlib-128, mobileface-256, …; the short
 * `faceapi` and `mobileface` still work); the crop and its padding default to the registry's.
 *
 * Images are processed by `--workers` child processes (tfjs-wasm is single-threaded); embeddings
 * are cached by model key and image hash in .id3/cache/embeddings, so a re-run is instant.
 *
 * `--write-calibration` (full protocol only) also records the teacher's same-person cosine
 * threshold at FAR = 1e-3 over all different-person pairs in packages/faces/src/models/
 * teacher-calibration.json (read by `teacherCalibration(name)`; the sampler's leakage default).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, sha256, tf } from '@id3/core';
import { EmbeddingCache, evaluateDistances, pairDistances } from '@id3/eval';
import {
  alignForEmbedder,
  decodeImage,
  detectAndAlign,
  embedImage,
  embedderInfo,
  loadEmbedder,
  readLfwPairs,
  requireDataPath,
  thresholdAtFar,
  type DetectorName,
  type EmbedderEntry,
  type TeacherCalibration,
} from '@id3/faces';

const ROOT = resolve(__dirname, '../..');
const { values } = parseArgs({
  options: {
    folds: { type: 'string', default: '10' },
    padding: { type: 'string' },
    detector: { type: 'string', default: 'tiny' },
    template: { type: 'string' },
    teacher: { type: 'string', default: 'faceapi-dlib-128' },
    workers: { type: 'string', default: '2' },
    worker: { type: 'string' },
    'paths-file': { type: 'string' },
    'write-calibration': { type: 'boolean', default: false },
  },
});
const CALIBRATION_FILE = join(ROOT, 'packages', 'faces', 'src', 'models', 'teacher-calibration.json');
const CALIBRATION_FAR = 1e-3;
const SHORT_NAMES: Readonly<Record<string, string>> = { faceapi: 'faceapi-dlib-128', mobileface: 'mobileface-256' };
const teacherName = SHORT_NAMES[values.teacher!] ?? values.teacher!;
const entry = embedderInfo(teacherName, '--teacher');
const detector = values.detector as DetectorName;
// Each network on the crop it was trained on (the registry's), unless --template/--padding say otherwise.
const template = (values.template ?? (entry.alignment === 'dlib-chip' ? 'dlib' : 'arcface')) as 'dlib' | 'arcface';
const padding = Number(values.padding ?? entry.padding);
const crop: EmbedderEntry = { ...entry, alignment: template === 'dlib' ? 'dlib-chip' : 'arcface', padding };
const modelKey = `${teacherName}_${detector}-ssd-border_${template}_pad${padding}_flip`;
const cache = new EmbeddingCache(join(ROOT, '.id3', 'cache', 'embeddings'), modelKey);

async function workerMain(index: number, count: number, pathsFile: string): Promise<void> {
  await initBackend('wasm', () => undefined);
  const teacher = await loadEmbedder(teacherName, '--teacher');
  const paths = (JSON.parse(readFileSync(pathsFile, 'utf8')) as string[]).filter((_, i) => i % count === index);
  const stats = { images: 0, cached: 0, fallback: 0, msAlign: 0, msEmbed: 0, msDecode: 0 };
  const fallbacks: string[] = [];
  for (const path of paths) {
    const hash = sha256(readFileSync(path));
    stats.images++;
    if (cache.get(hash, teacher.dim)) {
      stats.cached++;
      continue;
    }
    let t = performance.now();
    const img = await decodeImage(path);
    stats.msDecode += performance.now() - t;
    t = performance.now();
    const found = await detectAndAlign(img, { detector });
    if (!found.ok) throw new Error(`${path}: ${found.reason}`);
    const chip = alignForEmbedder(img, found, crop);
    stats.msAlign += performance.now() - t;
    if (found.method !== 'landmarks') {
      stats.fallback++;
      fallbacks.push(path);
    }
    t = performance.now();
    cache.set(hash, await embedImage(teacher, chip));
    stats.msEmbed += performance.now() - t;
    if (stats.images % 200 === 0) process.stderr.write(`worker ${index}: ${stats.images}/${paths.length}\n`);
  }
  process.stdout.write(`${JSON.stringify({ ...stats, fallbacks, tensors: tf.memory().numTensors })}\n`);
}

async function main(): Promise<void> {
  const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
  const folds = Number(values.folds);
  const pairs = list.pairs.filter((p) => p.fold < folds);
  // The committed threshold must come from the whole protocol and the teacher's own crop.
  if (values['write-calibration'] && (pairs.length !== list.pairs.length || values.template || values.padding || detector !== 'tiny')) {
    throw new Error('--write-calibration needs the full protocol (all folds) with the registry crop and the default detector');
  }
  const unique = [...new Set(pairs.flatMap((p) => [p.a, p.b]))].sort();
  const workers = Number(values.workers);
  const tmp = join(ROOT, 'bench', 'results');
  mkdirSync(tmp, { recursive: true });
  const pathsFile = join(tmp, 'lfw-paths.json');
  writeFileSync(pathsFile, JSON.stringify(unique));
  process.stderr.write(`${pairs.length} pairs, ${unique.length} images, ${workers} workers, model ${modelKey}\n`);
  const t0 = Date.now();
  const results = await Promise.all(
    Array.from(
      { length: workers },
      (_, i) =>
        new Promise<Record<string, number> & { fallbacks: string[] }>((resolveWorker, reject) => {
          const child = spawn(
            process.execPath,
            [
              '--import',
              'tsx',
              __filename,
              '--worker',
              `${i}/${workers}`,
              '--paths-file',
              pathsFile,
              '--padding',
              String(padding),
              '--detector',
              detector,
              '--template',
              template,
              '--teacher',
              teacherName,
            ],
            {
              cwd: ROOT,
              stdio: ['ignore', 'pipe', 'inherit'],
            },
          );
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.on('close', (code) =>
            code === 0 ? resolveWorker(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`worker ${i} exited ${code}`)),
          );
        }),
    ),
  );
  const wallSeconds = (Date.now() - t0) / 1000;
  const dim = entry.dim;
  const embed = (p: string) => cache.get(sha256(readFileSync(p)), dim)!;
  const a = new Float32Array(pairs.length * dim);
  const b = new Float32Array(pairs.length * dim);
  pairs.forEach((p, i) => {
    a.set(embed(p.a), i * dim);
    b.set(embed(p.b), i * dim);
  });
  const dist = pairDistances(a, b, dim);
  const issame = pairs.map((p) => p.same);
  const r = evaluateDistances(dist, issame, { foldOf: pairs.map((p) => p.fold) });
  const sum = (k: string) => results.reduce((s, w) => s + (w[k] as number), 0);
  const computed = sum('images') - sum('cached');
  const summary = {
    model: modelKey,
    pairs: pairs.length,
    folds: r.folds,
    images: unique.length,
    accuracy: r.accuracy,
    accuracyStd: r.accuracyStd,
    tarAtFar1e3: r.tar,
    tarStd: r.tarStd,
    auc: r.auc,
    eer: r.eer,
    thresholds: r.thresholds,
    fallbackCenterCrops: sum('fallback'),
    computedImages: computed,
    msPerImage: computed
      ? { decode: sum('msDecode') / computed, detectAlign: sum('msAlign') / computed, embedWithFlip: sum('msEmbed') / computed }
      : undefined,
    wallSeconds,
    workers,
  };
  writeFileSync(join(tmp, `lfw-${modelKey}-${folds}folds.json`), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(JSON.stringify(summary, null, 2));
  if (values['write-calibration']) writeCalibration(dist, issame, r.accuracy, r.accuracyStd);
}

/** Merge this teacher's FAR = 1e-3 cosine threshold into the committed calibration file. */
function writeCalibration(dist: Float64Array, issame: readonly boolean[], accuracy: number, accuracyStd: number): void {
  // Unit vectors: squared L2 d = 2 − 2·cos.
  const cosines = Array.from(dist, (d) => 1 - d / 2);
  const t = thresholdAtFar(
    cosines.filter((_, i) => !issame[i]),
    cosines.filter((_, i) => issame[i]),
    CALIBRATION_FAR,
  );
  const calibration: TeacherCalibration = {
    benchmark: 'LFW View 2 (pairs.txt, lfw-deepfunneled)',
    model: modelKey,
    farTarget: CALIBRATION_FAR,
    cosine: t.cosine,
    squaredL2: 2 - 2 * t.cosine,
    falseAccepts: t.falseAccepts,
    far: t.far,
    tar: t.tar,
    samePairs: t.positives,
    differentPairs: t.negatives,
    bracket: t.bracket,
    accuracy,
    accuracyStd,
    date: new Date().toISOString(),
    command: ['npm run bench:lfw --', ...process.argv.slice(2)].join(' '),
    note: `coarse: FAR ${CALIBRATION_FAR} over ${t.negatives} different-person pairs is ${t.falseAccepts} false accepts; the threshold sits halfway between impostor cosines number ${t.falseAccepts} and ${t.falseAccepts + 1} from the top (bracket), so it moves with any single pair`,
  };
  const all = existsSync(CALIBRATION_FILE)
    ? (JSON.parse(readFileSync(CALIBRATION_FILE, 'utf8')) as Record<string, TeacherCalibration>)
    : {};
  all[teacherName] = calibration;
  writeFileSync(CALIBRATION_FILE, `${JSON.stringify(all, null, 2)}\n`);
  console.log(
    `calibration for ${teacherName} written to ${CALIBRATION_FILE}: cosine ${t.cosine.toFixed(4)} at FAR ${t.far} (TAR ${t.tar.toFixed(4)})`,
  );
}

if (values.worker) {
  const [i, n] = values.worker.split('/').map(Number);
  workerMain(i, n, values['paths-file']!).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
