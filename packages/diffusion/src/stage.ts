import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  hashJson,
  lineChartSvg,
  parseConfig,
  resolveThreads,
  readTensorFile,
  svgToPng,
  writeFileAtomic,
  writeJsonAtomic,
  type StageContext,
  type StageDefinition,
  type TensorHeader,
} from '@id3/core';
import { embedderInfo, loadEmbedder } from '@id3/faces';
import { readIdentitySpace, toWhitened, type LoadedIdentitySpace } from '@id3/anchors';
import { GENERATOR_FORMAT, writeGeneratorDescriptor } from './generator';
import { heldOutRows, holdoutBySchema, readPreparedLabels } from './holdout';
import {
  CheckpointEvaluations,
  ConditionEvaluator,
  evaluationRows,
  pickRows,
  trainingSubset,
  type ConditionEvaluation,
  type ConditionMetrics,
} from './held-out-evaluation';
import { gridPng, toImages } from './images';
import { sampleConditions } from './sampling';
import { scheduleConfigSchema } from './schedule';
import { DiffusionTrainer, listCheckpoints, trainerConfigSchema, type HistoryPoint, type TrainingData } from './trainer';
import { readInitWeights, startFromInit } from './fine-tune';
import { resolveModelPath } from './shipped-model';
import { unetArchitectureSchema, unetConfigSchema } from './unet';

export const trainDiffusionConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /** Training resolution: one of the prepare stage's crop sizes. */
    resolution: z.number().int().min(8).default(32),
    unet: unetArchitectureSchema.default({}),
    /**
     * What the UNet's condition MLP takes: 'teacher' = y itself; 'identity-space' = y whitened
     * into the identity-space stage's space, z = normalize(W·(y − μ)) (k-d), so every direction
     * that tells people apart gets a comparable share of the MLP's input. The identity term, the
     * sampler's guidance and every identity metric keep the teacher's native cosine either way.
     */
    condition: z.enum(['teacher', 'identity-space']).default('teacher'),
    schedule: scheduleConfigSchema.default({}),
    trainer: trainerConfigSchema.omit({ seed: true }),
    /**
     * Fine-tune: a generator folder (e.g. models/<name>, relative to the repository root) whose
     * EMA weights start the weights and their EMA when there is no checkpoint to resume; its UNet,
     * resolution, condition, teacher and attributes must be this run's.
     */
    init: z.string().min(1).optional(),
    /** Images kept out of training: their conditions drive the previews and the evaluation. */
    holdout: z.number().int().min(2).default(64),
    /** 'person': hold out whole people (at least `holdout` photos), so held-out conditions are people never trained on. */
    holdoutBy: holdoutBySchema,
    preview: z
      .object({
        rows: z.number().int().positive().default(6),
        /** Samples per row (column 0 is the held-out real image whose (y, s) conditions the row). */
        samples: z.number().int().positive().default(5),
        ddimSteps: z.number().int().positive().default(25),
      })
      .strict()
      .default({}),
    evaluation: z
      .object({
        enabled: z.boolean().default(true),
        /** Conditions to sample at the end (≤ holdout; each gets another row's attributes). */
        count: z.number().int().min(3).default(64),
        ddimSteps: z.number().int().positive().default(50),
        /** Also evaluate the EMA net at every checkpoint (heldout-history.json, heldout-curve.png), or only at the end. */
        every: z.enum(['checkpoint', 'end']).default('checkpoint'),
        /** Conditions per checkpoint evaluation (the first of the final ones; ≤ count, default min(64, count)). */
        checkpointCount: z.number().int().min(3).optional(),
        checkpointDdimSteps: z.number().int().positive().default(20),
        /** 'training' (proxy mode): the first `count` training rows instead of held-out ones. */
        on: z.enum(['held-out', 'training']).default('held-out'),
        /**
         * Classifier-free guidance scales to evaluate at the end besides the plain conditional
         * model (w = 1, the headline metrics): same conditions and seed, into evaluation.json's
         * `cfg` (a weakly conditioned generator may follow its conditions better with w > 1).
         */
        cfgScales: z.array(z.number().nonnegative()).default([]),
      })
      .strict()
      .superRefine((e, ctx) => {
        if (e.checkpointCount !== undefined && e.checkpointCount > e.count)
          ctx.addIssue({ code: 'custom', path: ['checkpointCount'], message: `${e.checkpointCount} is more than count (${e.count})` });
      })
      .default({}),
    /** Train on only the first `subset` training rows (the proxy mode: a set small enough to be reproduced from its conditions). */
    subset: z.number().int().positive().optional(),
  })
  .strict();
