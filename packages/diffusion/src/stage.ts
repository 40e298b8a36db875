import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
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
import { embedderInfo, loadEmbedder, type FaceEmbedder } from '@id3/faces';
import { GENERATOR_FORMAT, writeGeneratorDescriptor } from './generator';
import { heldOutRows } from './holdout';
import { embedCrops, identityConsistency, pearson, readAttributes } from './held-out-evaluation';
import { gridPng, toImages } from './images';
import { sampleConditions } from './sampling';
import { scheduleConfigSchema } from './schedule';
import { TeacherInput } from './teacher-input';
import { DiffusionTrainer, listCheckpoints, trainerConfigSchema, type HistoryPoint, type TrainingData } from './trainer';
import { unetArchitectureSchema, unetConfigSchema } from './unet';

export const trainDiffusionConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /** Training resolution: one of the prepare stage's crop sizes. */
    resolution: z.number().int().min(8).default(32),
    unet: unetArchitectureSchema.default({}),
    schedule: scheduleConfigSchema.default({}),
    trainer: trainerConfigSchema.omit({ seed: true }),
    /** Images kept out of training: their conditions drive the previews and the evaluation. */
    holdout: z.number().int().min(2).default(64),
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
        /** Held-out conditions to sample (≤ holdout). */
        count: z.number().int().min(3).default(64),
        ddimSteps: z.number().int().positive().default(50),
      })
      .strict()
      .default({}),
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
  const heldOut = heldOutRows(n, config.seed, config.holdout);
  const held = new Set(heldOut);
  const data: TrainingData = {
    size: config.resolution,
    crops: crops.values as Uint8Array,
    y: emb.values as Float32Array,
    identityDim: emb.header.shape[1],
    s: scaled.values as Float32Array,
    attributeDim: scaled.header.shape[1],
    trainRows: Array.from({ length: n }, (_, i) => i).filter((i) => !held.has(i)),
  };
  const teacherName = String((emb.header.meta as { teacher?: string } | undefined)?.teacher ?? '');
  const sMeta = scaled.header.meta as { columns?: string[]; scaling?: string } | undefined;
  return {
    attributesMeta: { columns: sMeta?.columns ?? [], scaling: sMeta?.scaling ?? 'unknown' },
    data,
    heldOut,
    rawAttributes: raw.values as Float32Array,
    teacherName,
    hashes: [crops.header, emb.header, scaled.header].map((h: TensorHeader) => h.sha256),
  };
}

function pick(values: Float32Array, width: number, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(values.subarray(r * width, (r + 1) * width), i * width));
  return out;
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
  upstream: ['prepare'],
  // The crops at the training resolution, the teacher embeddings y and the attributes s.
  reads: (config) => ({ prepare: [`crops${config.resolution}`, 'embeddings', 'attributes', 'attributesScaled'] }),
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
    parseConfig(
      unetConfigSchema,
      { ...config.unet, resolution: config.resolution, identityDim },
      'train-diffusion config',
      'train-diffusion.unet',
    );
  },
  run: (ctx) => trainDiffusion(ctx),
};

