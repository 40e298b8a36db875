import { join } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  Rng,
  clipScale,
  createOptimizer,
  emaDecayAt,
  emaUpdate,
  emaUpdateVariables,
  globalNorm,
  globalNormTensor,
  learningRateAt,
  readTensorFile,
  resumeCheckpoint,
  tf,
  writeCheckpoint,
  writeTensorFile,
  type CheckpointStateBase,
  type Optimizer,
  type OptimizerImplementation,
  type RngState,
} from '@id3/core';
import type { FaceEmbedder } from '@id3/faces';
import { GaussianDiffusion } from './gaussian-diffusion';
import { startDiffusionWorkers, type DiffusionWorkerPool } from './parallel';
import { makeSchedule, type ScheduleConfig } from './schedule';
import { shardGradients, splitBatch, type BatchShard, type ShardLossOptions } from './shard';
import { TeacherInput } from './teacher-input';
import { UNet, type UNetConfig } from './unet';

/** Complete checkpoint directories under a root, oldest first (the kit's, re-exported for the stage). */
export { listCheckpoints } from '@id3/core';

export const trainerConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    batchSize: z.number().int().positive().default(16),
    /** Total optimiser steps. */
    steps: z.number().int().positive(),
    learningRate: z.number().positive().default(2e-4),
    warmupSteps: z.number().int().nonnegative().default(200),
    adamBeta1: z.number().min(0).lt(1).default(0.9),
    adamBeta2: z.number().min(0).lt(1).default(0.999),
    adamEpsilon: z.number().positive().default(1e-8),
    /** Clip the global gradient norm to this (0 = no clipping). */
    gradClip: z.number().nonnegative().default(1),
    emaDecay: z.number().min(0).lt(1).default(0.999),
    /** Probability of dropping (y, s) for a sample (classifier-free guidance training). */
    conditionDropout: z.number().min(0).max(1).default(0.1),
    /** Horizontal-flip augmentation (negates yaw and roll in s). */
    flip: z.boolean().default(true),
    /** β_t: 'gamma' (= γ_t, the method page's default) or a constant. */
    reconWeight: z.union([z.literal('gamma'), z.number().nonnegative()]).default('gamma'),
    identity: z
      .object({
        enabled: z.boolean().default(true),
        /** κ, the identity term's multiplier. */
        scale: z.number().nonnegative().default(1),
        /** Samples per step that get the identity term (a teacher forward + backward each). */
        subBatch: z.number().int().positive().default(4),
        /** Apply it every k-th step. */
        every: z.number().int().positive().default(1),
      })
      .strict()
      .default({}),
    /**
     * Threads computing gradients (data parallel, the batch split between them): 'auto' = every
     * core on the CPU backends (tfjs-wasm uses one core per thread in Node), 1 on GPU backends.
     */
    threads: z.union([z.literal('auto'), z.number().int().positive().max(64)]).default('auto'),
    checkpointEvery: z.number().int().positive().default(500),
    keepCheckpoints: z.number().int().positive().default(2),
    /** Average the logged losses over this many steps per history point. */
    logEvery: z.number().int().positive().default(10),
  })
  .strict();
export type TrainerConfig = z.output<typeof trainerConfigSchema>;
export type TrainerConfigInput = z.input<typeof trainerConfigSchema>;

/** The prepared training set, in memory: uint8 crops plus conditions, rows usable for training. */
export interface TrainingData {
  readonly size: number;
  readonly crops: Uint8Array;
  /** Teacher embeddings per row (unit, identityDim): the identity term's target. */
  readonly y: Float32Array;
  readonly identityDim: number;
  /**
   * What the UNet is conditioned on per row when it is not y itself: y mapped into the identity
   * space (z = normalize(W·(y − μ)), design (b) of the identity-space issue). The identity term
   * keeps the teacher's native cosine with y either way.
   */
  readonly condition?: { readonly values: Float32Array; readonly dim: number };
  /** Scaled attributes [age, pitch, yaw, roll] (prepare's attributes-scaled). */
  readonly s: Float32Array;
  readonly attributeDim: number;
  readonly trainRows: readonly number[];
}

/** Columns of s that change sign under a horizontal flip (yaw and roll). */
export const FLIP_NEGATED_ATTRIBUTES = [2, 3] as const;

/** The logged ID³ loss terms (identity terms as subtracted: γ-weighted, and the raw cosine). */
export interface LossValues {
  readonly total: number;
  readonly denoise: number;
  readonly recon: number;
  readonly identity: number;
  readonly identityCos: number;
}

