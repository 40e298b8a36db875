/**
 * Issue 9 §1's report: do the identity embeddings handed to the generator look like real people?
 * From a run with `prepare` and `identity-space` completed (and, when present, the pipeline's own
 * `anchors` + `identities` in the whitened space), for the teacher's raw space and the two
 * designs —
 *   (a) everything in the whitened identity space z = normalize(W·(f − μ)), metrics in z;
 *   (b) Tammes anchors and the [lb, ub] band in z, mapped back onto the teacher's sphere,
 *       metrics in the teacher's native cosine —
 * it compares three statistics of synthetic identities with the same statistics of the real
 * training faces (the identity space's fit rows, through the f(x̂0) path):
 *   1. cos to the nearest real training face  vs  a real face's cos to its nearest face of another person;
 *   2. cos between different synthetic identities  vs  between different real people;
 *   3. cos between two embeddings of one synthetic identity  vs  two photos of one real person.
 * Writes <out>/report.md, results.json and histograms.png. LFW View 2 accuracy in each space is
 * computed from bench:lfw's embedding cache when it holds every LFW image (else: not measured).
 *
 *   npm run report:identity-space -- --run .id3/runs/identity-space-celeba [--n 2000] [--m 16] [--lb 0.7] [--ub 0.9] [--out docs/identity-space]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  fitIdentitySpace,
  fromWhitened,
  readIdentitySpace,
  sampleIdentities,
  tammesAnchors,
  toWhitened,
  type IdentitySpaceMap,
} from '@id3/anchors';
import {
  Rng,
  binEdges,
  gridSvg,
  histogram,
  histogramSvg,
  initBackend,
  readTensorFile,
  sha256,
  svgToPng,
  tf,
  type StageManifest,
} from '@id3/core';
import { EmbeddingCache, evaluateVerification } from '@id3/eval';
import { readLfwPairs, requireDataPath } from '@id3/faces';

const ROOT = resolve(__dirname, '../..');
const { values: args } = parseArgs({
  options: {
    run: { type: 'string' },
    out: { type: 'string', default: 'docs/identity-space' },
    n: { type: 'string', default: '2000' },
    m: { type: 'string', default: '16' },
    lb: { type: 'string', default: '0.7' },
    ub: { type: 'string', default: '0.9' },
    iterations: { type: 'string', default: '200' },
    sample: { type: 'string', default: '4000' },
    pairs: { type: 'string', default: '20000' },
    seed: { type: 'string', default: '0' },
    'lfw-cache-key': { type: 'string', default: 'faceapi-dlib-128_tiny-ssd-border_dlib_pad0.25_flip' },
  },
});

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

interface Summary {
  readonly count: number;
  readonly mean: number;
  readonly sd: number;
  readonly p5: number;
  readonly p50: number;
  readonly p95: number;
}

function summarise(v: Float32Array | number[]): Summary {
  const s = Float64Array.from(v).sort();
  const n = s.length;
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  const q = (p: number): number => s[Math.min(n - 1, Math.floor(p * n))];
  return { count: n, mean, sd, p5: q(0.05), p50: q(0.5), p95: q(0.95) };
}

/** Rows of x ([n, d]) picked by index. */
function pickRows(x: Float32Array, d: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * d);
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(rows[i] * d, (rows[i] + 1) * d), i * d);
  return out;
}

/**
 * For each query row, the largest cosine to a base row, skipping base rows `skip(q, b)` says to
 * (self, same person). Block by block through matMul against the transposed base.
 */
function nearestCos(queries: Float32Array, base: Float32Array, d: number, skip?: (q: number, b: number) => boolean): Float32Array {
  const nq = queries.length / d;
  const nb = base.length / d;
  const out = new Float32Array(nq);
  const baseT = tf.tidy(() => tf.transpose(tf.tensor2d(base, [nb, d])));
  try {
    const block = 256;
    for (let s = 0; s < nq; s += block) {
      const r = Math.min(block, nq - s);
      const g = tf.tidy(() => tf.matMul(tf.tensor2d(queries.subarray(s * d, (s + r) * d), [r, d]), baseT));
      const cos = g.dataSync() as Float32Array;
      g.dispose();
      for (let i = 0; i < r; i++) {
        let best = -Infinity;
        for (let j = 0; j < nb; j++) {
          const c = cos[i * nb + j];
          if (c > best && !(skip && skip(s + i, j))) best = c;
        }
        out[s + i] = best;
      }
    }
  } finally {
    baseT.dispose();
  }
  return out;
}

