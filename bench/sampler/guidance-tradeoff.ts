/**
 * The sampler's guidance trade-off (issue 10 §1): identity consistency against images/s for
 * several sampling settings, with a real trained generator and the identities a pipeline placed
 * for it — the identity half of what bench-sample.ts measures only in seconds.
 *
 * For each setting, `--identities` synthetic identities × `--images` images are drawn with the
 * sampler stage's own IdentitySampler (the same seeds in every setting, attributes drawn from the
 * prepared training rows), and each image is embedded with the teacher through the f(x̂0) path:
 *  - own: teacher cosine of an image to its own y_ij; other: to the y of the same slot of another
 *    identity (a cyclic shift); gap = own − other (does the image carry its identity at all);
 *  - intra: mean cosine between images of one identity; inter: between images of different
 *    identities; separation = intra − inter, and the fraction of images whose nearest other image
 *    is of the same identity (can the teacher tell the synthetic people apart) — also read by a
 *    second, independent embedder (`--check`, default MobileFace): guidance climbs the teacher's
 *    own cosine, and only another network shows whether that made a person or a teacher-specific pattern;
 *  - images/s of the sampling call alone (one process, one core).
 *
 *   npm run bench:guidance -- --model models/celeba32-id3 --run .id3/runs/celeba-id3 [--identities 16] [--images 4]
 *                             [--settings 0,2,6 --out bench/results/guidance-a.json]   (a subset: two processes share the settings)
 *
 * `--run` is a run whose identities stage placed identities in the generator's identity space and
 * whose prepare stage holds the training attributes (e.g. a celeba-id3 run). Writes
 * bench/results/guidance-tradeoff.json and prints a Markdown table for BENCHMARKS.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Rng, initBackend, readTensorFile } from '@id3/core';
import { TeacherInput, embedCrops, loadGenerator, resolveModelPath } from '@id3/diffusion';
import { loadEmbedder } from '@id3/faces';
import {
  IdentitySampler,
  filterConfigSchema,
  guidanceConfigSchema,
  samplerLoopSchema,
  type GuidanceConfig,
  type SamplerLoop,
} from '@id3/sampler';

interface Setting {
  readonly name: string;
  readonly loop: Partial<SamplerLoop>;
  readonly guidance: Partial<GuidanceConfig>;
}

/** The settings compared: no guidance, the profiles' default, denser / stronger / full-gradient guidance, CFG, fewer steps. */
const SETTINGS: Setting[] = [
  { name: 'DDIM 25, w 0 (no guidance)', loop: { steps: 25 }, guidance: { scale: 0 } },
  {
    name: 'DDIM 25, w 20, every 2nd of the last half (profiles)',
    loop: { steps: 25 },
    guidance: { scale: 20, every: 2, lastFraction: 0.5 },
  },
  { name: 'DDIM 25, w 20, every step', loop: { steps: 25 }, guidance: { scale: 20, every: 1, lastFraction: 1 } },
  { name: 'DDIM 25, w 60, every 2nd of the last half', loop: { steps: 25 }, guidance: { scale: 60, every: 2, lastFraction: 0.5 } },
  {
    name: 'DDIM 25, w 20, every 2nd of the last half, full gradient',
    loop: { steps: 25 },
    guidance: { scale: 20, every: 2, lastFraction: 0.5, gradient: 'full' },
  },
  {
    name: 'DDIM 25, CFG 4 + w 20, every 2nd of the last half',
    loop: { steps: 25, cfgScale: 4 },
    guidance: { scale: 20, every: 2, lastFraction: 0.5 },
  },
  { name: 'DDIM 10, w 20, every 2nd of the last half', loop: { steps: 10 }, guidance: { scale: 20, every: 2, lastFraction: 0.5 } },
];

function cos(a: Float32Array, i: number, b: Float32Array, j: number, d: number): number {
  let s = 0;
  for (let k = 0; k < d; k++) s += a[i * d + k] * b[j * d + k];
  return s;
}

/**
 * How well one embedder tells the synthetic people apart, from the images alone: mean cosine
 * between images of one identity minus between identities, and the fraction of images whose
 * nearest other image is of the same identity (chance (m − 1)/(n·m − 1)).
 */
