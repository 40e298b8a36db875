import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  gridSvg,
  hashJson,
  lineChartSvg,
  listCheckpoints,
  resolveThreads,
  sha256,
  svgToPng,
  writeFileAtomic,
  writeJsonAtomic,
  type StageContext,
  type StageDefinition,
} from '@id3/core';
import { decodeImageBytes, readInsightfaceDataset, resizeImage, resolveSourcePath } from '@id3/faces';
import { datasetFromArrays, datasetFromPrepared, identitySelectionSchema, splitValidation, type FaceDataset } from './dataset';
import { iresnetConfigSchema } from './iresnet-config';
import { FrTrainer, frTrainerConfigSchema, type FrHistoryPoint } from './trainer';

export const frTrainConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /**
     * The training set: 'prepared' = the prepare stage's crops and identity labels (a `folders`
     * source: one folder per person); 'recordio' = an insightface train.rec + train.idx
     * (112×112 aligned crops, resized to the training resolution); 'sampled' = the sample
     * stage's synthetic dataset (its tensor pack and identity labels).
     */
    dataset: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('prepared') }).strict(),
        z.object({ kind: z.literal('sampled') }).strict(),
        z.object({ kind: z.literal('recordio'), rec: z.string().min(1), idx: z.string().min(1) }).strict(),
      ])
      .default({ kind: 'prepared' }),
    select: identitySelectionSchema.default({}),
    /** Training resolution: 32, 64 or 112 (for 'prepared', one of prepare.sizes). */
    resolution: z.union([z.literal(32), z.literal(64), z.literal(112)]).default(32),
    backbone: iresnetConfigSchema.omit({ resolution: true }).partial().default({}),
    trainer: frTrainerConfigSchema.omit({ seed: true }),
    /** Images held out per identity (of those with enough) to monitor training; never used to select. */
    validationPerIdentity: z.number().int().nonnegative().default(1),
  })
  .strict();
export type FrTrainConfig = z.output<typeof frTrainConfigSchema>;

/** The model a run ends with: its weights are what `eval` scores (`model: 'stage:fr-train'`). */
export const FR_MODEL_CARD_FORMAT = 'id3-fr-model-card/1';

async function loadDataset(config: FrTrainConfig, inputs: Readonly<Record<string, string>>): Promise<FaceDataset> {
  if (config.dataset.kind === 'prepared') return datasetFromPrepared(inputs[`crops${config.resolution}`], inputs.index, config.select);
  if (config.dataset.kind === 'sampled') return datasetFromPrepared(inputs.crops, inputs.index, config.select);
  const ds = readInsightfaceDataset(inputs.rec, inputs.idx);
  try {
    const r = config.resolution;
    const px = r * r * 3;
    const crops = new Uint8Array(ds.images.length * px);
    for (let i = 0; i < ds.images.length; i++) {
      let image = await decodeImageBytes(ds.imageBytes(i), `${inputs.rec}[key ${ds.images[i].key}]`);
      if (image.width !== r || image.height !== r) image = await resizeImage(image, r, r);
      crops.set(image.data, i * px);
    }
    return datasetFromArrays(
      r,
      crops,
      ds.images.map((im) => String(im.label)),
      config.select,
      `RecordIO dataset ${inputs.rec}`,
    );
  } finally {
    ds.close();
  }
}

const CURVE_WIDTH = 800;
const CURVE_PANEL_HEIGHT = 360;

/**
 * The training curves as two panels over the same steps: the loss on its own scale above, and
 * the accuracies on [0, 1] below (on one axis with the loss they were squashed near zero, and the
 * gap between batch and held-out accuracy is what tells whether the set's identities can be learned).
 */
export function frTrainingCurveSvg(history: readonly FrHistoryPoint[]): string {
  const steps = history.map((h) => h.step);
  const xRange: [number, number] = [Math.min(...steps), Math.max(...steps)];
  const size = { width: CURVE_WIDTH, height: CURVE_PANEL_HEIGHT, xRange };
  const loss = lineChartSvg({
    ...size,
    title: 'fr-train: loss',
    xLabel: 'step',
    yLabel: 'loss (margin softmax)',
    legend: false, // one series, named by the y label; a legend would cover the early peak
    series: [{ label: 'loss (margin softmax)', color: '#000000', points: history.map((h) => ({ x: h.step, y: h.loss })) }],
  });
  const accuracy = lineChartSvg({
    ...size,
    title: 'fr-train: accuracy',
    xLabel: 'step',
    yLabel: 'accuracy',
    yRange: [0, 1],
    series: [
      { label: 'batch accuracy', color: '#1f77b4', points: history.map((h) => ({ x: h.step, y: h.accuracy })) },
      {
        label: 'validation accuracy (held-out images of the training identities)',
        color: '#2ca02c',
        points: history.filter((h) => h.validationAccuracy !== undefined).map((h) => ({ x: h.step, y: h.validationAccuracy as number })),
      },
    ].filter((s) => s.points.length > 0),
  });
  return gridSvg([loss, accuracy], 1, CURVE_WIDTH, CURVE_PANEL_HEIGHT);
}

