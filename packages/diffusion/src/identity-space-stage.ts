import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  Rng,
  lineChartSvg,
  hashJson,
  readTensorFile,
  sha256,
  svgToPng,
  writeFileAtomic,
  writeTensorFile,
  type StageContext,
  type StageDefinition,
} from '@id3/core';
import { embedderInfo, loadEmbedder } from '@id3/faces';
import { fitIdentitySpace, toWhitened, writeIdentitySpace } from '@id3/anchors';
import { embedCrops } from './held-out-evaluation';
import { heldOutRows, holdoutBySchema, readPreparedLabels } from './holdout';
import { TeacherInput } from './teacher-input';
import { adoptIdentitySpace, adoptableIdentitySpace, recordGeneratorCard, resolveModelPath } from './shipped-model';

const positiveInt = z.number().int().positive();

export const identitySpaceConfigSchema = z
  .object({
    /** Train-diffusion's seed: with `holdout`, it names the held-out rows, which are never fitted on. */
    seed: z.number().int().nonnegative(),
    /** The generator's training side: embeddings go through the path f(x̂0) takes at it. */
    resolution: z.number().int().min(8).default(32),
    /** Train-diffusion's holdout (images kept out of training). */
    holdout: z.number().int().nonnegative().default(64),
    /** Train-diffusion's holdoutBy ('person': whole people held out). */
    holdoutBy: holdoutBySchema,
    /** Keep the fewest directions holding this fraction of the variance… */
    variance: z.number().gt(0).max(1).default(0.95),
    /** …or exactly k directions. */
    k: positiveInt.optional(),
    /** Refuse to fit on fewer training embeddings (a 128-d covariance needs thousands). */
    minFit: z.number().int().min(2).default(5000),
    /** Crops per teacher call. */
    batch: positiveInt.default(16),
    /** Save the embeddings made so far every this many rows (a killed stage resumes there). */
    checkpointEvery: positiveInt.default(512),
    /** Random pairs sampled for the spread statistics. */
    pairs: positiveInt.default(20000),
    /**
     * Adopt instead of fitting: a generator folder conditioned in a whitened identity space (e.g.
     * a shipped models/<name>, relative to the repository root) whose artefact is copied, so the
     * anchors and identities are placed in the very space that generator was conditioned in.
     */
    from: z.string().min(1).optional(),
  })
  .strict();
export type IdentitySpaceConfig = z.output<typeof identitySpaceConfigSchema>;

/** Mean cosine over `pairs` random pairs of distinct rows (among `rows`) of unit vectors x ([n, d]). */
export function randomPairCosMean(x: Float32Array, d: number, rows: readonly number[], pairs: number, rng: Rng): number {
  let sum = 0;
  for (let p = 0; p < pairs; p++) {
    const a0 = rng.int(rows.length);
    const b0 = rng.int(rows.length - 1);
    const i = rows[a0];
    const j = rows[b0 >= a0 ? b0 + 1 : b0];
    let c = 0;
    for (let a = 0; a < d; a++) c += x[i * d + a] * x[j * d + a];
    sum += c;
  }
  return sum / pairs;
}

/**
 * `identity-space`: fits the whitened identity space (packages/anchors, identity-space.ts) on
 * the teacher's embeddings of the training crops, made the way the generator's identity term
 * sees an image — the crop at the training resolution, mapped onto the teacher's input by
 * TeacherInput, image + flip — never on train-diffusion's held-out rows. It lives here because
 * that path (TeacherInput, the held-out split) is the generator's; the map itself is the
 * anchors package's. Writes the versioned artefact (identity-space.json + its map tensor), the
 * embeddings it fitted on and a cumulative-variance plot.
 */