export type TrainDiffusionConfig = z.output<typeof trainDiffusionConfigSchema>;

/** The prepared dataset in memory, split into training rows and held-out rows (seeded). */
function loadPrepared(inputs: Readonly<Record<string, string>>, config: TrainDiffusionConfig) {
  const cropsName = `crops${config.resolution}`;
  const crops = readTensorFile(inputs[cropsName]);
  const emb = readTensorFile(inputs.embeddings);
  const scaled = readTensorFile(inputs.attributesScaled);
  const raw = readTensorFile(inputs.attributes);
  const n = crops.header.shape[0];
  for (const [name, t] of [
    ['embeddings', emb],
    ['attributesScaled', scaled],
    ['attributes', raw],
  ] as const) {
    if (t.header.shape[0] !== n)
      throw new InvalidInputError(`${inputs[name]}: ${t.header.shape[0]} rows but ${n} crops`, { file: inputs[name] });
  }
  if (config.holdout >= n)
    throw new InvalidInputError(`field 'train-diffusion.holdout': ${config.holdout} held out of only ${n} prepared images`, {
      field: 'train-diffusion.holdout',
    });
  const labels = config.holdoutBy === 'person' ? readPreparedLabels(inputs.index, n, 'train-diffusion.holdoutBy') : undefined;
  const heldOut = heldOutRows(n, config.seed, config.holdout, labels);
  const held = new Set(heldOut);
  let data: TrainingData = {
    size: config.resolution,
    crops: crops.values as Uint8Array,
    y: emb.values as Float32Array,
    identityDim: emb.header.shape[1],
    s: scaled.values as Float32Array,
    attributeDim: scaled.header.shape[1],
    trainRows: Array.from({ length: n }, (_, i) => i).filter((i) => !held.has(i)),
  };
  const teacherName = String((emb.header.meta as { teacher?: string } | undefined)?.teacher ?? '');
  // The UNet's condition: y itself, or y in the identity space (whose hash then keys the run).
  const space =
    config.condition === 'identity-space'
      ? readIdentitySpace(inputs.identitySpace, { teacher: teacherName, dim: data.identityDim })
      : undefined;
  if (space) data = { ...data, condition: { values: toWhitened(space.map, data.y), dim: space.map.k } };
  const sMeta = scaled.header.meta as { columns?: string[]; scaling?: string } | undefined;
  return {
    attributesMeta: { columns: sMeta?.columns ?? [], scaling: sMeta?.scaling ?? 'unknown' },
    data,
    heldOut,
    rawAttributes: raw.values as Float32Array,
    teacherName,
    space,
    hashes: [...[crops.header, emb.header, scaled.header].map((h: TensorHeader) => h.sha256), ...(space ? [space.sha256] : [])],
  };
}

/** The UNet's condition rows (y, or y in the identity space) for these prepared rows. */
function conditionRows(data: TrainingData, rows: readonly number[]): Float32Array {
  return data.condition ? pickRows(data.condition.values, data.condition.dim, rows) : pickRows(data.y, data.identityDim, rows);
}

function lossCurveSvg(history: readonly HistoryPoint[]): string {
  const series = [
    { label: 'total', color: '#000000', points: history.map((h) => ({ x: h.step, y: h.total })) },
    { label: 'denoise ‖ε−ε̂‖²', color: '#1f77b4', points: history.map((h) => ({ x: h.step, y: h.denoise })) },
    { label: 'β·recon ‖x0−x̂0‖²', color: '#2ca02c', points: history.map((h) => ({ x: h.step, y: h.recon })) },
    { label: 'γ·⟨f(x̂0), y⟩', color: '#d62728', points: history.filter((h) => h.identity !== 0).map((h) => ({ x: h.step, y: h.identity })) },
  ].filter((s) => s.points.length > 0);
  return lineChartSvg({ title: 'train-diffusion: ID³ loss terms', xLabel: 'step', yLabel: 'loss (mean over logged steps)', series });
}