export interface StepLog extends LossValues {
  readonly step: number;
  readonly identityCount: number;
  readonly gradNorm: number;
  readonly learningRate: number;
  readonly seconds: number;
}

export interface HistoryPoint extends LossValues {
  readonly step: number;
  readonly imagesPerSecond: number;
}

export const CHECKPOINT_FORMAT = 'id3-diffusion-checkpoint/1';

/** state.json of a checkpoint directory (the weights, EMA and Adam moments are tensor files beside it). */
interface CheckpointState extends CheckpointStateBase {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly rng: { state: RngState; spare: number | null };
  readonly history: HistoryPoint[];
  readonly pending: StepLog[];
}

/** Optional construction settings that are not part of the (hashed) trainer config. */
export interface DiffusionTrainerOptions {
  /** Where Adam runs; 'auto' (default) follows the active backend (optimizerImplementationFor). */
  readonly optimizer?: OptimizerImplementation | 'auto';
}

/**
 * Trains the UNet with the ID³ loss: Adam with linear warm-up, global-norm clipping, an EMA copy
 * of the weights (itself a UNet, so sampling uses it directly), flip augmentation, condition
 * dropout. All randomness comes from one checkpointed RNG, and checkpoints hold the weights,
 * EMA, Adam moments, step and RNG state, so a resumed run continues bit-for-bit. The optimiser,
 * EMA, clipping, schedule and checkpoint directory are the core training kit's.
 */
export class DiffusionTrainer {
  readonly diffusion: GaussianDiffusion;
  readonly net: UNet;
  /** A UNet holding the EMA weights, refreshed on demand (emaNet()). */
  private readonly ema: UNet;
  private emaStale = true;
  /**
   * Adam over the UNet's variables. On the CPU backends (js-loop) the master weights, moments and
   * EMA are flat Float32Arrays updated by JS loops (one pass over 1.35 M parameters costs
   * milliseconds, where tensor ops are ~2,000 small kernel launches per step); on GPU backends
   * (tfjs-ops) they stay on the device and the EMA UNet's variables are the EMA.
   */
  private readonly optimizer: Optimizer;
  /** The flat EMA weights on the js-loop path (undefined on the device path). */
  private readonly emaHost?: Float32Array;
  private rng: Rng;
  private teacherInput?: TeacherInput;
  private pool?: DiffusionWorkerPool;
  step = 0;
  history: HistoryPoint[] = [];
  private pending: StepLog[] = [];

  constructor(
    readonly unetConfig: UNetConfig,
    readonly scheduleConfig: ScheduleConfig,
    readonly config: TrainerConfig,
    readonly data: TrainingData,
    readonly teacher: FaceEmbedder | undefined,
    /** Changes to anything that must match for a resume (configs, data hash). */
    readonly key: string,
    options: DiffusionTrainerOptions = {},
  ) {
    if (unetConfig.resolution !== data.size)
      throw new InvalidInputError(
        `field 'unet.resolution': ${unetConfig.resolution} but the training crops are ${data.size}×${data.size}`,
        { field: 'unet.resolution' },
      );
    const conditionDim = data.condition?.dim ?? data.identityDim;
    if (unetConfig.identityDim !== conditionDim)
      throw new InvalidInputError(
        `field 'unet.identityDim': ${unetConfig.identityDim} but the ${data.condition ? 'identity-space conditions' : 'prepared embeddings'} are ${conditionDim}-d`,
        { field: 'unet.identityDim' },
      );
    if (data.trainRows.length === 0) throw new InvalidInputError('no training rows (all held out?)', { field: 'holdout' });
    if (config.identity.enabled && !teacher) throw new Error('DiffusionTrainer: the identity term needs a teacher');
    this.diffusion = new GaussianDiffusion(makeSchedule(scheduleConfig));
    this.net = UNet.create(unetConfig, config.seed);
    this.ema = UNet.create(unetConfig, config.seed);
    this.optimizer = createOptimizer(
      { kind: 'adam', beta1: config.adamBeta1, beta2: config.adamBeta2, epsilon: config.adamEpsilon },
      this.net.variables,
      { implementation: options.optimizer },
    );
    if (this.optimizer.hostWeights) this.emaHost = Float32Array.from(this.optimizer.hostWeights);
    this.rng = new Rng(config.seed).fork('train-diffusion');
    if (teacher && config.identity.enabled) this.teacherInput = TeacherInput.forTeacher(teacher, data.size);
  }