const cosRows = (x: Float32Array, d: number, i: number, j: number): number => {
  let c = 0;
  for (let a = 0; a < d; a++) c += x[i * d + a] * x[j * d + a];
  return c;
};

/** Cosines of `pairs` random pairs (i, j) with `accept(i, j)` (rejection sampling over n rows). */
function randomPairs(
  x: Float32Array,
  d: number,
  n: number,
  pairs: number,
  rng: Rng,
  accept: (i: number, j: number) => boolean,
): Float32Array {
  const out = new Float32Array(pairs);
  for (let p = 0, tries = 0; p < pairs; tries++) {
    if (tries > pairs * 1000) throw new Error('randomPairs: acceptance too rare');
    const i = rng.int(n);
    const j = rng.int(n);
    if (i === j || !accept(i, j)) continue;
    out[p++] = cosRows(x, d, i, j);
  }
  return out;
}

/** Pairs within groups: each sample picks a group (weighted by its pair count) and two of its rows. */
function withinGroupPairs(x: Float32Array, d: number, groups: number[][], pairs: number, rng: Rng): Float32Array {
  const usable = groups.filter((g) => g.length >= 2);
  const weights = usable.map((g) => (g.length * (g.length - 1)) / 2);
  const total = weights.reduce((a, b) => a + b, 0);
  const out = new Float32Array(pairs);
  for (let p = 0; p < pairs; p++) {
    let u = rng.uniform() * total;
    let k = 0;
    while (k < usable.length - 1 && u >= weights[k]) u -= weights[k++];
    const g = usable[k];
    const a = rng.int(g.length);
    let b = rng.int(g.length - 1);
    if (b >= a) b++;
    out[p] = cosRows(x, d, g[a], g[b]);
  }
  return out;
}

interface Stats {
  readonly nearest: Float32Array;
  readonly nearestOther: Float32Array;
  readonly different: Float32Array;
  readonly same: Float32Array;
}
const KINDS = ['nearest', 'nearestOther', 'different', 'same'] as const;

/** The three statistics of synthetic embeddings y ([rows, d], rows i·m … i·m+m−1 = identity i) against real faces. */
function syntheticStats(y: Float32Array, d: number, m: number, real: Float32Array, o: { sample: number; pairs: number; rng: Rng }): Stats {
  const rows = y.length / d;
  const picked = Array.from({ length: Math.min(o.sample, rows) }, () => o.rng.int(rows));
  const queries = pickRows(y, d, picked);
  const nearest = nearestCos(queries, real, d);
  // Nearest embedding of another identity among as many synthetic rows as there are real faces
  // (the real reference's base), so both maxima are over bases of one size.
  const base = Array.from({ length: real.length / d }, () => o.rng.int(rows));
  const nearestOther = nearestCos(queries, pickRows(y, d, base), d, (q, b) => Math.floor(base[b] / m) === Math.floor(picked[q] / m));
  const different = randomPairs(y, d, rows, o.pairs, o.rng, (i, j) => Math.floor(i / m) !== Math.floor(j / m));
  const groups = Array.from({ length: Math.min(rows / m, 20000) }, () => {
    const id = o.rng.int(rows / m);
    return Array.from({ length: m }, (_, j) => id * m + j);
  });
  return { nearest, nearestOther, different, same: withinGroupPairs(y, d, groups, o.pairs, o.rng) };
}