async function trainDiffusion({ config, dir, inputs, progress, backend }: StageContext<TrainDiffusionConfig>) {
  const prepared = loadPrepared(inputs, config);
  const { data, heldOut } = prepared;
  const unetConfig = parseConfig(
    unetConfigSchema,
    { ...config.unet, resolution: config.resolution, identityDim: data.identityDim, attributeDim: data.attributeDim },
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
  const key = hashJson({ unetConfig, schedule: config.schedule, trainingKnobs, holdout: config.holdout, data: prepared.hashes });
  const trainer = new DiffusionTrainer(unetConfig, config.schedule, trainerConfig, data, teacher, key);
  const checkpoints = join(dir, 'checkpoints');
  const total = trainerConfig.steps;
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
      message: `UNet ${trainer.net.parameterCount()} parameters, ${data.trainRows.length} training images at ${config.resolution}×${config.resolution}, ${trainer.threads} thread(s)`,
    });

    const previewRows = heldOut.slice(0, Math.min(config.preview.rows, heldOut.length));
    const writePreview = async (name: string): Promise<string> => {
      const per = config.preview.samples;
      const rows = previewRows.flatMap((r) => new Array<number>(per).fill(r));
      const samples = await sampleConditions(
        trainer.emaNet(),
        trainer.diffusion,
        { y: pick(data.y, data.identityDim, rows), s: pick(data.s, data.attributeDim, rows), count: rows.length },
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
        last = performance.now(); // previews are not training time
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
        identitySpace: 'teacher',
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
      trainImages: data.trainRows.length,
      finalLoss: mean((h) => h.total),
      finalDenoise: mean((h) => h.denoise),
      imagesPerSecond: mean((h) => h.imagesPerSecond),
    };
    if (config.evaluation.enabled && teacher) {
      progress({ phase: 'evaluate', message: `sampling ${Math.min(config.evaluation.count, heldOut.length)} held-out conditions` });
      const evaluation = await evaluateHeldOut(trainer, teacher, prepared, config);
      outputs.evaluation = join(dir, 'evaluation.json');
      writeJsonAtomic(outputs.evaluation, evaluation);
      // Correlations are undefined when fewer than 3 faces were read back: leave those out.
      for (const [k, v] of Object.entries(evaluation.metrics)) if (Number.isFinite(v)) metrics[k] = v;
    }
    return { outputs, metrics };
  } finally {
    await trainer.close();
  }
}

/**
 * The generator on conditions it never trained on: identity consistency (teacher cosine of each
 * sample to its own y versus to another held-out y) and attribute control (yaw and age read
 * back from the samples versus requested), with the same read-outs on the real held-out crops
 * at the training resolution as the ceiling.
 */
async function evaluateHeldOut(
  trainer: DiffusionTrainer,
  teacher: FaceEmbedder,
  prepared: ReturnType<typeof loadPrepared>,
  config: TrainDiffusionConfig,
) {
  const { data, heldOut, rawAttributes } = prepared;
  const rows = heldOut.slice(0, Math.min(config.evaluation.count, heldOut.length));
  const d = data.identityDim;
  const cond = { y: pick(data.y, d, rows), s: pick(data.s, data.attributeDim, rows), count: rows.length };
  const samples = await sampleConditions(trainer.emaNet(), trainer.diffusion, cond, {
    ddimSteps: config.evaluation.ddimSteps,
    seed: config.seed + 1,
  });
  const px = data.size * data.size * 3;
  const real = new Float32Array(rows.length * px);
  rows.forEach((r, i) => {
    for (let k = 0; k < px; k++) real[i * px + k] = data.crops[r * px + k] / 127.5 - 1;
  });
  const input = TeacherInput.forTeacher(teacher, data.size);
  try {
    const sampleIds = identityConsistency(await embedCrops(teacher, input, samples, data.size), cond.y, d);
    const realIds = identityConsistency(await embedCrops(teacher, input, real, data.size), cond.y, d);
    const requestedYaw = rows.map((r) => rawAttributes[r * 4 + 2]);
    const requestedAge = rows.map((r) => rawAttributes[r * 4]);
    const sampleAttrs = await readAttributes(toImages(samples, data.size));
    const realAttrs = await readAttributes(toImages(real, data.size));
    const metrics = {
      evalCount: rows.length,
      idCosMatched: sampleIds.matched,
      idCosMismatched: sampleIds.mismatched,
      realIdCosMatched: realIds.matched,
      realIdCosMismatched: realIds.mismatched,
      yawCorrelation: pearson(requestedYaw, sampleAttrs.yaw),
      ageCorrelation: pearson(requestedAge, sampleAttrs.age),
      realYawCorrelation: pearson(requestedYaw, realAttrs.yaw),
      realAgeCorrelation: pearson(requestedAge, realAttrs.age),
    };
    return {
      metrics,
      rows,
      requested: { yaw: requestedYaw, age: requestedAge },
      predicted: { sample: sampleAttrs, real: realAttrs },
      note: 'cosines: teacher embedding (image + flip) of the sample, mapped onto the teacher input, with its own condition y (matched) and the next held-out row\'s y (mismatched); "real" rows are the held-out photos themselves at the training resolution.',
    };
  } finally {
    input.dispose();
  }
}