  learningRate(step: number): number {
    const { learningRate, warmupSteps } = this.config;
    return learningRateAt({ learningRate, warmupSteps, decay: { kind: 'constant' } }, step);
  }

  /** Draw the next batch from the RNG: rows, flips, timesteps, noise, condition dropout. */
  drawBatch(): {
    x0: Float32Array;
    y: Float32Array;
    c?: Float32Array;
    s: Float32Array;
    t: number[];
    noise: Float32Array;
    keep: Float32Array;
  } {
    const { size, crops, identityDim: d, attributeDim: a, trainRows } = this.data;
    const B = this.config.batchSize;
    const px = size * size * 3;
    const x0 = new Float32Array(B * px);
    const y = new Float32Array(B * d);
    const cond = this.data.condition;
    const c = cond ? new Float32Array(B * cond.dim) : undefined;
    const s = new Float32Array(B * a);
    const t: number[] = [];
    const keep = new Float32Array(B);
    for (let i = 0; i < B; i++) {
      const row = trainRows[this.rng.int(trainRows.length)];
      const flip = this.config.flip && this.rng.uniform() < 0.5;
      const src = row * px;
      const dst = i * px;
      if (!flip) {
        for (let k = 0; k < px; k++) x0[dst + k] = crops[src + k] / 127.5 - 1;
      } else {
        for (let r = 0; r < size; r++) {
          for (let c = 0; c < size; c++) {
            const from = src + (r * size + (size - 1 - c)) * 3;
            const to = dst + (r * size + c) * 3;
            x0[to] = crops[from] / 127.5 - 1;
            x0[to + 1] = crops[from + 1] / 127.5 - 1;
            x0[to + 2] = crops[from + 2] / 127.5 - 1;
          }
        }
      }
      // y is the flip-summed teacher embedding, so it is the same for the mirrored face.
      y.set(this.data.y.subarray(row * d, (row + 1) * d), i * d);
      if (c && cond) c.set(cond.values.subarray(row * cond.dim, (row + 1) * cond.dim), i * cond.dim);
      s.set(this.data.s.subarray(row * a, (row + 1) * a), i * a);
      if (flip) for (const c of FLIP_NEGATED_ATTRIBUTES) if (c < a) s[i * a + c] = -s[i * a + c];
      t.push(this.rng.int(this.diffusion.steps));
      keep[i] = this.rng.uniform() < this.config.conditionDropout ? 0 : 1;
    }
    const noise = this.rng.fillNormal(new Float32Array(B * px));
    return { x0, y, c, s, t, noise, keep };
  }

  /**
   * Compute shard gradients on this many threads (this one plus workers): tfjs-wasm uses one
   * core per thread in Node, so data parallelism is how training uses the others. Call once,
   * before training; `close()` stops them.
   */
  async startWorkers(threads: number, backend: string): Promise<void> {
    if (threads <= 1 || this.pool) return;
    this.pool = await startDiffusionWorkers(threads - 1, {
      backend,
      unetConfig: this.unetConfig,
      scheduleConfig: this.scheduleConfig,
      teacher: this.teacherInput ? this.teacher?.name : undefined,
      reconWeight: this.config.reconWeight,
      identityScale: this.config.identity.scale,
    });
  }

  get threads(): number {
    return 1 + (this.pool?.size ?? 0);
  }

