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
import { fromWhitened, readIdentitySpace, requireSameIdentitySpace, type LoadedIdentitySpace } from './identity-space';
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
    /**
     * Where the anchors are placed: 'teacher' = on the teacher's own sphere (the paper); 'whitened'
     * = Tammes in the identity space's k whitened directions (the identity-space stage's artefact),
     * then mapped back onto the teacher's sphere, so they land where real faces are. `dim` stays
     * the teacher's embedding size either way.
     */
    space: z.enum(['teacher', 'whitened']).default('teacher'),
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

/**
 * What a header records about the space its rows were placed in: a later stage (identities, the
 * sampler) compares `identitySpace` with the artefact it reads and refuses a mismatch.
 */
function spaceMeta(space: LoadedIdentitySpace | undefined): Record<string, unknown> {
  return space
    ? { placement: 'whitened', identitySpace: space.sha256, identitySpaceK: space.map.k, teacher: space.header.teacher }
    : { placement: 'teacher' };
}

/** Mean cosine of consecutive embeddings of one identity (rows i·m+j, i·m+j+1): how alike one identity's images are asked to be. */
function sameIdentityCosMean(x: Float32Array, dim: number, n: number, m: number): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j + 1 < m; j++) {
      const a = (i * m + j) * dim;
      let c = 0;
      for (let k = 0; k < dim; k++) c += x[a + k] * x[a + dim + k];
      sum += c;
      count++;
    }
  }
  return count ? sum / count : Number.NaN;
}

