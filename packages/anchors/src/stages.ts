import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import {
  Rng,
  binEdges,
  hashJson,
  histogram,
  histogramSvg,
  readTensorFile,
  svgToPng,
  tf,
  writeFileAtomic,
  writeJsonAtomic,
  writeTensorFile,
  InvalidInputError,
  type StageDefinition,
} from '@id3/core';
import { embedderInfo } from '@id3/faces';
import { sampleIdentities } from './identities';
import { pairwiseStats, type PairwiseStats } from './pairwise';
import { randomUnitVectors } from './sphere';
import { tammesAnchors } from './tammes';

const positiveInt = z.number().int().positive();

export const anchorsConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    n: z.number().int().min(2),
    dim: z.number().int().min(2),
    iterations: z.number().int().nonnegative(),
    neighbours: positiveInt.default(32),
    refreshEvery: positiveInt.default(20),
    stepStart: z.number().positive().default(0.1),
    stepEnd: z.number().positive().default(0.001),
    sharpnessStart: z.number().positive().default(10),
    sharpnessEnd: z.number().positive().default(1000),
    blockRows: positiveInt.default(1024),
    /** Save the optimiser state every this many steps (rounded up to the refresh grid). */
    checkpointEvery: positiveInt.default(100),
    histogramBins: positiveInt.default(200),
  })
  .strict();
export type AnchorsConfig = z.output<typeof anchorsConfigSchema>;

function statMetrics(prefix: string, s: PairwiseStats): Record<string, number> {
  return {
    [`${prefix}minAngleDeg`]: s.minAngleDeg,
    [`${prefix}maxCos`]: s.maxCos,
    [`${prefix}meanCos`]: s.meanCos,
    [`${prefix}meanNearestCos`]: s.meanNearestCos,
  };
}