function separation(e: Float32Array, d: number, n: number, m: number): { intra: number; inter: number; retrieval: number } {
  let intra = 0;
  let intraN = 0;
  let inter = 0;
  let interN = 0;
  let hits = 0;
  for (let k = 0; k < n * m; k++) {
    let best = -Infinity;
    let bestSame = false;
    for (let k2 = 0; k2 < n * m; k2++) {
      if (k2 === k) continue;
      const c = cos(e, k, e, k2, d);
      const same = Math.floor(k2 / m) === Math.floor(k / m);
      if (k2 > k) {
        if (same) {
          intra += c;
          intraN++;
        } else {
          inter += c;
          interN++;
        }
      }
      if (c > best) {
        best = c;
        bestSame = same;
      }
    }
    if (bestSame) hits++;
  }
  return { intra: intra / intraN, inter: inter / interN, retrieval: hits / (n * m) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'models/celeba32-id3' },
      run: { type: 'string' },
      identities: { type: 'string', default: '16' },
      images: { type: 'string', default: '4' },
      seed: { type: 'string', default: '0' },
      /** Indices into SETTINGS (comma-separated), to split the settings between processes. */
      settings: { type: 'string' },
      out: { type: 'string', default: 'bench/results/guidance-tradeoff.json' },
      /** A second, independent embedder that reads the same images: guidance climbs the teacher's own cosine, which can be teacher-specific. */
      check: { type: 'string', default: 'mobileface-256' },
    },
  });
  if (!values.run) throw new Error('--run RUN_DIR: a run whose identities and prepare stages have finished (e.g. a celeba-id3 run)');
  const run = resolve(values.run);
  const n = Number(values.identities);
  const m = Number(values.images);
  const seed = Number(values.seed);
  await initBackend('wasm', () => undefined);
  const generator = loadGenerator(resolveModelPath(values.model));
  const teacher = await loadEmbedder(generator.descriptor.teacher, 'generator.teacher');
  const check = await loadEmbedder(values.check, '--check');
  const d = generator.descriptor.identityDim;

  // The identities stage's y rows: identity i's embeddings are rows i·M … i·M + M − 1.
  const ident = readTensorFile(join(run, 'identities', 'embeddings'));
  const labels = readTensorFile(join(run, 'identities', 'labels')).values as Int32Array;
  const perIdentity = labels.filter((l) => l === 0).length;
  if (ident.header.shape[1] !== d)
    throw new Error(`${run}/identities: ${ident.header.shape[1]}-d embeddings, the generator's teacher is ${d}-d`);
  if (perIdentity < m) throw new Error(`${run}/identities: ${perIdentity} embeddings per identity, --images ${m} asked`);
  const yAll = ident.values as Float32Array;
  const y = new Float32Array(n * m * d);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) y.set(yAll.subarray((i * perIdentity + j) * d, (i * perIdentity + j + 1) * d), (i * m + j) * d);
  // Attributes: training rows drawn with a fixed seed (the sampler stage's default 'empirical').
  const attrs = readTensorFile(join(run, 'prepare', 'attributes-scaled'));
  const a = attrs.header.shape[1];
  const rng = new Rng(seed).fork('attributes');
  const s = new Float32Array(n * m * a);
  for (let k = 0; k < n * m; k++) {
    const r = rng.int(attrs.header.shape[0]);
    s.set((attrs.values as Float32Array).subarray(r * a, (r + 1) * a), k * a);
  }

  const size = generator.net.config.resolution;
  const results = [];
  const chosen = values.settings ? values.settings.split(',').map((k) => SETTINGS[Number(k)]) : SETTINGS;
  if (chosen.some((c) => !c)) throw new Error(`--settings ${values.settings}: indices 0–${SETTINGS.length - 1}`);
  for (const setting of chosen) {
    const loop = samplerLoopSchema.parse(setting.loop);
    const guidance = guidanceConfigSchema.parse(setting.guidance);
    const sampler = new IdentitySampler(generator, teacher, loop, guidance, filterConfigSchema.parse({}), undefined, seed);
    const images = new Float32Array(n * m * size * size * 3);
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const seeds = Array.from({ length: m }, (_, j) => 1_000 * i + j + 1);
      const px = m * size * size * 3;
      images.set(sampler.sample(y.subarray(i * m * d, (i + 1) * m * d), s.subarray(i * m * a, (i + 1) * m * a), seeds), i * px);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const e = await embedCrops(teacher, sampler.input, images, size);
    sampler.input.dispose();
    let own = 0;
    let other = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++) {
        const k = i * m + j;
        own += cos(e, k, y, k, d);
        other += cos(e, k, y, ((i + 1) % n) * m + j, d);
      }
    const byTeacher = separation(e, d, n, m);
    const checkInput = TeacherInput.forTeacher(check, size);
    const byCheck = separation(await embedCrops(check, checkInput, images, size), check.dim, n, m);
    checkInput.dispose();
    const row = {
      setting: setting.name,
      loop,
      guidance,
      guidedSteps: sampler.guidedSteps().guided,
      images: n * m,
      seconds,
      imagesPerSecond: (n * m) / seconds,
      own: own / (n * m),
      other: other / (n * m),
      gap: (own - other) / (n * m),
      intra: byTeacher.intra,
      inter: byTeacher.inter,
      separation: byTeacher.intra - byTeacher.inter,
      retrieval: byTeacher.retrieval,
      check: { embedder: check.name, separation: byCheck.intra - byCheck.inter, retrieval: byCheck.retrieval },
    };
    results.push(row);
    console.error(
      `${setting.name}: ${row.imagesPerSecond.toFixed(3)} img/s, own ${row.own.toFixed(3)}, gap ${row.gap.toFixed(4)}, separation ${row.separation.toFixed(4)}, retrieval ${row.retrieval.toFixed(3)}; ${check.name}: separation ${row.check.separation.toFixed(4)}, retrieval ${row.check.retrieval.toFixed(3)}`,
    );
  }
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(
    values.out,
    `${JSON.stringify({ model: values.model, run: values.run, identities: n, imagesPerIdentity: m, date: new Date().toISOString(), results }, null, 2)}\n`,
  );
  const f = (v: number, k = 3) => v.toFixed(k);
  console.log(
    [
      `| setting | guided steps | img/s (1 core) | cos to own y | gap (own − another's y) | teacher: separation, nearest image same identity | ${check.name}: separation, nearest same |`,
      '|---|---|---|---|---|---|---|',
      ...results.map(
        (r) =>
          `| ${r.setting} | ${r.guidedSteps} | ${f(r.imagesPerSecond)} | ${f(r.own)} | ${f(r.gap, 4)} | ${f(r.separation, 4)}, ${f(r.retrieval, 2)} | ${f(r.check.separation, 4)}, ${f(r.check.retrieval, 2)} |`,
      ),
      '',
      `chance for "nearest image same identity": ${f((m - 1) / (n * m - 1), 3)}`,
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