/**
 * `train-diffusion`: trains the identity- and attribute-conditioned UNet on the prepared crops
 * with the ID³ loss. Resumes from its newest checkpoint (same config and data), writes a preview
 * grid and the loss curve at every checkpoint, and ends with the EMA weights (what the sampler
 * loads) and a held-out evaluation: identity consistency and attribute control.
 */
export const trainDiffusionStage: StageDefinition<typeof trainDiffusionConfigSchema> = {
  name: 'train-diffusion',
  version: 2,
  schema: trainDiffusionConfigSchema,
  upstream: ['prepare', 'identity-space'],
  // The crops at the training resolution, the teacher embeddings y and the attributes s (and the
  // identity-space artefact when the condition is whitened).
  reads: (config): Record<string, string[]> => ({
    prepare: [
      `crops${config.resolution}`,
      'embeddings',
      'attributes',
      'attributesScaled',
      ...(config.holdoutBy === 'person' ? ['index'] : []),
    ],
    ...(config.condition === 'identity-space' ? { 'identity-space': ['identitySpace'] } : {}),
  }),
  // The generator folder it fine-tunes from: its content is an input (another init, another run).
  externalInputs: (config): Record<string, string> => (config.init ? { init: resolveModelPath(config.init) } : {}),
  /**
   * The generator trains on prepare's crops at one of its sizes, in its teacher's embedding
   * space: check both before anything runs, and the UNet's shape constraints (resolution
   * divisible by the levels, channels by the groups), which only training would otherwise meet.
   */
  check(config, sections) {
    const prepare = sections.prepare;
    const sizes = prepare?.sizes as number[] | undefined;
    if (sizes && !sizes.includes(config.resolution)) {
      throw new InvalidInputError(
        `field 'train-diffusion.resolution': ${config.resolution} is not one of prepare.sizes [${sizes.join(', ')}]`,
        { field: 'train-diffusion.resolution' },
      );
    }
    const identityDim = typeof prepare?.teacher === 'string' ? embedderInfo(prepare.teacher, 'prepare.teacher').dim : 128;
    if (config.condition === 'identity-space' && !sections['identity-space'])
      throw new InvalidInputError(
        `field 'train-diffusion.condition': 'identity-space' needs the identity-space stage in this run (before train-diffusion)`,
        { field: 'train-diffusion.condition' },
      );
    parseConfig(
      unetConfigSchema,
      { ...config.unet, resolution: config.resolution, identityDim },
      'train-diffusion config',
      'train-diffusion.unet',
    );
    if (config.init)
      readInitWeights(
        resolveModelPath(config.init),
        { unet: unetArchitectureSchema.parse(config.unet), resolution: config.resolution, teacher: prepare?.teacher as string | undefined },
        false,
      );
  },
  run: (ctx) => trainDiffusion(ctx),
};