export const identitySpaceStage: StageDefinition<typeof identitySpaceConfigSchema> = {
  name: 'identity-space',
  version: 1,
  schema: identitySpaceConfigSchema,
  upstream: ['prepare'],
  reads: (config) =>
    config.from
      ? { prepare: ['embeddings'] }
      : { prepare: [`crops${config.resolution}`, 'embeddings', ...(config.holdoutBy === 'person' ? ['index'] : [])] },
  externalInputs: (config): Record<string, string> => (config.from ? { from: resolveModelPath(config.from) } : {}),
  /** The fit must see what the generator sees and exclude what it holds out: same resolution, holdout and seed. */
  check(config, sections) {
    if (config.from) {
      // Adopted, not fitted: the fit's resolution, holdout and seed do not apply.
      const teacher = sections.prepare?.teacher;
      adoptableIdentitySpace(resolveModelPath(config.from), { teacher: typeof teacher === 'string' ? teacher : undefined });
      return;
    }
    const sizes = sections.prepare?.sizes as number[] | undefined;
    if (sizes && !sizes.includes(config.resolution)) {
      throw new InvalidInputError(
        `field 'identity-space.resolution': ${config.resolution} is not one of prepare.sizes [${sizes.join(', ')}]`,
        {
          field: 'identity-space.resolution',
        },
      );
    }
    const teacher = sections.prepare?.teacher;
    if (config.k !== undefined && typeof teacher === 'string') {
      const dim = embedderInfo(teacher, 'prepare.teacher').dim;
      if (config.k > dim)
        throw new InvalidInputError(
          `field 'identity-space.k': ${config.k} exceeds the teacher's embedding size ${dim} (prepare.teacher '${teacher}')`,
          {
            field: 'identity-space.k',
          },
        );
    }
    const td = sections['train-diffusion'];
    if (td) {
      for (const key of ['resolution', 'holdout', 'holdoutBy', 'seed'] as const) {
        // An absent train-diffusion.holdoutBy is its default, 'image'.
        const theirs = key === 'holdoutBy' ? (td[key] ?? 'image') : td[key];
        if (theirs !== undefined && theirs !== config[key]) {
          throw new InvalidInputError(
            `field 'identity-space.${key}': ${config[key]} differs from train-diffusion.${key} ${String(theirs)}: the identity space must be fitted on the generator's own training images, through its own resolution`,
            { field: `identity-space.${key}` },
          );
        }
      }
    }
  },
  async run({ config, dir, inputs, progress }) {
    if (config.from) return adoptFrom(config, config.from, dir, inputs, progress);
    const size = config.resolution;
    const crops = readTensorFile(inputs[`crops${size}`]);
    const y = readTensorFile(inputs.embeddings);
    const n = crops.header.shape[0];
    const teacherName = String((y.header.meta as { teacher?: string } | undefined)?.teacher ?? '');
    if (!(crops.values instanceof Uint8Array) || crops.header.shape[1] !== size)
      throw new InvalidInputError(`${inputs[`crops${size}`]}: expected uint8 [n, ${size}, ${size}, 3] crops`, {
        file: inputs[`crops${size}`],
      });
    if (y.header.shape[0] !== n)
      throw new InvalidInputError(`${inputs.embeddings}: ${y.header.shape[0]} rows but ${n} crops`, { file: inputs.embeddings });
    if (config.holdout >= n)
      throw new InvalidInputError(`field 'identity-space.holdout': ${config.holdout} held out of only ${n} prepared images`, {
        field: 'identity-space.holdout',
      });
    const labels = config.holdoutBy === 'person' ? readPreparedLabels(inputs.index, n, 'identity-space.holdoutBy') : undefined;
    const held = new Set(heldOutRows(n, config.seed, config.holdout, labels));
    const fitRows = Array.from({ length: n }, (_, i) => i).filter((i) => !held.has(i));
    if (fitRows.length < config.minFit) {
      throw new InvalidInputError(
        `field 'identity-space.minFit': only ${fitRows.length} training embeddings (${n} prepared − ${held.size} held out), fewer than ${config.minFit}: prepare more images, or lower minFit knowing the fit is noisy`,
        { field: 'identity-space.minFit' },
      );
    }
    const teacher = await loadEmbedder(teacherName, 'prepare.teacher');
    const dim = teacher.dim;

    // Embed every prepared row (held-out ones too: reports compare them), resumably.
    const started = Date.now();
    const partialPath = join(dir, 'embeddings-partial');
    const key = hashJson({ crops: crops.header.sha256, teacher: teacherName, size });
    let emb: Float32Array = new Float32Array(n * dim);
    let done = 0;
    // A finished run's embeddings (same crops, teacher and resolution: another variance or k
    // needs no new embeddings), else a killed run's partial ones.
    const embeddingsBase = join(dir, 'embeddings');
    for (const path of [embeddingsBase, partialPath]) {
      if (done > 0 || !existsSync(`${path}.json`)) continue;
      try {
        const p = readTensorFile(path);
        if (p.header.meta?.key === key && p.values instanceof Float32Array && p.values.length === emb.length) {
          emb = p.values;
          done = path === partialPath ? Number(p.header.meta.done) : n;
          progress({ phase: 'resume', step: done, total: n, message: `reusing the embeddings of ${done} rows (${path}.json)` });
        }
      } catch (err) {
        progress({ phase: 'resume', message: `ignoring unreadable embeddings ${path}.json: ${(err as Error).message}` });
      }
    }
    const px = size * size * 3;
    const input = TeacherInput.forTeacher(teacher, size);
    try {
      while (done < n) {
        const m = Math.min(config.checkpointEvery, n - done);
        const values = new Float32Array(m * px);
        const bytes = crops.values.subarray(done * px, (done + m) * px);
        for (let i = 0; i < values.length; i++) values[i] = bytes[i] / 127.5 - 1;
        emb.set(await embedCrops(teacher, input, values, size, config.batch), done * dim);
        done += m;
        if (done < n) writeTensorFile(partialPath, 'float32', [n, dim], emb, { key, done });
        progress({ phase: 'embed', step: done, total: n, metrics: { imagesPerSecond: done / ((Date.now() - started) / 1000) } });
      }
    } finally {
      input.dispose();
    }
    const embedSeconds = (Date.now() - started) / 1000;

    progress({ phase: 'fit', message: `${fitRows.length} training embeddings, ${dim}-d` });
    const fitted = fitIdentitySpace(emb, dim, { rows: fitRows, variance: config.variance, k: config.k });
    const fitData = new Float32Array(fitRows.length * dim);
    fitRows.forEach((r, i) => fitData.set(emb.subarray(r * dim, (r + 1) * dim), i * dim));
    const space = writeIdentitySpace(dir, fitted, {
      teacher: teacherName,
      count: fitRows.length,
      dataSha256: sha256(new Uint8Array(fitData.buffer)),
      source: `teacher '${teacherName}' on prepare's ${size}×${size} crops mapped onto its input by TeacherInput, image + flip (the path f(x̂0) takes in train-diffusion); train-diffusion's ${held.size} held-out rows (seed ${config.seed}, by ${config.holdoutBy}) excluded`,
      ...(config.k === undefined ? { varianceTarget: config.variance } : {}),
    });
    const embeddingsPath = writeTensorFile(embeddingsBase, 'float32', [n, dim], emb, {
      key,
      teacher: teacherName,
      resolution: size,
      what: 'teacher embeddings of every prepared crop through the f(x̂0) path (unit rows, row i = prepared row i)',
    });
    const fitRowsPath = writeTensorFile(join(dir, 'fit-rows'), 'int32', [fitRows.length], Int32Array.from(fitRows), {
      what: 'prepared rows the identity space was fitted on (train-diffusion held-out rows excluded)',
    });
    rmSync(`${partialPath}.json`, { force: true });
    rmSync(`${partialPath}.bin`, { force: true });

    // How the training-resolution path relates to prepare's y, and how spread the faces are in each space.
    let pathCos = 0;
    for (let i = 0; i < n; i++) {
      let c = 0;
      for (let a = 0; a < dim; a++) c += emb[i * dim + a] * (y.values as Float32Array)[i * dim + a];
      pathCos += c;
    }
    const z = toWhitened(space.map, emb);
    const rng = new Rng(config.seed).fork('identity-space-pairs');
    const rawPairCos = randomPairCosMean(emb, dim, fitRows, config.pairs, rng.fork('raw'));
    const whitenedPairCos = randomPairCosMean(z, space.map.k, fitRows, config.pairs, rng.fork('whitened'));

    const total = fitted.eigenvalues.reduce((s, v) => s + Math.max(v, 0), 0);
    let cum = 0;
    const curve = Array.from(fitted.eigenvalues, (v, i) => ({ x: i + 1, y: (cum += Math.max(v, 0)) / total }));
    const plotPath = join(dir, 'variance.png');
    writeFileAtomic(
      plotPath,
      await svgToPng(
        lineChartSvg({
          title: `Identity space: cumulative variance of ${fitRows.length} '${teacherName}' embeddings at ${size}×${size}; k = ${space.map.k}`,
          xLabel: 'directions kept (covariance eigenvectors, decreasing eigenvalue)',
          yLabel: 'fraction of variance',
          yRange: [0, 1],
          series: [
            { label: 'cumulative variance', color: '#1f77b4', points: curve },
            {
              label: `kept: k = ${space.map.k} (${(100 * space.map.varianceKept).toFixed(1)}%)`,
              color: '#d62728',
              points: [
                { x: space.map.k, y: 0 },
                { x: space.map.k, y: 1 },
              ],
            },
          ],
        }),
      ),
    );
    return {
      outputs: {
        identitySpace: space.path,
        identitySpaceMap: join(dir, space.header.map.file),
        identitySpaceMapData: join(dir, 'identity-space-map.bin'),
        embeddings: embeddingsPath,
        embeddingsData: join(dir, 'embeddings.bin'),
        fitRows: fitRowsPath,
        fitRowsData: join(dir, 'fit-rows.bin'),
        plot: plotPath,
      },
      metrics: {
        images: n,
        fitCount: fitRows.length,
        heldOut: held.size,
        dim,
        k: space.map.k,
        varianceKept: space.map.varianceKept,
        meanNorm: Math.hypot(...space.map.mean),
        rawPairCosMean: rawPairCos,
        whitenedPairCosMean: whitenedPairCos,
        pathCosToPreparedMean: pathCos / n,
        embedSeconds,
      },
    };
  },
};