/** The same statistics for real faces: nearest face of another person, different-person pairs, same-person pairs. */
function realStats(real: Float32Array, d: number, labels: number[], o: { sample: number; pairs: number; rng: Rng }) {
  const n = labels.length;
  const picked = Array.from({ length: Math.min(o.sample, n) }, () => o.rng.int(n));
  const q = pickRows(real, d, picked);
  const nearest = nearestCos(q, real, d, (qi, b) => labels[b] === labels[picked[qi]]);
  const nearestAny = nearestCos(q, real, d, (qi, b) => b === picked[qi]);
  const different = randomPairs(real, d, n, o.pairs, o.rng, (i, j) => labels[i] !== labels[j]);
  const byLabel = new Map<number, number[]>();
  labels.forEach((l, i) => byLabel.set(l, [...(byLabel.get(l) ?? []), i]));
  // A real person's nearest other person is both references: to the nearest real face and to the nearest other identity.
  return { nearest, nearestOther: nearest, nearestAny, different, same: withinGroupPairs(real, d, [...byLabel.values()], o.pairs, o.rng) };
}

/**
 * The real counterpart of the identities stage's separation check: how often a photo is nearer
 * its own person's centroid (the other photos' normalised sum) than every other person's.
 */
function ownCentroidNearest(real: Float32Array, d: number, labels: number[]) {
  const people = [...new Set(labels)];
  const index = new Map(people.map((l, i) => [l, i]));
  const sums = new Float64Array(people.length * d);
  const count = new Int32Array(people.length);
  labels.forEach((l, i) => {
    const j = index.get(l)!;
    count[j]++;
    for (let a = 0; a < d; a++) sums[j * d + a] += real[i * d + a];
  });
  let own = 0;
  let total = 0;
  let ownCos = 0;
  let otherCos = 0;
  labels.forEach((l, i) => {
    const j = index.get(l)!;
    if (count[j] < 2) return;
    let best = -Infinity;
    let mine = 0;
    for (let q = 0; q < people.length; q++) {
      let dot = 0;
      let norm = 0;
      for (let a = 0; a < d; a++) {
        const c = sums[q * d + a] - (q === j ? real[i * d + a] : 0); // leave the photo out of its own centroid
        dot += c * real[i * d + a];
        norm += c * c;
      }
      const cos = dot / Math.sqrt(norm);
      if (q === j) mine = cos;
      else if (cos > best) best = cos;
    }
    if (mine > best) own++;
    ownCos += mine;
    otherCos += best;
    total++;
  });
  return { fraction: own / total, ownCos: ownCos / total, nearestOtherCos: otherCos / total, photos: total };
}

/**
 * Whether a synthetic distribution passes against the real one: means within half a real standard
 * deviation; for the two separation statistics (different identities, nearest other identity)
 * lower is fine too — identities farther apart than real people are what Tammes is for.
 */
function verdict(kind: keyof Stats, real: Summary, synth: Summary): { pass: boolean; gapInSd: number } {
  const gap = (synth.mean - real.mean) / real.sd;
  return { pass: kind === 'different' || kind === 'nearestOther' ? gap <= 0.5 : Math.abs(gap) <= 0.5, gapInSd: gap };
}

/**
 * Design (b) for several k: how near real faces the placed identities land, and how near each
 * other (n anchors, m = 4, the report's band), against the real references in teacher cosine.
 * Fewer directions put identities nearer real faces but also nearer each other.
 */
async function kSweep(
  real: Float32Array,
  dim: number,
  ks: number[],
  o: { n: number; lb: number; ub: number; seed: number; iterations: number; sample: number; pairs: number },
) {
  const rows = [];
  for (const k of ks) {
    let map: IdentitySpaceMap;
    try {
      map = fitIdentitySpace(real, dim, { k });
    } catch (err) {
      process.stderr.write(`k sweep: k=${k} skipped: ${(err as Error).message}\n`);
      continue;
    }
    process.stderr.write(`k sweep: k=${k}\n`);
    const anchors = (await tammesAnchors({ n: o.n, dim: k, seed: o.seed, iterations: o.iterations })).points;
    const ids = sampleIdentities(anchors, k, { m: 4, lb: o.lb, ub: o.ub, seed: o.seed + 1 });
    const s = syntheticStats(fromWhitened(map, ids.embeddings), dim, 4, real, {
      sample: o.sample,
      pairs: o.pairs,
      rng: new Rng(o.seed).fork(`k${k}`),
    });
    rows.push({ k, varianceKept: map.varianceKept, ...Object.fromEntries(KINDS.map((kind) => [kind, summarise(s[kind]).mean])) });
  }
  return rows as { k: number; varianceKept: number; nearest: number; nearestOther: number; different: number; same: number }[];
}