/** The Tammes stage: N well-separated unit anchors, their statistics and a histogram plot. */
export const anchorsStage: StageDefinition<typeof anchorsConfigSchema> = {
  name: 'anchors',
  version: 1,
  schema: anchorsConfigSchema,
  // The anchors live in the teacher's embedding space: their dimension must be the teacher's.
  check(config, sections) {
    const teacher = sections.prepare?.teacher;
    if (typeof teacher !== 'string') return;
    const dim = embedderInfo(teacher, 'prepare.teacher').dim;
    if (config.dim !== dim) {
      throw new InvalidInputError(
        `field 'anchors.dim': ${config.dim} differs from the teacher's embedding size ${dim} (prepare.teacher '${teacher}')`,
        { field: 'anchors.dim' },
      );
    }
  },
  /**
   * Points, next points, their tensor copy and transpose, and the random baseline: ~6 n×d
   * float32 arrays; plus Gram blocks of blockRows × n (three live while the k-NN refresh runs).
   */
  estimate(config) {
    const points = config.n * config.dim * 4;
    const gram = Math.min(config.blockRows, config.n) * config.n * 4;
    return {
      memoryBytes: 6 * points + 3 * gram + config.n * config.neighbours * 4,
      largestArrayBytes: Math.max(points, gram),
      field: 'anchors.n',
      formula: `n=${config.n} × dim=${config.dim} × 4 B × 6 + 3 Gram blocks of ${Math.min(config.blockRows, config.n)} × n × 4 B`,
    };
  },
  async run({ config, dir, progress }) {
    const checkpointPath = join(dir, 'checkpoint');
    const checkpointKey = hashJson(config);
    let resume: { points: Float32Array; step: number } | undefined;
    if (existsSync(`${checkpointPath}.json`)) {
      try {
        const { header, values } = readTensorFile(checkpointPath);
        if (header.meta?.configHash === checkpointKey && values instanceof Float32Array) {
          resume = { points: values, step: Number(header.meta.step) };
          progress({
            phase: 'resume',
            step: resume.step,
            total: config.iterations,
            message: `resuming from checkpoint at step ${resume.step}`,
          });
        }
      } catch (err) {
        progress({ phase: 'resume', message: `ignoring unreadable checkpoint: ${(err as Error).message}` });
      }
    }
    const started = Date.now();
    const result = await tammesAnchors(config, {
      resume,
      onProgress: (p) =>
        progress({
          phase: 'optimise',
          step: p.step,
          total: p.total,
          metrics: { minAngleDeg: p.minAngleDeg, meanNearestCos: p.meanNearestCos, sharpness: p.sharpness },
        }),
      checkpoint: {
        every: config.checkpointEvery,
        save: (step, points) => {
          writeTensorFile(checkpointPath, 'float32', [config.n, config.dim], points, { configHash: checkpointKey, step });
          progress({ phase: 'checkpoint', step, total: config.iterations });
        },
      },
    });
    const optimiseSeconds = (Date.now() - started) / 1000;

    progress({ phase: 'statistics', message: 'exact pairwise statistics (anchors and random baseline)' });
    const stats = pairwiseStats(result.points, config.n, config.dim, { bins: config.histogramBins, blockRows: config.blockRows });
    const random = pairwiseStats(randomUnitVectors(config.n, config.dim, new Rng(config.seed)), config.n, config.dim, {
      bins: config.histogramBins,
      blockRows: config.blockRows,
    });

    const anchorsPath = writeTensorFile(join(dir, 'anchors'), 'float32', [config.n, config.dim], result.points, {
      what: 'Tammes anchors w_i, unit rows',
      minAngleDeg: stats.minAngleDeg,
    });
    const edges = binEdges(-1, 1, config.histogramBins);
    const statsPath = join(dir, 'stats.json');
    writeJsonAtomic(statsPath, {
      anchors: { ...statMetrics('', stats), histogram: Array.from(stats.histogram) },
      random: { ...statMetrics('', random), histogram: Array.from(random.histogram) },
      edges,
      optimiseSeconds,
      resumedFromStep: resume?.step ?? 0,
    });
    const lo = Math.min(stats.meanCos, random.meanCos) - 0.5;
    const png = await svgToPng(
      histogramSvg({
        title: `Pairwise cosines: ${config.n} Tammes anchors vs random unit vectors, d=${config.dim}`,
        xLabel: 'cosine between two anchors',
        edges,
        density: true,
        series: [
          { label: `Tammes (min angle ${stats.minAngleDeg.toFixed(2)}°)`, color: '#1f77b4', counts: stats.histogram },
          { label: `random (min angle ${random.minAngleDeg.toFixed(2)}°)`, color: '#d62728', counts: random.histogram },
        ],
        markers: [
          { x: stats.maxCos, label: 'Tammes max', color: '#1f77b4' },
          { x: random.maxCos, label: 'random max', color: '#d62728' },
        ].filter((mk) => mk.x > lo),
      }),
    );
    const plotPath = join(dir, 'pairwise-cosines.png');
    writeFileAtomic(plotPath, png);
    rmSync(`${checkpointPath}.json`, { force: true });
    rmSync(`${checkpointPath}.bin`, { force: true });
    return {
      outputs: { anchors: anchorsPath, anchorsData: join(dir, 'anchors.bin'), stats: statsPath, plot: plotPath },
      metrics: {
        ...statMetrics('', stats),
        ...statMetrics('random_', random),
        steps: config.iterations,
        resumedFromStep: resume?.step ?? 0,
        optimiseSeconds,
      },
    };
  },
};

export const identitiesConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /** Embeddings (future images) per identity. */
    m: z.number().int().positive(),
    lb: z.number().min(-1).max(1),
    ub: z.number().min(-1).max(1),
    blockRows: positiveInt.default(2048),
    histogramBins: positiveInt.default(200),
  })
  .strict()
  .refine((c) => c.lb <= c.ub, { message: 'lb must not exceed ub', path: ['lb'] });
export type IdentitiesConfig = z.output<typeof identitiesConfigSchema>;

/**
 * The identity-embedding stage: m embeddings per anchor in the band cos ∈ [lb, ub], plus a
 * check of what the band costs in separability — for every embedding, the cosine to its own
 * anchor versus the nearest other anchor.
 */