async function trainDiffusion({ config, dir, inputs, progress, backend }: StageContext<TrainDiffusionConfig>) {
  const prepared = loadPrepared(inputs, config);
  const { data, heldOut } = prepared;
  // Proxy mode: only the first `subset` training rows train; the evaluation rows are held-out
  // ones, or (evaluation.on 'training') the first training rows. Both checked before training.
  const trainData: TrainingData = { ...data, trainRows: trainingSubset(data.trainRows, config.subset) };
  const evalRows = config.evaluation.enabled
    ? evaluationRows(config.evaluation.on, heldOut, trainData.trainRows, config.evaluation.count, config.seed)
    : [];
  const unetConfig = parseConfig(
    unetConfigSchema,
    {
      ...config.unet,
      resolution: config.resolution,
      identityDim: data.condition?.dim ?? data.identityDim,
      attributeDim: data.attributeDim,
    },
    'train-diffusion config',
    'train-diffusion.unet',
  );
  const trainerConfig = trainerConfigSchema.parse({ ...config.trainer, seed: config.seed });
  const needTeacher = trainerConfig.identity.enabled || config.evaluation.enabled;
  const teacher = needTeacher ? await loadEmbedder(prepared.teacherName, 'prepare.teacher') : undefined;
  // What must match for a checkpoint to be resumed exactly. Not the step count (extending a
  // finished run continues it), nor checkpoint/preview/evaluation settings.
  const trainingKnobs: Partial<typeof trainerConfig> = { ...trainerConfig };
  delete trainingKnobs.checkpointEvery;
  delete trainingKnobs.keepCheckpoints;
  delete trainingKnobs.steps;
  delete trainingKnobs.threads; // a resumed run may use another machine's cores
  // Fine-tuning: the init folder's EMA weights, checked against this run; their hash keys the
  // checkpoints (a checkpoint of another init is never resumed).
  const init = config.init
    ? readInitWeights(resolveModelPath(config.init), {
        unet: unetConfig,
        resolution: config.resolution,
        teacher: prepared.teacherName,
        attributes: prepared.attributesMeta.columns,
        condition: prepared.space ? { space: 'whitened', sha256: prepared.space.sha256 } : { space: 'teacher' },
      })
    : undefined;
  const key = hashJson({
    unetConfig,
    schedule: config.schedule,
    trainingKnobs,
    holdout: config.holdout,
    subset: config.subset, // undefined (every training row) leaves earlier runs' key as it was
    data: prepared.hashes,
    ...(init ? { init: init.sha256 } : {}),
  });
  const trainer = new DiffusionTrainer(unetConfig, config.schedule, trainerConfig, trainData, teacher, key);
  const checkpoints = join(dir, 'checkpoints');
  const total = trainerConfig.steps;
  try {
    await trainer.startWorkers(resolveThreads(trainerConfig.threads, backend), backend);
    const resumed = trainer.resumeFrom(checkpoints);
    if (init && !(resumed && 'step' in resumed)) {
      startFromInit(trainer, init);
      progress({ phase: 'init', step: 0, total, message: `starting from ${init.dir} (EMA weights after ${init.steps} steps)` });
    }
    const resumedFromStep = resumed && 'step' in resumed ? resumed.step : 0;
    if (resumed && 'step' in resumed) progress({ phase: 'resume', step: resumed.step, total, message: `resuming from ${resumed.path}` });
    else if (resumed) progress({ phase: 'resume', message: `starting fresh: ${resumed.ignored}` });
    progress({
      phase: 'train',
      step: trainer.step,
      total,
      message: `UNet ${trainer.net.parameterCount()} parameters, ${trainData.trainRows.length} training images at ${config.resolution}×${config.resolution}, ${trainer.threads} thread(s)`,
    });

    // The grid shows the rows the evaluation judges: held-out ones, or the proxy's training rows.
    const previewSource = config.evaluation.on === 'training' ? trainData.trainRows : heldOut;
    const previewRows = previewSource.slice(0, Math.min(config.preview.rows, previewSource.length));
    const writePreview = async (name: string): Promise<string> => {
      const per = config.preview.samples;
      const rows = previewRows.flatMap((r) => new Array<number>(per).fill(r));
      const samples = await sampleConditions(
        trainer.emaNet(),
        trainer.diffusion,
        { y: conditionRows(data, rows), s: pickRows(data.s, data.attributeDim, rows), count: rows.length },
        { ddimSteps: config.preview.ddimSteps, seed: config.seed },
      );
      const images = toImages(samples, data.size);
      const px = data.size * data.size * 3;
      const grid = previewRows.map((r, i) => [
        { width: data.size, height: data.size, data: data.crops.subarray(r * px, (r + 1) * px) },
        ...images.slice(i * per, (i + 1) * per),
      ]);
      const path = join(dir, name);
      writeFileAtomic(path, await gridPng(grid, Math.max(1, Math.round(64 / data.size))));
      return path;
    };
    const writeCurve = async (): Promise<string> => {
      const path = join(dir, 'loss-curve.png');
      if (trainer.history.length > 1) writeFileAtomic(path, await svgToPng(lossCurveSvg(trainer.history)));
      return path;
    };

    // Whether the generator follows its conditions (identity gap, yaw/age with shuffled
    // attributes), on the EMA net: at every checkpoint with the smaller settings, and at the end.
    const evaluator =
      config.evaluation.enabled && teacher
        ? new ConditionEvaluator(teacher, { ...data, rawAttributes: prepared.rawAttributes }, config.seed + 1)
        : undefined;
    const checkpointEvals =
      evaluator && config.evaluation.every === 'checkpoint'
        ? await CheckpointEvaluations.open(
            evaluator,
            dir,
            {
              on: config.evaluation.on,
              subset: config.subset ?? null,
              rows: evalRows.slice(0, config.evaluation.checkpointCount ?? Math.min(64, config.evaluation.count)),
              ddimSteps: config.evaluation.checkpointDdimSteps,
              seed: config.seed + 1,
            },
            resumedFromStep,
          )
        : undefined;
    const evaluateCheckpoint = async (step: number): Promise<void> => {
      if (!checkpointEvals) return;
      const row = await checkpointEvals.evaluate(trainer.emaNet(), trainer.diffusion, step);
      progress({ phase: 'evaluate', step, total, metrics: Object.fromEntries(Object.entries(row).filter(([, v]) => Number.isFinite(v))) });
    };
    // Cut off while evaluating its checkpoint: evaluate it now, so the curve has no hole.
    if (resumedFromStep > 0 && checkpointEvals && !checkpointEvals.has(resumedFromStep)) await evaluateCheckpoint(resumedFromStep);

    let last = performance.now();
    while (trainer.step < total) {
      const log = await trainer.trainStep();
      const now = performance.now();
      progress({
        phase: 'train',
        step: log.step,
        total,
        metrics: {
          loss: log.total,
          denoise: log.denoise,
          recon: log.recon,
          identity: log.identity,
          identityCos: log.identityCos,
          gradNorm: log.gradNorm,
          imagesPerSecond: trainerConfig.batchSize / ((now - last) / 1000),
        },
      });
      last = now;
      if (log.step % trainerConfig.checkpointEvery === 0 || log.step === total) {
        const path = await trainer.saveCheckpoint(checkpoints);
        progress({ phase: 'checkpoint', step: log.step, total, message: path });
        await writePreview(`preview-step-${String(log.step).padStart(7, '0')}.png`);
        await writeCurve();
        await evaluateCheckpoint(log.step);
        last = performance.now(); // previews and evaluations are not training time
      }
    }
    if (listCheckpoints(checkpoints).at(-1)?.step !== trainer.step) await trainer.saveCheckpoint(checkpoints);

    // Final artefacts: the EMA weights are the model (the sampler loads model/ema.json).
    const modelDir = join(dir, 'model');
    mkdirSync(modelDir, { recursive: true });
    const newest = join(checkpoints, listCheckpoints(checkpoints).at(-1)?.name ?? '');
    for (const f of ['ema.json', 'ema.bin', 'weights.json', 'weights.bin']) cpSync(join(newest, f), join(modelDir, f));
    // The last checkpoint's preview already shows these weights with the same fixed noise.
    const lastPreview = join(dir, `preview-step-${String(trainer.step).padStart(7, '0')}.png`);
    const finalPreview = join(dir, 'preview-final.png');
    if (existsSync(lastPreview)) cpSync(lastPreview, finalPreview);
    else await writePreview('preview-final.png');
    const attributesMeta = prepared.attributesMeta;
    const outputs: Record<string, string> = {
      // The folder a sampler loads (and a shipped model copies): weights + what they mean.
      generator: writeGeneratorDescriptor(modelDir, {
        format: GENERATOR_FORMAT,
        weights: 'ema.json',
        resolution: config.resolution,
        schedule: config.schedule,
        teacher: prepared.teacherName,
        identityDim: data.identityDim,
        ...conditionDescriptor(prepared.space, modelDir),
        attributes: attributesMeta,
        trainingData: { attributesSha256: prepared.hashes[2], images: data.trainRows.length + heldOut.length, heldOut },
        steps: trainer.step,
      }),
      ema: join(modelDir, 'ema.json'),
      emaData: join(modelDir, 'ema.bin'),
      weights: join(modelDir, 'weights.json'),
      weightsData: join(modelDir, 'weights.bin'),
      preview: finalPreview,
    };
    outputs.history = join(dir, 'history.json');
    writeJsonAtomic(outputs.history, { history: trainer.history });
    if (trainer.history.length > 1) outputs.lossCurve = await writeCurve();
    const recent = trainer.history.slice(-10);
    const mean = (f: (h: HistoryPoint) => number): number =>
      recent.length ? recent.reduce((s, h) => s + f(h), 0) / recent.length : Number.NaN;
    const metrics: Record<string, number> = {
      steps: trainer.step,
      resumedFromStep,
      parameters: trainer.net.parameterCount(),
      trainImages: trainData.trainRows.length,
      finalLoss: mean((h) => h.total),
      finalDenoise: mean((h) => h.denoise),
      imagesPerSecond: mean((h) => h.imagesPerSecond),
    };
    if (init) metrics.initSteps = init.steps; // fine-tuned: steps of the generator it started from
    if (config.subset !== undefined) metrics.subset = config.subset; // proxy mode: trained on the first `subset` rows
    if (evaluator) {
      progress({ phase: 'evaluate', message: `sampling ${evalRows.length} ${config.evaluation.on} conditions` });
      const evaluation = await evaluator.evaluate(trainer.emaNet(), trainer.diffusion, evalRows, config.evaluation.ddimSteps);
      const cfg: { cfgScale: number; metrics: ConditionMetrics }[] = [];
      for (const w of config.evaluation.cfgScales.filter((w) => w !== 1)) {
        progress({
          phase: 'evaluate',
          message: `sampling ${evalRows.length} ${config.evaluation.on} conditions, classifier-free guidance w = ${w}`,
        });
        const guided = await evaluator.evaluate(trainer.emaNet(), trainer.diffusion, evalRows, config.evaluation.ddimSteps, w);
        cfg.push({ cfgScale: w, metrics: guided.metrics });
        metrics[`cfg${w}IdentityGap`] = guided.metrics.identityGap;
      }
      outputs.evaluation = join(dir, 'evaluation.json');
      writeJsonAtomic(outputs.evaluation, { ...evaluationDocument(evaluation, config), cfg });
      // Correlations are undefined when fewer than 3 faces were read back: leave those out.
      for (const [k, v] of Object.entries(evaluation.metrics)) if (Number.isFinite(v)) metrics[k] = v;
      // 1: the numbers are of training rows (proxy mode), not held-out ones.
      metrics.evalOnTraining = config.evaluation.on === 'training' ? 1 : 0;
    }
    if (checkpointEvals) Object.assign(outputs, checkpointEvals.outputs());
    return { outputs, metrics };
  } finally {
    await trainer.close();
  }
}