function lfwAccuracy(maps: { name: string; map?: IdentitySpaceMap }[], dim: number) {
  const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
  const cache = new EmbeddingCache(join(ROOT, '.id3', 'cache', 'embeddings'), args['lfw-cache-key']!);
  const get = (p: string): Float32Array | undefined => cache.get(sha256(readFileSync(p)), dim);
  const missing = [...new Set(list.pairs.flatMap((p) => [p.a, p.b]))].filter((p) => !get(p)).length;
  if (missing > 0) return { missing };
  const a = new Float32Array(list.pairs.length * dim);
  const b = new Float32Array(list.pairs.length * dim);
  list.pairs.forEach((p, i) => {
    a.set(get(p.a)!, i * dim);
    b.set(get(p.b)!, i * dim);
  });
  const results = maps.map(({ name, map }) => {
    const [ea, eb, d] = map ? [toWhitened(map, a), toWhitened(map, b), map.k] : [a, b, dim];
    const r = evaluateVerification(
      ea,
      eb,
      d,
      list.pairs.map((p) => p.same),
      { foldOf: list.pairs.map((p) => p.fold) },
    );
    return { name, accuracy: r.accuracy, accuracyStd: r.accuracyStd, tar: r.tar, auc: r.auc };
  });
  return { missing: 0, pairs: list.pairs.length, results };
}