  /** One optimiser step. Resolves after the step's numbers are on the CPU. */
  async trainStep(): Promise<StepLog> {
    const started = performance.now();
    const step = this.step + 1;
    const c = this.config;
    const { size: r, identityDim: d, attributeDim: a } = this.data;
    const batch = this.drawBatch();
    const identityCount = c.identity.enabled && step % c.identity.every === 0 ? Math.min(c.identity.subBatch, c.batchSize) : 0;
    const lr = this.learningRate(step);
    const shards = splitBatch(
      { count: c.batchSize, ...batch, keep: c.conditionDropout > 0 ? batch.keep : undefined, identityCount },
      this.threads,
      r * r * 3,
      d,
      a,
    );
    // Post the worker shards first (with the current weights), then compute ours meanwhile.
    const remote =
      this.pool && shards.length > 1
        ? this.pool.gradients(this.optimizer.hostWeights ?? (await this.optimizer.readWeights()), shards.slice(1))
        : undefined;
    remote?.catch(() => undefined); // awaited below; never an unhandled rejection if ours throws first
    const options: ShardLossOptions = {
      reconWeight: c.reconWeight,
      identityScale: c.identity.scale,
      teacher: this.teacher && this.teacherInput ? { embedder: this.teacher, input: this.teacherInput } : undefined,
    };
    // Flat gradients on the CPU path (and to sum with workers'), device tensors otherwise.
    const { grads, terms, gradNorm, dispose } =
      remote || this.optimizer.hostWeights
        ? await this.flatGradients(shards[0], options, remote)
        : await this.deviceGradients(shards[0], options);
    try {
      // Refuse the update rather than poison the weights (the last checkpoint stays good).
      if (!Number.isFinite(terms[0]) || !Number.isFinite(gradNorm))
        throw new Error(`train-diffusion: loss became ${terms[0]} (grad norm ${gradNorm}) at step ${step}`);
      this.optimizer.apply(grads, { step, learningRate: lr, gradScale: clipScale(gradNorm, c.gradClip) });
    } finally {
      dispose();
    }
    // The EMA, warmed up for short runs.
    const decay = emaDecayAt(c.emaDecay, step);
    if (this.emaHost && this.optimizer.hostWeights) emaUpdate(this.emaHost, this.optimizer.hostWeights, decay);
    else emaUpdateVariables(this.ema.variables, this.net.variables, decay);
    this.emaStale = true;
    this.step = step;
    const [total, denoise, recon, identity, identityCos] = Array.from(terms);
    const log: StepLog = {
      step,
      total,
      denoise,
      recon,
      identity,
      identityCos,
      identityCount,
      gradNorm,
      learningRate: lr,
      seconds: (performance.now() - started) / 1000,
    };
    this.record(log);
    return log;
  }

  /** Our shard's gradients downloaded flat, plus the workers' summed in a fixed order (ours, then by index) so a run is reproducible. */
  private async flatGradients(
    shard: BatchShard,
    options: ShardLossOptions,
    remote: Promise<{ grads: Float32Array; terms: Float32Array }[]> | undefined,
  ) {
    const local = tf.tidy(() => {
      const { grads, terms } = shardGradients(this.net, this.diffusion, shard, options);
      return { flat: tf.concat(grads.map((g) => tf.reshape(g, [-1]))), terms };
    });
    let grads: Float32Array;
    let terms: Float32Array;
    try {
      grads = Float32Array.from((await local.flat.data()) as Float32Array);
      terms = Float32Array.from((await local.terms.data()) as Float32Array);
    } finally {
      tf.dispose([local.flat, local.terms]);
    }
    for (const other of (await remote) ?? []) {
      for (let k = 0; k < grads.length; k++) grads[k] += other.grads[k];
      for (let k = 0; k < terms.length; k++) terms[k] += other.terms[k];
    }
    return { grads, terms, gradNorm: globalNorm(grads), dispose: () => undefined };
  }

  /** Our shard's gradients left on the device; only the loss terms and the norm are downloaded. */
  private async deviceGradients(shard: BatchShard, options: ShardLossOptions) {
    const { grads, terms, norm } = tf.tidy(() => {
      const out = shardGradients(this.net, this.diffusion, shard, options);
      return { ...out, norm: globalNormTensor(out.grads) };
    });
    try {
      const [termValues, normValue] = await Promise.all([terms.data(), norm.data()]);
      return { grads, terms: Float32Array.from(termValues as Float32Array), gradNorm: normValue[0], dispose: () => tf.dispose(grads) };
    } catch (err) {
      tf.dispose(grads);
      throw err;
    } finally {
      tf.dispose([terms, norm]);
    }
  }

  /** Fold step logs into history points of `logEvery` steps (part of the checkpointed state). */
  private record(log: StepLog): void {
    this.pending.push(log);
    if (this.pending.length < this.config.logEvery) return;
    const p = this.pending;
    const mean = (f: (l: StepLog) => number): number => p.reduce((s, l) => s + f(l), 0) / p.length;
    const withId = p.filter((l) => l.identityCount > 0);
    this.history.push({
      step: log.step,
      total: mean((l) => l.total),
      denoise: mean((l) => l.denoise),
      recon: mean((l) => l.recon),
      identity: withId.length ? withId.reduce((s, l) => s + l.identity, 0) / withId.length : 0,
      identityCos: withId.length ? withId.reduce((s, l) => s + l.identityCos, 0) / withId.length : 0,
      imagesPerSecond: (p.length * this.config.batchSize) / p.reduce((s, l) => s + l.seconds, 0),
    });
    this.pending = [];
  }