/**
 * identity-space.from: copy a generator folder's identity-space artefact (bytes: the same sha256
 * the generator's descriptor names), refusing a folder not conditioned in a whitened space or of
 * another teacher than prepare's; plus the spread of prepare's embeddings in it, and the folder's
 * model card when it has one.
 */
function adoptFrom(
  config: IdentitySpaceConfig,
  from: string,
  dir: string,
  inputs: Readonly<Record<string, string>>,
  progress: StageContext<IdentitySpaceConfig>['progress'],
) {
  const y = readTensorFile(inputs.embeddings);
  const teacher = String((y.header.meta as { teacher?: string } | undefined)?.teacher ?? '');
  const modelDir = resolveModelPath(from);
  const adopted = adoptIdentitySpace(modelDir, dir, { teacher });
  const { space } = adopted;
  progress({ phase: 'adopt', message: `identity space ${space.sha256} (k = ${space.map.k}) of ${adopted.path}` });
  const outputs: Record<string, string> = { ...adopted.outputs };
  const card = recordGeneratorCard(modelDir, dir);
  if (card) outputs.modelCard = card;
  const n = y.header.shape[0];
  const dim = space.map.dim;
  const rows = Array.from({ length: n }, (_, i) => i);
  const rng = new Rng(config.seed).fork('identity-space-pairs');
  const values = y.values as Float32Array;
  return Promise.resolve({
    outputs,
    metrics: {
      adopted: 1,
      images: n,
      fitCount: space.header.fit.count,
      dim,
      k: space.map.k,
      varianceKept: space.map.varianceKept,
      meanNorm: Math.hypot(...space.map.mean),
      // Over prepare's embeddings (not the f(x̂0) path a fit uses): how spread this run's faces are in the adopted space.
      ...(n >= 2
        ? {
            rawPairCosMean: randomPairCosMean(values, dim, rows, config.pairs, rng.fork('raw')),
            whitenedPairCosMean: randomPairCosMean(toWhitened(space.map, values), space.map.k, rows, config.pairs, rng.fork('whitened')),
          }
        : {}),
    },
  });
}