/**
 * The descriptor fields saying what the generator is conditioned on; a whitened generator's folder
 * gets a byte copy of the identity-space artefact, so it samples (and ships) on its own.
 */
function conditionDescriptor(space: LoadedIdentitySpace | undefined, modelDir: string) {
  if (!space) return { identitySpace: 'teacher', condition: { space: 'teacher' as const } };
  const from = dirname(space.path);
  const mapJson = space.header.map.file;
  for (const f of [basename(space.path), mapJson, mapJson.replace(/\.json$/, '.bin')]) cpSync(join(from, f), join(modelDir, f));
  return {
    identitySpace: space.sha256,
    condition: { space: 'whitened' as const, artefact: basename(space.path), sha256: space.sha256 },
  };
}

/**
 * evaluation.json: the final evaluation — identity consistency (teacher cosine of each sample to
 * its own y versus another row's y) and attribute control (yaw and age read back versus those
 * requested, shuffled between rows), with the real photos as the ceiling — saying which rows it
 * is of: held-out ones, or the proxy mode's training rows.
 */
function evaluationDocument(ev: ConditionEvaluation, config: TrainDiffusionConfig) {
  return {
    on: config.evaluation.on,
    subset: config.subset ?? null,
    ddimSteps: config.evaluation.ddimSteps,
    metrics: ev.metrics,
    rows: ev.rows,
    attributeRows: ev.attributeRows,
    requested: ev.requested,
    predicted: ev.predicted,
    realRequested: ev.realRequested,
    note:
      `${config.evaluation.on === 'training' ? 'PROXY: rows are training rows (the first of the training subset), not held-out ones. ' : ''}` +
      "sample i is conditioned on (y of rows[i], s of attributeRows[i]), a fixed derangement, so the yaw/age correlations measure that s is followed; cosines: teacher embedding (image + flip) of the sample, mapped onto the teacher input, with its own y (matched) and another row's y (mismatched, never attributeRows[i]'s when avoidable); \"real\" read-outs are the rows' photos at the training resolution against their own y and attributes (unshuffled).",
  };
}