  /** Write a checkpoint directory atomically (temp dir, then rename) and prune old ones. */
  async saveCheckpoint(root: string): Promise<string> {
    const weights = await this.optimizer.readWeights();
    const ema = this.emaHost ?? (await this.ema.flatWeights());
    const { slots } = await this.optimizer.readState();
    const state: CheckpointState = {
      format: CHECKPOINT_FORMAT,
      step: this.step,
      rng: this.rng.snapshot(),
      history: this.history,
      pending: this.pending,
      key: this.key,
    };
    return writeCheckpoint(root, state, {
      keep: this.config.keepCheckpoints,
      writeFiles: async (dir) => {
        await this.net.save(join(dir, 'weights'), { step: this.step }, weights);
        await this.net.save(join(dir, 'ema'), { step: this.step, emaDecay: this.config.emaDecay }, ema);
        const total = weights.length;
        const moments = new Float32Array(2 * total);
        moments.set(slots.m, 0);
        moments.set(slots.v, total);
        writeTensorFile(join(dir, 'adam'), 'float32', [2, total], moments, {
          what: 'Adam first and second moments, parameter order of weights.json',
        });
      },
    });
  }

  /**
   * Restore the newest usable checkpoint under `root` whose key matches; returns its step, or
   * undefined (fresh start). Checkpoints of another key (config or data changed) are moved
   * aside to `<root>.stale-<time>` — kept, but never resumed nor mixed with the new run's.
   */
  resumeFrom(root: string): { step: number; path: string } | { ignored: string } | undefined {
    return resumeCheckpoint<CheckpointState>(root, { format: CHECKPOINT_FORMAT, key: this.key }, (path, state) => {
      const weights = this.readFlat(join(path, 'weights'));
      const ema = this.readFlat(join(path, 'ema'));
      const { values } = readTensorFile(join(path, 'adam'));
      const total = weights.length;
      if (values.length !== 2 * total)
        throw new InvalidInputError(`${path}/adam: ${values.length} values, expected ${2 * total}`, { file: path });
      this.optimizer.writeWeights(weights);
      this.optimizer.writeState({
        kind: 'adam',
        slots: { m: values.subarray(0, total) as Float32Array, v: values.subarray(total) as Float32Array },
      });
      if (this.emaHost) this.emaHost.set(ema);
      else this.ema.setFlatWeights(ema);
      this.emaStale = true;
      this.rng = Rng.restore(state.rng);
      this.step = state.step;
      this.history = [...state.history];
      this.pending = [...state.pending];
    });
  }

  private readFlat(path: string): Float32Array {
    const { header, values } = readTensorFile(path);
    const params = (header.meta as { params?: unknown } | undefined)?.params;
    if (JSON.stringify(params) !== JSON.stringify(this.net.layout()))
      throw new InvalidInputError(`${path}: parameter layout differs from this UNet`, { file: path });
    return values as Float32Array;
  }

  /** The UNet with the EMA weights (what previews, evaluation and the sampler use). */
  emaNet(): UNet {
    if (this.emaStale && this.emaHost) this.ema.setFlatWeights(this.emaHost);
    this.emaStale = false;
    return this.ema;
  }

  /** Copies of the current weights and EMA weights, in parameter order. */
  snapshotWeights(): { weights: Float32Array; ema: Float32Array } {
    const weights = this.optimizer.hostWeights ? Float32Array.from(this.optimizer.hostWeights) : this.net.flatWeightsSync();
    return { weights, ema: this.emaHost ? Float32Array.from(this.emaHost) : this.ema.flatWeightsSync() };
  }

  /** Free the tensors and stop the worker threads. */
  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = undefined;
    this.dispose();
  }

  dispose(): void {
    this.optimizer.dispose();
    this.net.dispose();
    this.ema.dispose();
    this.teacherInput?.dispose();
  }

  /**
   * Start from given weights (fine-tuning, train-diffusion.init): the weights and their EMA copy
   * both become `flat`; Adam's moments, the step and the RNG stay those of a fresh start.
   */
  initFromWeights(flat: Float32Array): void {
    this.optimizer.writeWeights(flat);
    if (this.emaHost) this.emaHost.set(flat);
    else this.ema.setFlatWeights(flat);
    this.emaStale = true;
  }
}
