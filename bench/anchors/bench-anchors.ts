/**
 * Tammes anchors benchmark: N = 10,000 unit vectors in d = 512 (the paper's embedding size),
 * our tfjs implementation on the selected backend against the same algorithm in PyTorch
 * (Debian's python3-torch, /usr/bin/python3, 2 threads), measured in one run.
 *
 *   npm run bench:anchors -- [--n 10000] [--dim 512] [--iterations 200] [--skip-reference]
 *
 * Writes bench/results/anchors.json and prints a Markdown table for BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Rng, initBackend } from '@id3/core';
import { pairwiseStats, randomUnitVectors, tammesAnchors } from '@id3/anchors';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '10000' },
      dim: { type: 'string', default: '512' },
      iterations: { type: 'string', default: '200' },
      'skip-reference': { type: 'boolean', default: false },
    },
  });
  const n = Number(values.n);
  const dim = Number(values.dim);
  const iterations = Number(values.iterations);
  const backend = await initBackend();

  let t = Date.now();
  const random = pairwiseStats(randomUnitVectors(n, dim, new Rng(0)), n, dim);
  const randomSeconds = (Date.now() - t) / 1000;
  const memBefore = process.memoryUsage().rss;
  t = Date.now();
  let peakRss = memBefore;
  const reached: Record<number, number> = {};
  const { points } = await tammesAnchors(
    { n, dim, seed: 0, iterations },
    {
      onProgress: (p) => {
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        if (p.step % 20 === 0 || p.step === iterations) {
          reached[p.step] = (Date.now() - t) / 1000;
          process.stderr.write(
            `step ${p.step}/${iterations} neighbour min angle ${p.minAngleDeg.toFixed(3)}° (${reached[p.step].toFixed(1)} s)\n`,
          );
        }
      },
    },
  );
  const optimiseSeconds = (Date.now() - t) / 1000;
  const tammes = pairwiseStats(points, n, dim);

  let reference: Record<string, unknown> | undefined;
  if (!values['skip-reference']) {
    process.stderr.write('running the PyTorch reference (/usr/bin/python3, 2 threads)…\n');
    const out = execFileSync(
      '/usr/bin/python3',
      [join(__dirname, 'tammes_reference.py'), String(n), String(dim), String(iterations), '2'],
      {
        encoding: 'utf8',
        maxBuffer: 1 << 20,
      },
    );
    reference = JSON.parse(out) as Record<string, unknown>;
  }

  const result = {
    date: new Date().toISOString(),
    n,
    dim,
    iterations,
    backend: backend.name,
    id3: {
      optimiseSeconds,
      secondsPerStep: optimiseSeconds / iterations,
      peakRssMiB: peakRss / 2 ** 20,
      tammes: { minAngleDeg: tammes.minAngleDeg, maxCos: tammes.maxCos, meanNearestCos: tammes.meanNearestCos, meanCos: tammes.meanCos },
      random: { minAngleDeg: random.minAngleDeg, maxCos: random.maxCos, meanNearestCos: random.meanNearestCos, meanCos: random.meanCos },
      randomStatsSeconds: randomSeconds,
    },
    reference,
  };
  const dir = join(__dirname, '..', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'anchors.json'), `${JSON.stringify(result, null, 2)}\n`);
  const ref = reference as
    | {
        optimiseSeconds: number;
        tammes: { minAngleDeg: number; maxCos: number; meanNearestCos: number };
        random: { minAngleDeg: number; maxCos: number; meanNearestCos: number };
      }
    | undefined;
  const f = (v: number, d = 3) => v.toFixed(d);
  console.log(
    `| implementation | time (s) | s/step | min angle | max NN cos | mean NN cos | random: min angle | random: max cos | random: mean NN cos |`,
  );
  console.log(`|---|---|---|---|---|---|---|---|---|`);
  console.log(
    `| id3 (tfjs ${backend.name}, 1 thread) | ${f(optimiseSeconds, 1)} | ${f(optimiseSeconds / iterations, 3)} | ${f(tammes.minAngleDeg, 2)}° | ${f(tammes.maxCos, 4)} | ${f(tammes.meanNearestCos, 4)} | ${f(random.minAngleDeg, 2)}° | ${f(random.maxCos, 4)} | ${f(random.meanNearestCos, 4)} |`,
  );
  if (ref) {
    console.log(
      `| PyTorch ${String(reference?.torch)} (2 threads) | ${f(ref.optimiseSeconds, 1)} | ${f(ref.optimiseSeconds / iterations, 3)} | ${f(ref.tammes.minAngleDeg, 2)}° | ${f(ref.tammes.maxCos, 4)} | ${f(ref.tammes.meanNearestCos, 4)} | ${f(ref.random.minAngleDeg, 2)}° | ${f(ref.random.maxCos, 4)} | ${f(ref.random.meanNearestCos, 4)} |`,
    );
    console.log(`\nratio id3 / PyTorch time: ${(optimiseSeconds / ref.optimiseSeconds).toFixed(2)}×`);
  }
  console.log(`peak RSS during optimisation: ${f(peakRss / 2 ** 20, 0)} MiB`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