export const identitiesStage: StageDefinition<typeof identitiesConfigSchema> = {
  name: 'identities',
  version: 1,
  schema: identitiesConfigSchema,
  upstream: ['anchors'],
  reads: () => ({ anchors: ['anchors'] }),
  /** N·m embeddings of dim floats, their labels and cosines, from the anchors section's n and dim. */
  estimate(config, sections) {
    const n = Number(sections.anchors?.n ?? 0);
    const dim = Number(sections.anchors?.dim ?? 0);
    const embeddings = n * config.m * dim * 4;
    return {
      memoryBytes: 2 * embeddings + n * config.m * 8 + 2 * n * dim * 4,
      largestArrayBytes: embeddings,
      field: 'identities.m',
      formula: `anchors.n=${n} × m=${config.m} × dim=${dim} × 4 B × 2`,
    };
  },
  async run({ config, dir, inputs, progress }) {
    const { header, values } = readTensorFile(inputs.anchors);
    const [n, dim] = header.shape;
    if (!(values instanceof Float32Array) || header.shape.length !== 2) {
      throw new Error(`${inputs.anchors}: expected a float32 [n, dim] anchor matrix`);
    }
    progress({ phase: 'sample', message: `${n} anchors × ${config.m} embeddings, d=${dim}` });
    const seed = new Rng(config.seed).fork('identities').nextUint32();
    const ids = sampleIdentities(values, dim, { m: config.m, lb: config.lb, ub: config.ub, seed });
    const rows = n * config.m;

    // Separation: own-anchor cosine vs the nearest other anchor, block by block.
    const bins = config.histogramBins;
    const ownHist = new Float64Array(bins);
    const otherHist = new Float64Array(bins);
    let ownNearest = 0;
    let maxOther = -Infinity;
    let sumOther = 0;
    let minMargin = Infinity;
    // [dim, n]: on wasm matMul against a transposed copy is ~9× faster than transposeB.
    const anchorsT = tf.tidy(() => tf.transpose(tf.tensor2d(values, [n, dim])));
    try {
      for (let start = 0; start < rows; start += config.blockRows) {
        const count = Math.min(config.blockRows, rows - start);
        const block = tf.tidy(() =>
          tf.matMul(tf.tensor2d(ids.embeddings.subarray(start * dim, (start + count) * dim), [count, dim]), anchorsT),
        );
        const cos = (await block.data()) as Float32Array;
        block.dispose();
        for (let r = 0; r < count; r++) {
          const label = ids.labels[start + r];
          const row = cos.subarray(r * n, (r + 1) * n);
          let best = -Infinity;
          for (let j = 0; j < n; j++) if (j !== label && row[j] > best) best = row[j];
          const own = row[label];
          if (own > best) ownNearest += 1;
          if (best > maxOther) maxOther = best;
          if (own - best < minMargin) minMargin = own - best;
          sumOther += best;
          histogram([own], -1, 1, bins, ownHist);
          histogram([best], -1, 1, bins, otherHist);
        }
        progress({ phase: 'separation', step: Math.min(start + count, rows), total: rows });
      }
    } finally {
      anchorsT.dispose();
    }
    let cosMin = Infinity;
    let cosMax = -Infinity;
    let cosSum = 0;
    for (const c of ids.anchorCos) {
      cosMin = Math.min(cosMin, c);
      cosMax = Math.max(cosMax, c);
      cosSum += c;
    }
    const embeddingsPath = writeTensorFile(join(dir, 'embeddings'), 'float32', [rows, dim], ids.embeddings, {
      what: 'identity embeddings y_ij, unit rows; row i*m+j belongs to anchor i',
      m: config.m,
    });
    const labelsPath = writeTensorFile(join(dir, 'labels'), 'int32', [rows], ids.labels, { what: 'anchor index per row' });
    const cosPath = writeTensorFile(join(dir, 'anchor-cos'), 'float32', [rows], ids.anchorCos, { what: 'drawn cos(y_ij, w_i)' });
    const edges = binEdges(-1, 1, bins);
    const png = await svgToPng(
      histogramSvg({
        title: `Identity embeddings: cos to own anchor vs nearest other anchor (band [${config.lb}, ${config.ub}])`,
        xLabel: 'cosine',
        edges,
        series: [
          { label: 'own anchor', color: '#2ca02c', counts: ownHist },
          { label: 'nearest other anchor', color: '#d62728', counts: otherHist },
        ],
      }),
    );
    const plotPath = join(dir, 'separation.png');
    writeFileAtomic(plotPath, png);
    return {
      outputs: {
        embeddings: embeddingsPath,
        embeddingsData: join(dir, 'embeddings.bin'),
        labels: labelsPath,
        labelsData: join(dir, 'labels.bin'),
        anchorCos: cosPath,
        anchorCosData: join(dir, 'anchor-cos.bin'),
        plot: plotPath,
      },
      metrics: {
        identities: n,
        embeddings: rows,
        anchorCosMin: cosMin,
        anchorCosMax: cosMax,
        anchorCosMean: cosSum / rows,
        ownAnchorNearestFraction: ownNearest / rows,
        nearestOtherAnchorCosMean: sumOther / rows,
        nearestOtherAnchorCosMax: maxOther,
        minMargin,
      },
    };
  },
};