/** The Tammes stage: N well-separated unit anchors, their statistics and a histogram plot. */
export const anchorsStage: StageDefinition<typeof anchorsConfigSchema> = {
  name: 'anchors',
  version: 2,
  schema: anchorsConfigSchema,
  upstream: ['identity-space'],
  reads: (config): Record<string, string[]> => (config.space === 'whitened' ? { 'identity-space': ['identitySpace'] } : {}),
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
  async run({ config, dir, inputs, progress }) {
    // Whitened placement: Tammes runs in the artefact's k directions instead of the teacher's dim.
    const space = config.space === 'whitened' ? readIdentitySpace(inputs.identitySpace, { dim: config.dim }) : undefined;
    const placeDim = space ? space.map.k : config.dim;
    const checkpointPath = join(dir, 'checkpoint');
    const checkpointKey = hashJson(space ? { config, identitySpace: space.sha256 } : config);
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
    const result = await tammesAnchors(
      { ...config, dim: placeDim },
      {
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
            writeTensorFile(checkpointPath, 'float32', [config.n, placeDim], points, { configHash: checkpointKey, step });
            progress({ phase: 'checkpoint', step, total: config.iterations });
          },
        },
      },
    );
    const optimiseSeconds = (Date.now() - started) / 1000;

    progress({ phase: 'statistics', message: 'exact pairwise statistics (anchors and random baseline)' });
    const bins = { bins: config.histogramBins, blockRows: config.blockRows };
    const stats = pairwiseStats(result.points, config.n, placeDim, bins);
    const random = pairwiseStats(randomUnitVectors(config.n, placeDim, new Rng(config.seed)), config.n, placeDim, bins);
    // Whitened placement: the anchors handed on are the points on the teacher's sphere.
    const teacherPoints = space ? fromWhitened(space.map, result.points) : result.points;
    const teacherStats = space ? pairwiseStats(teacherPoints, config.n, config.dim, bins) : undefined;

    const meta = spaceMeta(space);
    const anchorsPath = writeTensorFile(join(dir, 'anchors'), 'float32', [config.n, config.dim], teacherPoints, {
      what: space
        ? `Tammes anchors placed in the ${placeDim}-d whitened identity space, mapped onto the teacher's sphere: unit rows`
        : 'Tammes anchors w_i, unit rows',
      minAngleDeg: stats.minAngleDeg,
      ...meta,
    });
    const whitenedPaths: Record<string, string> = space
      ? {
          anchorsWhitened: writeTensorFile(join(dir, 'anchors-whitened'), 'float32', [config.n, placeDim], result.points, {
            what: 'Tammes anchors in the whitened identity space (unit rows, k-d)',
            minAngleDeg: stats.minAngleDeg,
            ...meta,
          }),
          anchorsWhitenedData: join(dir, 'anchors-whitened.bin'),
        }
      : {};
    const edges = binEdges(-1, 1, config.histogramBins);
    const statsPath = join(dir, 'stats.json');
    writeJsonAtomic(statsPath, {
      space: config.space,
      placementDim: placeDim,
      anchors: { ...statMetrics('', stats), histogram: Array.from(stats.histogram) },
      random: { ...statMetrics('', random), histogram: Array.from(random.histogram) },
      ...(teacherStats ? { teacher: { ...statMetrics('', teacherStats), histogram: Array.from(teacherStats.histogram) } } : {}),
      edges,
      optimiseSeconds,
      resumedFromStep: resume?.step ?? 0,
    });
    const lo = Math.min(stats.meanCos, random.meanCos) - 0.5;
    const png = await svgToPng(
      histogramSvg({
        title: `Pairwise cosines: ${config.n} Tammes anchors vs random unit vectors, d=${placeDim}${space ? ' (whitened)' : ''}`,
        xLabel: 'cosine between two anchors',
        edges,
        density: true,
        series: [
          { label: `Tammes (min angle ${stats.minAngleDeg.toFixed(2)}°)`, color: '#1f77b4', counts: stats.histogram },
          { label: `random (min angle ${random.minAngleDeg.toFixed(2)}°)`, color: '#d62728', counts: random.histogram },
          ...(teacherStats
            ? [{ label: `Tammes mapped onto the teacher's sphere (${config.dim}-d)`, color: '#2ca02c', counts: teacherStats.histogram }]
            : []),
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
      outputs: { anchors: anchorsPath, anchorsData: join(dir, 'anchors.bin'), ...whitenedPaths, stats: statsPath, plot: plotPath },
      metrics: {
        placementDim: placeDim,
        ...statMetrics('', stats),
        ...statMetrics('random_', random),
        ...(teacherStats ? statMetrics('teacher_', teacherStats) : {}),
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
    /**
     * Must equal anchors.space (checked at plan time). 'whitened': the band [lb, ub] is drawn in
     * the whitened identity space around the whitened anchors, and every embedding is mapped onto
     * the teacher's sphere: the rows handed on are teacher embeddings either way.
     */
    space: z.enum(['teacher', 'whitened']).default('teacher'),
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
  version: 2,
  schema: identitiesConfigSchema,
  upstream: ['identity-space', 'anchors'],
  reads: (config): Record<string, string[]> =>
    config.space === 'whitened' ? { anchors: ['anchorsWhitened'], 'identity-space': ['identitySpace'] } : { anchors: ['anchors'] },
  // Anchors and identities must be placed in the same space (and, at run time, the same artefact).
  check(config, sections) {
    const anchorsSpace = sections.anchors?.space;
    if (anchorsSpace !== undefined && anchorsSpace !== config.space) {
      throw new InvalidInputError(
        `field 'identities.space': '${config.space}' differs from anchors.space '${String(anchorsSpace)}': identities are drawn around the anchors in the space they were placed in`,
        { field: 'identities.space' },
      );
    }
  },
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
    const anchorsFile = config.space === 'whitened' ? inputs.anchorsWhitened : inputs.anchors;
    const { header, values } = readTensorFile(anchorsFile);
    const [n, placeDim] = header.shape;
    if (!(values instanceof Float32Array) || header.shape.length !== 2) {
      throw new Error(`${anchorsFile}: expected a float32 [n, dim] anchor matrix`);
    }
    let space: LoadedIdentitySpace | undefined;
    if (config.space === 'whitened') {
      space = readIdentitySpace(inputs.identitySpace);
      requireSameIdentitySpace(header.meta?.identitySpace, anchorsFile, space);
      if (placeDim !== space.map.k)
        throw new InvalidInputError(`${anchorsFile}: ${placeDim}-d anchors, but the identity space keeps k=${space.map.k}`, {
          file: anchorsFile,
        });
    }
    const dim = space ? space.map.dim : placeDim;
    progress({
      phase: 'sample',
      message: `${n} anchors × ${config.m} embeddings, d=${placeDim}${space ? ` (whitened; handed on in ${dim}-d)` : ''}`,
    });
    const seed = new Rng(config.seed).fork('identities').nextUint32();
    const drawn = sampleIdentities(values, placeDim, { m: config.m, lb: config.lb, ub: config.ub, seed });
    // What is handed on: teacher embeddings. In the whitened space, every row and anchor mapped back.
    const ids = space ? { ...drawn, embeddings: fromWhitened(space.map, drawn.embeddings) } : drawn;
    const anchors = space ? fromWhitened(space.map, values) : values;
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
    let teacherAnchorCosMin = Infinity;
    let teacherAnchorCosMax = -Infinity;
    let teacherAnchorCosSum = 0;
    const anchorsT = tf.tidy(() => tf.transpose(tf.tensor2d(anchors, [n, dim])));
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
          teacherAnchorCosMin = Math.min(teacherAnchorCosMin, own);
          teacherAnchorCosMax = Math.max(teacherAnchorCosMax, own);
          teacherAnchorCosSum += own;
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
    const meta = spaceMeta(space);
    const embeddingsPath = writeTensorFile(join(dir, 'embeddings'), 'float32', [rows, dim], ids.embeddings, {
      what: "identity embeddings y_ij on the teacher's sphere, unit rows; row i*m+j belongs to anchor i",
      m: config.m,
      band: [config.lb, config.ub],
      ...meta,
    });
    const whitenedPaths: Record<string, string> = space
      ? {
          embeddingsWhitened: writeTensorFile(join(dir, 'embeddings-whitened'), 'float32', [rows, placeDim], drawn.embeddings, {
            what: 'identity embeddings in the whitened identity space (unit rows, k-d), before the map onto the teacher sphere',
            m: config.m,
            ...meta,
          }),
          embeddingsWhitenedData: join(dir, 'embeddings-whitened.bin'),
        }
      : {};
    const labelsPath = writeTensorFile(join(dir, 'labels'), 'int32', [rows], ids.labels, { what: 'anchor index per row' });
    const cosPath = writeTensorFile(join(dir, 'anchor-cos'), 'float32', [rows], ids.anchorCos, {
      what: space ? 'drawn cos(y_ij, w_i) in the whitened identity space' : 'drawn cos(y_ij, w_i)',
    });
    const edges = binEdges(-1, 1, bins);
    const png = await svgToPng(
      histogramSvg({
        title: `Identity embeddings: cos to own anchor vs nearest other anchor (band [${config.lb}, ${config.ub}]${space ? ` in the whitened space; cosines on the teacher's sphere` : ''})`,
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
        ...whitenedPaths,
        plot: plotPath,
      },
      metrics: {
        identities: n,
        embeddings: rows,
        placementDim: placeDim,
        anchorCosMin: cosMin,
        anchorCosMax: cosMax,
        anchorCosMean: cosSum / rows,
        // The band as the teacher sees it (equal to the drawn band in the teacher space).
        teacherAnchorCosMin,
        teacherAnchorCosMean: teacherAnchorCosSum / rows,
        teacherAnchorCosMax,
        sameIdentityCosMean: sameIdentityCosMean(ids.embeddings, dim, n, config.m),
        ownAnchorNearestFraction: ownNearest / rows,
        nearestOtherAnchorCosMean: sumOther / rows,
        nearestOtherAnchorCosMax: maxOther,
        minMargin,
      },
    };
  },
};