/**
 * Default minutes between timed checkpoints. Table 1's recognizer writes 31 MB per checkpoint, its
 * files within 0.14 s here (the optimizer-state read before them was not timed).
 */
export const DEFAULT_TIMED_CHECKPOINT_MINUTES = 5;

/**
 * Minutes between timed checkpoints, from the worker's `ID3_CHECKPOINT_MINUTES` (0 turns them off).
 * Beside the step schedule: a worker killed between step checkpoints loses at most this much
 * training. Resuming is exact (on the same thread count: a step splits its batch by threads), so
 * where a run was saved changes none of its outputs; that is why it is the worker's setting and not
 * the stage's config (whose hash would make finished runs stale).
 */
export function timedCheckpointMinutes(value = process.env.ID3_CHECKPOINT_MINUTES): number {
  if (value === undefined || value.trim() === '') return DEFAULT_TIMED_CHECKPOINT_MINUTES;
  const minutes = Number(value);
  if (!Number.isFinite(minutes) || minutes < 0)
    throw new InvalidInputError(`ID3_CHECKPOINT_MINUTES: '${value}' is not a number of minutes ≥ 0 (0 turns timed checkpoints off)`, {
      field: 'ID3_CHECKPOINT_MINUTES',
    });
  return minutes;
}

/**
 * `fr-train`: an IResNet with a margin head on an identity-labelled face set (arcface_torch on
 * tfjs). A fixed schedule, resumed from its newest checkpoint; the last weights are the model.
 */
export const frTrainStage: StageDefinition<typeof frTrainConfigSchema> = {
  name: 'fr-train',
  version: 1,
  schema: frTrainConfigSchema,
  upstream: ['prepare', 'sample'],
  reads: (config): Record<string, string[]> =>
    config.dataset.kind === 'prepared'
      ? { prepare: [`crops${config.resolution}`, 'index'] }
      : config.dataset.kind === 'sampled'
        ? { sample: ['crops', 'index'] }
        : {},
  externalInputs: (config): Record<string, string> =>
    config.dataset.kind === 'recordio' ? { rec: resolveSourcePath(config.dataset.rec), idx: resolveSourcePath(config.dataset.idx) } : {},
  check(config, sections) {
    const sample = sections.sample;
    if (config.dataset.kind === 'sampled' && sample && sample.resolution !== config.resolution) {
      throw new InvalidInputError(
        `field 'fr-train.resolution': ${config.resolution}, but the sampled dataset is ${String(sample.resolution)}×${String(sample.resolution)}`,
        {
          field: 'fr-train.resolution',
        },
      );
    }
    const prepare = sections.prepare;
    if (config.dataset.kind !== 'prepared' || !prepare) return;
    const sizes = prepare.sizes as number[] | undefined;
    if (sizes && !sizes.includes(config.resolution)) {
      throw new InvalidInputError(`field 'fr-train.resolution': ${config.resolution} is not one of prepare.sizes [${sizes.join(', ')}]`, {
        field: 'fr-train.resolution',
      });
    }
    const source = prepare.source as { kind?: string } | undefined;
    if (source?.kind === 'utkface') {
      throw new InvalidInputError(
        `field 'fr-train.dataset': prepare.source.kind 'utkface' has no identity labels; use 'folders' or 'procedural'`,
        {
          field: 'fr-train.dataset',
        },
      );
    }
  },
  run: (ctx) => trainRecognizer(ctx),
};