async function main(): Promise<void> {
  if (!args.run) throw new Error('--run RUN_DIR: a run with prepare and identity-space completed');
  const run = resolve(args.run);
  for (const stage of ['prepare', 'identity-space'])
    if (!existsSync(join(run, stage, 'manifest.json')))
      throw new Error(`${run}: stage '${stage}' has not completed (no ${stage}/manifest.json)`);
  await initBackend('wasm', () => undefined);
  const n = Number(args.n);
  const m = Number(args.m);
  const lb = Number(args.lb);
  const ub = Number(args.ub);
  const seed = Number(args.seed);
  const opts = { sample: Number(args.sample), pairs: Number(args.pairs), rng: new Rng(seed).fork('report') };
  const out = resolve(args.out!);
  mkdirSync(out, { recursive: true });

  const prepare = readJson<StageManifest>(join(run, 'prepare', 'manifest.json'));
  const isManifest = readJson<StageManifest>(join(run, 'identity-space', 'manifest.json'));
  const abs = (p: string): string => join(run, p);
  const space = readIdentitySpace(abs(isManifest.outputs.identitySpace.path));
  const resolution = Number((isManifest.config as { resolution?: number }).resolution);
  const { map } = space;
  const dim = map.dim;
  const k = map.k;
  const all = readTensorFile(abs(isManifest.outputs.embeddings.path)).values as Float32Array;
  const fitRows = Array.from(readTensorFile(abs(isManifest.outputs.fitRows.path)).values);
  const index = readJson<{ rows: { label?: number }[] }>(abs(prepare.outputs.index.path)).rows;
  if (index.some((r) => r.label === undefined))
    throw new Error(`${abs(prepare.outputs.index.path)}: rows without identity labels (need a labelled source, e.g. CelebA folders)`);
  const labels = fitRows.map((r) => index[r].label!);
  const real = pickRows(all, dim, fitRows);
  const realZ = toWhitened(map, real);
  process.stderr.write(`${fitRows.length} real training faces of ${new Set(labels).size} people; identity space k=${k} of ${dim}\n`);

  // Real references, in the teacher's space and in z.
  const realT = realStats(real, dim, labels, opts);
  const realW = realStats(realZ, k, labels, opts);

  // Synthetic identities: Tammes + band, in the teacher's space (raw) and in z (designs a and b).
  const tammes = async (d: number) =>
    (await tammesAnchors({ n, dim: d, seed, iterations: Number(args.iterations), neighbours: 32, refreshEvery: 20 })).points;
  process.stderr.write(`Tammes: ${n} anchors in ${dim}-d and in ${k}-d\n`);
  const anchorsRaw = await tammes(dim);
  const anchorsZ = await tammes(k);
  const idsRaw = sampleIdentities(anchorsRaw, dim, { m, lb, ub, seed: seed + 1 });
  const idsZ = sampleIdentities(anchorsZ, k, { m, lb, ub, seed: seed + 1 });
  const yB = fromWhitened(map, idsZ.embeddings);
  const anchorsB = fromWhitened(map, anchorsZ);
  const designs: { key: string; label: string; space: 'teacher' | 'z'; y: Float32Array; m: number }[] = [
    { key: 'raw', label: `raw: Tammes on the teacher's ${dim}-d sphere`, space: 'teacher', y: idsRaw.embeddings, m },
    { key: 'a', label: `(a) whitened: Tammes and band in z (k=${k}), metrics in z`, space: 'z', y: idsZ.embeddings, m },
    {
      key: 'b',
      label: `(b) placement only: Tammes and band in z, mapped onto the teacher's sphere, native cosine`,
      space: 'teacher',
      y: yB,
      m,
    },
  ];
  // The pipeline's own identities (what it hands the generator), when this run made them.
  const idsManifestPath = join(run, 'identities', 'manifest.json');
  let pipeline: { config: unknown; metrics: Record<string, number> } | undefined;
  if (existsSync(idsManifestPath)) {
    const im = readJson<StageManifest>(idsManifestPath);
    const y = readTensorFile(abs(im.outputs.embeddings.path));
    const meta = y.header.meta as { m?: number; identitySpace?: string; placement?: string };
    if (meta.placement === 'whitened' && meta.identitySpace !== space.sha256)
      throw new Error(`${abs(im.outputs.embeddings.path)}: placed in identity space ${meta.identitySpace}, not this run's ${space.sha256}`);
    designs.push({
      key: 'pipeline',
      label: `the pipeline's identities stage (${meta.placement ?? 'teacher'} placement, ${y.header.shape[0]} rows)`,
      space: 'teacher',
      y: y.values as Float32Array,
      m: Number(meta.m),
    });
    pipeline = { config: im.config, metrics: im.metrics };
  }
  const results = designs.map((d) => {
    process.stderr.write(`statistics: ${d.key}\n`);
    const s = syntheticStats(d.y, d.space === 'z' ? k : dim, d.m, d.space === 'z' ? realZ : real, opts);
    const ref = d.space === 'z' ? realW : realT;
    const stats = KINDS.map((kind) => {
      const r = summarise(ref[kind]);
      const sy = summarise(s[kind]);
      return { kind, real: r, synthetic: sy, ...verdict(kind, r, sy) };
    });
    return { ...d, y: undefined, samples: s, stats };
  });

  // What the band means where metrics are taken: (b) on the teacher's sphere, (a) in z as drawn.
  const bandB: number[] = [];
  for (let r = 0; r < idsZ.labels.length; r += 7) bandB.push(cosRows2(yB, anchorsB, dim, r, idsZ.labels[r]));
  const bandRaw = summarise(Array.from(idsRaw.anchorCos));
  // A sweep of bands (width 0.2) for the same-identity statistic, in both spaces.
  const sweep = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85].map((c) => {
    const lo = Math.max(-1, c - 0.1);
    const hi = Math.min(1, c + 0.1);
    const count = Math.min(500, n);
    const z = sampleIdentities(anchorsZ.subarray(0, count * k), k, { m, lb: lo, ub: hi, seed: seed + 2 });
    const yb = fromWhitened(map, z.embeddings);
    const groups = Array.from({ length: count }, (_, i) => Array.from({ length: m }, (_, j) => i * m + j));
    const sr = new Rng(seed).fork(`sweep-${c}`);
    return {
      band: [lo, hi],
      sameZ: summarise(withinGroupPairs(z.embeddings, k, groups, 5000, sr)).mean,
      sameTeacher: summarise(withinGroupPairs(yb, dim, groups, 5000, sr)).mean,
    };
  });

  const separation = ownCentroidNearest(real, dim, labels);
  const sweepK = await kSweep(
    real,
    dim,
    [8, 16, 24, 32, 40, 48, 56, 64, 80, k].filter((v, i, a) => a.indexOf(v) === i).sort((x, y) => x - y),
    {
      n,
      lb,
      ub,
      seed,
      iterations: Math.min(100, Number(args.iterations)),
      sample: 2000,
      pairs: 5000,
    },
  );

  // LFW View 2 in each space (from bench:lfw's cache), with the map fitted on this run's
  // f(x̂0)-path embeddings and, for comparison, on prepare's full-resolution embeddings.
  const fullRes = readTensorFile(abs(prepare.outputs.embeddings.path)).values as Float32Array;
  const mapFull = fitIdentitySpace(fullRes, dim, { rows: fitRows, k });
  const lfw = lfwAccuracy(
    [
      { name: `teacher cosine (designs raw and b)` },
      { name: `whitened z, k=${k}, map fitted through f(x̂0) at ${resolution}×${resolution} (design a)`, map },
      { name: `whitened z, k=${k}, map fitted on prepare's full-resolution embeddings`, map: mapFull },
    ],
    dim,
  );

  // Histograms: one row per design (real vs that design, in the space its metrics use), one column per statistic.
  const colours: Record<string, string> = { raw: '#d62728', a: '#9467bd', b: '#1f77b4', pipeline: '#2ca02c' };
  const titles = {
    nearest: 'cos to nearest real training face (real: nearest face of another person)',
    nearestOther: 'cos to the nearest other identity (real: nearest face of another person)',
    different: 'cos between different identities',
    same: 'cos between two images of one identity',
  };
  const plots: string[] = [];
  for (const r of results) {
    const ref = r.space === 'z' ? realW : realT;
    for (const kind of KINDS) {
      const both = [ref[kind], r.samples[kind]];
      const lo = Math.max(-1, Math.min(...both.map((v) => v.reduce((a, b) => Math.min(a, b), Infinity))) - 0.01);
      const hi = Math.min(1, Math.max(...both.map((v) => v.reduce((a, b) => Math.max(a, b), -Infinity))) + 0.01);
      const bins = 60;
      plots.push(
        histogramSvg({
          title: `${r.key === 'raw' ? 'raw' : r.key === 'pipeline' ? 'pipeline' : `(${r.key})`}, ${r.space === 'z' ? `whitened z (k=${k})` : "teacher's cosine"}: ${titles[kind]}`,
          xLabel: 'cosine',
          edges: binEdges(lo, hi, bins),
          density: true,
          series: [
            { label: 'real (labelled training faces)', color: '#000000', counts: histogram(ref[kind], lo, hi, bins) },
            { label: `synthetic: ${r.key}`, color: colours[r.key], counts: histogram(r.samples[kind], lo, hi, bins) },
          ],
        }),
      );
    }
  }
  writeFileSync(join(out, 'histograms.png'), await svgToPng(gridSvg(plots, 4)));

  const command = `npm run report:identity-space -- --run ${relative(ROOT, run)} --n ${n} --m ${m} --lb ${lb} --ub ${ub} --iterations ${args.iterations} --out ${relative(ROOT, out)}`;
  const json: ReportJson = {
    command,
    run: relative(ROOT, run),
    source: (prepare.config as { source?: unknown }).source,
    identitySpace: {
      sha256: space.sha256,
      k,
      dim,
      varianceKept: map.varianceKept,
      fit: space.header.fit,
      meanNorm: Math.hypot(...map.mean),
    },
    realFaces: fitRows.length,
    people: new Set(labels).size,
    synthetic: { n, m, lb, ub, iterations: Number(args.iterations) },
    real: {
      teacher: Object.fromEntries(Object.entries(realT).map(([key, v]) => [key, summarise(v)])),
      z: Object.fromEntries(Object.entries(realW).map(([key, v]) => [key, summarise(v)])),
    },
    designs: results.map((r) => ({ key: r.key, label: r.label, space: r.space, stats: r.stats })),
    band: { raw: bandRaw, b: summarise(bandB) },
    sweep,
    sweepK,
    separation,
    lfw,
    pipeline,
  };
  writeFileSync(join(out, 'results.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(out, 'report.md'), markdown(json));
  process.stdout.write(`${markdown(json)}\n`);
}

function cosRows2(x: Float32Array, y: Float32Array, d: number, i: number, j: number): number {
  let c = 0;
  for (let a = 0; a < d; a++) c += x[i * d + a] * y[j * d + a];
  return c;
}

const f3 = (v: number): string => v.toFixed(3);
const dist = (s: Summary): string => `${f3(s.mean)} ± ${f3(s.sd)} (p5 ${f3(s.p5)}, p95 ${f3(s.p95)})`;

interface StatRow {
  readonly kind: keyof Stats;
  readonly real: Summary;
  readonly synthetic: Summary;
  readonly gapInSd: number;
  readonly pass: boolean;
}
interface ReportJson {
  readonly command: string;
  readonly run: string;
  readonly source: unknown;
  readonly identitySpace: { sha256: string; k: number; dim: number; varianceKept: number; fit: { source: string }; meanNorm: number };
  readonly realFaces: number;
  readonly people: number;
  readonly synthetic: { n: number; m: number; lb: number; ub: number; iterations: number };
  readonly real: Record<'teacher' | 'z', Record<string, Summary>>;
  readonly designs: readonly { key: string; label: string; space: string; stats: readonly StatRow[] }[];
  readonly band: { raw: Summary; b: Summary };
  readonly sweep: readonly { band: number[]; sameZ: number; sameTeacher: number }[];
  readonly sweepK: Awaited<ReturnType<typeof kSweep>>;
  readonly separation: ReturnType<typeof ownCentroidNearest>;
  readonly lfw: ReturnType<typeof lfwAccuracy>;
  readonly pipeline?: unknown;
}

function markdown(r: ReportJson): string {
  const names = {
    nearest: 'cos to nearest real face',
    nearestOther: 'cos to nearest other identity',
    different: 'different identities',
    same: 'one identity',
  } as const;
  const lines = [
    '# Identity placement: raw teacher space vs whitened identity space',
    '',
    `Made by \`${r.command}\` (issue 9 §1).`,
    '',
    `Real faces: the ${r.realFaces} training faces of ${r.people} people that the identity space was fitted on (run \`${r.run}\`, source ${JSON.stringify(r.source)}), embedded as the generator's identity term sees them: ${r.identitySpace.fit.source}.`,
    `Identity space: k = ${r.identitySpace.k} of ${r.identitySpace.dim} directions, ${(100 * r.identitySpace.varianceKept).toFixed(1)}% of the variance; |μ| = ${f3(r.identitySpace.meanNorm)}; artefact sha256 \`${r.identitySpace.sha256.slice(0, 16)}…\`.`,
    `Synthetic: ${r.synthetic.n} Tammes anchors (${r.synthetic.iterations} iterations) × ${r.synthetic.m} embeddings, band [${r.synthetic.lb}, ${r.synthetic.ub}].`,
    '',
    'Statistics (mean ± sd, p5–p95). Real references (from the prepared set\'s identity labels): a real face\'s cos to its nearest training face **of another person**, random pairs of faces of different people, and random pairs of photos of one person — the labelled set\'s same-person pairs stand in for LFW\'s (LFW pairs would need detection and alignment at the training resolution). The synthetic "nearest other identity" is taken among as many synthetic embeddings as there are real faces, so both maxima run over bases of one size. **Pass**: the synthetic mean is within 0.5 real standard deviations of the real mean (for the two separation statistics, "nearest other identity" and "different identities", at most 0.5 sd above it — farther apart is fine).',
    '',
    '| design | metric space | statistic | real | synthetic | gap (real sd) | pass |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const d of r.designs)
    for (const s of d.stats)
      lines.push(
        `| ${d.label} | ${d.space === 'z' ? `z (k=${r.identitySpace.k})` : 'teacher cosine'} | ${names[s.kind as keyof typeof names]} | ${dist(s.real)} | ${dist(s.synthetic)} | ${s.gapInSd.toFixed(2)} | ${s.pass ? 'yes' : '**no**'} |`,
      );
  lines.push(
    '',
    `For reference, a real face's nearest *other* face of any person (usually the same person): teacher ${dist(r.real.teacher.nearestAny)}; z ${dist(r.real.z.nearestAny)}.`,
    '',
    `![histograms: real vs synthetic, one row per design (raw, (a), (b)${r.pipeline ? ', pipeline' : ''}), one column per statistic](histograms.png)`,
    '',
    '## What the band [lb, ub] means',
    '',
    `- raw: cos(y_ij, w_i) on the teacher's sphere, drawn uniformly: ${dist(r.band.raw)}.`,
    `- (a): the same numbers, drawn in z, and z is where metrics are taken.`,
    `- (b): drawn in z; on the teacher's sphere (where the loss, guidance and metrics live) cos(y_ij, w_i) is ${dist(r.band.b)}.`,
    '',
    `Same-identity cosine for bands of width 0.2 (${Math.min(500, r.synthetic.n)} anchors × m; in z = design (a), on the teacher sphere = design (b)):`,
    '',
    '| band | mean cos, one identity, z | mean cos, one identity, teacher |',
    '|---|---|---|',
    ...r.sweep.map((s) => `| [${s.band[0].toFixed(2)}, ${s.band[1].toFixed(2)}] | ${f3(s.sameZ)} | ${f3(s.sameTeacher)} |`),
    `| real photos of one person | ${f3(r.real.z.same.mean)} | ${f3(r.real.teacher.same.mean)} |`,
    '',
    '## How many directions: design (b) for several k',
    '',
    `${r.synthetic.n} anchors × 4 embeddings, band [${r.synthetic.lb}, ${r.synthetic.ub}], teacher cosine; mean of each statistic (real reference in the last row; the pipeline keeps k = ${r.identitySpace.k}).`,
    '',
    '| k | variance kept | cos to nearest real face | cos to nearest other identity | different identities | one identity |',
    '|---|---|---|---|---|---|',
    ...r.sweepK.map(
      (x) =>
        `| ${x.k} | ${(100 * x.varianceKept).toFixed(1)}% | ${f3(x.nearest)} | ${f3(x.nearestOther)} | ${f3(x.different)} | ${f3(x.same)} |`,
    ),
    `| real | | ${f3(r.real.teacher.nearest.mean)} | ${f3(r.real.teacher.nearestOther.mean)} | ${f3(r.real.teacher.different.mean)} | ${f3(r.real.teacher.same.mean)} |`,
    '',
    '## LFW View 2 accuracy of the teacher in each metric space',
    '',
  );
  if (!('results' in r.lfw) || !r.lfw.results)
    lines.push(
      `Not measured: bench:lfw's embedding cache lacks ${r.lfw.missing} LFW images (run \`npm run bench:lfw\` first, ≈10 minutes on 2 cores).`,
    );
  else {
    lines.push(
      `${r.lfw.pairs} pairs, the insightface protocol (10 folds, squared L2 on unit vectors), LFW embeddings from bench:lfw's cache (dlib chips at full resolution, image + flip), mapped by each identity-space map:`,
      '',
      '| space | accuracy | TAR @ FAR=1e-3 | AUC |',
      '|---|---|---|---|',
      ...r.lfw.results.map(
        (x) =>
          `| ${x.name} | ${(100 * x.accuracy).toFixed(2)}% ± ${(100 * x.accuracyStd).toFixed(2)} | ${(100 * x.tar).toFixed(2)}% | ${x.auc.toFixed(5)} |`,
      ),
    );
  }
  if (r.pipeline) {
    const pm = (r.pipeline as { metrics: Record<string, number> }).metrics;
    lines.push(
      '',
      "## The pipeline's identities stage",
      '',
      `Its own separation check, in teacher cosine: ${(100 * pm.ownAnchorNearestFraction).toFixed(1)}% of the embeddings are nearer their own anchor than any other (own ${f3(pm.teacherAnchorCosMean)}, nearest other ${f3(pm.nearestOtherAnchorCosMean)}); the real counterpart: ${(100 * r.separation.fraction).toFixed(1)}% of the ${r.separation.photos} photos are nearer their own person's centroid than any other person's (own ${f3(r.separation.ownCos)}, nearest other ${f3(r.separation.nearestOtherCos)}).`,
      '',
      '```json',
      JSON.stringify(r.pipeline, null, 2),
      '```',
    );
  }
  lines.push('');
  return lines.join('\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