async function trainRecognizer({ config, dir, inputs, progress, backend }: StageContext<FrTrainConfig>) {
  const data = await loadDataset(config, inputs);
  const backbone = iresnetConfigSchema.parse({ depth: 18, ...config.backbone, resolution: config.resolution });
  const trainerConfig = frTrainerConfigSchema.parse({ ...config.trainer, seed: config.seed });
  const { train, validation } = splitValidation(data.labels, config.validationPerIdentity, config.seed);
  // What must match for a checkpoint to resume exactly: not the step count (extending a
  // finished run continues it) nor checkpoint/logging settings.
  const knobs: Partial<typeof trainerConfig> = { ...trainerConfig };
  delete knobs.steps;
  delete knobs.checkpointEvery;
  delete knobs.keepCheckpoints;
  delete knobs.threads; // a resumed run may use another machine's cores
  const dataHash = hashJson({ crops: sha256(data.crops), labels: Array.from(data.labels), classes: data.classNames });
  const key = hashJson({ backbone, knobs, validationPerIdentity: config.validationPerIdentity, data: dataHash });
  const trainer = new FrTrainer(backbone, trainerConfig, data, train, key);
  const checkpoints = join(dir, 'checkpoints');
  const total = trainerConfig.steps;
  const started = Date.now();
  const timedMinutes = timedCheckpointMinutes();
  let savedAt = started;
  try {
    await trainer.startWorkers(resolveThreads(trainerConfig.threads, backend), backend);
    const resumed = trainer.resumeFrom(checkpoints);
    const resumedFromStep = resumed && 'step' in resumed ? resumed.step : 0;
    if (resumed && 'step' in resumed) progress({ phase: 'resume', step: resumed.step, total, message: `resuming from ${resumed.path}` });
    else if (resumed) progress({ phase: 'resume', message: `starting fresh: ${resumed.ignored}` });
    progress({
      phase: 'train',
      step: trainer.step,
      total,
      message: `IResNet-${backbone.depth} ×${backbone.width} at ${backbone.resolution}×${backbone.resolution}, ${trainer.net.parameterCount()} parameters; ${data.classes} identities, ${train.length} training + ${validation.length} validation images; ${trainer.threads} thread(s); ${trainer.head.spec.kind} s=${trainer.head.spec.scale.toFixed(2)} m=${trainer.head.spec.margin}`,
    });
    const writeCurve = async (): Promise<string> => {
      const path = join(dir, 'training-curve.png');
      if (trainer.history.length > 1) writeFileAtomic(path, await svgToPng(frTrainingCurveSvg(trainer.history)));
      return path;
    };
    while (trainer.step < total) {
      const log = await trainer.trainStep();
      progress({
        phase: 'train',
        step: log.step,
        total,
        metrics: {
          loss: log.loss,
          accuracy: log.accuracy,
          learningRate: log.learningRate,
          gradNorm: log.gradNorm,
          imagesPerSecond: trainerConfig.batchSize / log.seconds,
        },
      });
      if (log.step % trainerConfig.checkpointEvery === 0 || log.step === total) {
        trainer.noteValidation(await trainer.validate(validation));
        const path = await trainer.saveCheckpoint(checkpoints);
        progress({ phase: 'checkpoint', step: log.step, total, message: path });
        await writeCurve();
        savedAt = Date.now();
      } else if (timedMinutes > 0 && Date.now() - savedAt >= timedMinutes * 60_000) {
        // Weights, optimizer, RNG and history only: no validation, so the history matches an unbroken run's.
        const path = await trainer.saveCheckpoint(checkpoints);
        progress({ phase: 'checkpoint', step: log.step, total, message: `${path} (timed, every ${timedMinutes} min)` });
        savedAt = Date.now();
      }
    }
    if (listCheckpoints(checkpoints).at(-1)?.step !== trainer.step) await trainer.saveCheckpoint(checkpoints);

    // The model: the last checkpoint's backbone (a fixed schedule; nothing is selected).
    const modelDir = join(dir, 'model');
    mkdirSync(modelDir, { recursive: true });
    const newest = join(checkpoints, listCheckpoints(checkpoints).at(-1)?.name ?? '');
    for (const f of ['backbone.json', 'backbone.bin']) cpSync(join(newest, f), join(modelDir, f));
    const validationAccuracy = await trainer.validate(validation);
    const recent = trainer.history.slice(-5);
    const mean = (f: (h: FrHistoryPoint) => number): number =>
      recent.length ? recent.reduce((s, h) => s + f(h), 0) / recent.length : Number.NaN;
    const card = {
      format: FR_MODEL_CARD_FORMAT,
      backbone,
      head: trainer.head.spec,
      alignment: 'ArcFace 5-point template, 112×112 crop resized to the model resolution; RGB scaled to [-1, 1]',
      dataset: {
        kind: config.dataset.kind,
        identities: data.classes,
        trainImages: train.length,
        validationImages: validation.length,
        select: config.select,
      },
      trainer: trainerConfig,
      steps: trainer.step,
      trainSeconds: (Date.now() - started) / 1000,
      resumedFromStep,
      finalLoss: mean((h) => h.loss),
      validationAccuracy,
      note: 'validation: closed-set accuracy (nearest class centre) on held-out images of the training identities; monitoring only, never used to choose the model',
    };
    const outputs: Record<string, string> = {
      model: join(modelDir, 'backbone.json'),
      modelData: join(modelDir, 'backbone.bin'),
      card: join(modelDir, 'card.json'),
      history: join(dir, 'history.json'),
    };
    writeJsonAtomic(outputs.card, card);
    writeJsonAtomic(outputs.history, { history: trainer.history });
    if (trainer.history.length > 1) outputs.curve = await writeCurve();
    return {
      outputs,
      metrics: {
        steps: trainer.step,
        resumedFromStep,
        identities: data.classes,
        trainImages: train.length,
        parameters: trainer.net.parameterCount(),
        finalLoss: card.finalLoss,
        finalBatchAccuracy: mean((h) => h.accuracy),
        validationAccuracy,
        imagesPerSecond: mean((h) => h.imagesPerSecond),
      },
    };
  } finally {
    await trainer.close();
  }
}
