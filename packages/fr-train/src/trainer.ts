import { join } from 'node:path';
import { z } from 'zod';
import {
  GradientWorkerPool,
  InvalidInputError,
  OPTIMIZER_SLOTS,
  Rng,
  clipScale,
  createOptimizer,
  globalNorm,
  globalNormTensor,
  learningRateAt,
  readTensorFile,
  resumeCheckpoint,
  tf,
  writeCheckpoint,
  writeTensorFile,
  type CheckpointStateBase,
  type LrSchedule,
  type Optimizer,
  type OptimizerImplementation,
  type ResumeOutcome,
  type RngState,
} from '@id3/core';
import type { FaceDataset } from './dataset';
import { IResNet } from './iresnet';
import type { IResNetConfig } from './iresnet-config';
import { marginWarmupFactor } from './margin';
import { MarginHead, marginHeadConfigSchema } from './margin-head';
import { frShardGradients, splitFrBatch, type FrBatchShard, type FrWorkerInit } from './shard';

/**
 * The learning-rate decay after the warm-up, in fractions of the run (so one config serves any
 * number of steps): arcface_torch's default is the polynomial (power 2) PolyScheduler.
 */
const decaySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant') }).strict(),
  z.object({ kind: z.literal('step'), at: z.array(z.number().gt(0).lt(1)).min(1), gamma: z.number().positive().default(0.1) }).strict(),
  z.object({ kind: z.literal('cosine') }).strict(),
  z.object({ kind: z.literal('polynomial'), power: z.number().positive().default(2) }).strict(),
]);

export const frTrainerConfigSchema = z
  .object({
    seed: z.number().int().nonnegative(),
    /** Optimiser steps: a fixed schedule, and the last checkpoint is the model (never selected on a benchmark). */
    steps: z.number().int().positive(),
    batchSize: z.number().int().min(2).default(64),
    learningRate: z.number().positive().default(0.1),
    warmupSteps: z.number().int().nonnegative().default(0),
    decay: decaySchema.default({ kind: 'polynomial', power: 2 }),
    momentum: z.number().min(0).lt(1).default(0.9),
    weightDecay: z.number().nonnegative().default(5e-4),
    /** Clip the global gradient norm (arcface_torch: 5; 0 = off). */
    gradClip: z.number().nonnegative().default(5),
    head: marginHeadConfigSchema.default({ kind: 'arcface' }),
    /** Softmax warm-up: the margin grows linearly from 0 over this many steps (few classes converge better). */
    marginWarmupSteps: z.number().int().nonnegative().default(0),
    /** Horizontal flips (p = 0.5). */
    flip: z.boolean().default(true),
    /** 'light': a random shift of up to size/16 pixels and ±10% brightness and contrast. */
    augment: z.enum(['none', 'light']).default('none'),
    /**
     * Threads computing gradients (data parallel, the batch split between them): 'auto' = every
     * core on the CPU backends (tfjs-wasm uses one core per thread in Node), 1 on GPU backends.
     */
    threads: z.union([z.literal('auto'), z.number().int().positive().max(64)]).default('auto'),
    checkpointEvery: z.number().int().positive().default(500),
    keepCheckpoints: z.number().int().positive().default(2),
    /** Average the step losses over this many steps per history point. */
    logEvery: z.number().int().positive().default(10),
  })
  .strict();
export type FrTrainerConfig = z.output<typeof frTrainerConfigSchema>;
export type FrTrainerConfigInput = z.input<typeof frTrainerConfigSchema>;

/** The kit's schedule for this run: warm-up, then the decay over the remaining steps. */
export function frLearningRateSchedule(c: Pick<FrTrainerConfig, 'learningRate' | 'warmupSteps' | 'decay' | 'steps'>): LrSchedule {
  const base = { learningRate: c.learningRate, warmupSteps: c.warmupSteps };
  const total = Math.max(c.steps, c.warmupSteps + 1);
  switch (c.decay.kind) {
    case 'constant':
      return { ...base, decay: { kind: 'constant' } };
    case 'step': {
      const milestones = [...new Set(c.decay.at.map((f) => Math.max(1, Math.round(f * c.steps))))].sort((a, b) => a - b);
      return { ...base, decay: { kind: 'step', milestones, gamma: c.decay.gamma } };
    }
    case 'cosine':
      return { ...base, decay: { kind: 'cosine', totalSteps: total, minLearningRate: 0 } };
    case 'polynomial':
      return { ...base, decay: { kind: 'polynomial', totalSteps: total, power: c.decay.power, endLearningRate: 0 } };
  }
}

export interface FrStepLog {
  readonly step: number;
  readonly loss: number;
  /** Share of the batch whose nearest class centre is its own (with augmentation, training mode). */
  readonly accuracy: number;
  readonly gradNorm: number;
  readonly learningRate: number;
  readonly marginFactor: number;
  readonly seconds: number;
}

export interface FrHistoryPoint {
  readonly step: number;
  readonly loss: number;
  readonly accuracy: number;
  readonly learningRate: number;
  readonly imagesPerSecond: number;
  /** Validation (held-out training images), when measured at this point. */
  readonly validationAccuracy?: number;
}

export const FR_CHECKPOINT_FORMAT = 'id3-fr-checkpoint/1';

interface FrCheckpointState extends CheckpointStateBase {
  readonly rng: { state: RngState; spare: number | null };
  readonly history: FrHistoryPoint[];
  readonly pending: FrStepLog[];
}

export interface FrTrainerOptions {
  /** Where the optimiser update runs (default: by backend — JS loops on wasm/cpu, tf ops on GPU). */
  readonly optimizer?: OptimizerImplementation | 'auto';
}

/**
 * Trains an IResNet with a margin head, arcface_torch style: SGD with momentum and weight decay,
 * warm-up then decay, global-norm clipping, flips (and an optional light augmentation), a margin
 * warm-up. All randomness comes from one checkpointed RNG and checkpoints hold the weights,
 * BatchNorm statistics, momentum, step and RNG state, so a resumed run continues bit for bit.
 */
export class FrTrainer {
  readonly net: IResNet;
  readonly head: MarginHead;
  readonly schedule: LrSchedule;
  private readonly optimizer: Optimizer;
  private readonly variables: tf.Variable[];
  private rng: Rng;
  private pool?: GradientWorkerPool<FrWorkerInit, FrBatchShard>;
  step = 0;
  history: FrHistoryPoint[] = [];
  private pending: FrStepLog[] = [];

  constructor(
    readonly backbone: IResNetConfig,
    readonly config: FrTrainerConfig,
    readonly data: FaceDataset,
    readonly trainRows: readonly number[],
    /** Changes with anything that must match for a resume (configs, data hash). */
    readonly key: string,
    options: FrTrainerOptions = {},
  ) {
    if (backbone.resolution !== data.size) {
      throw new InvalidInputError(
        `field 'fr-train.resolution': ${backbone.resolution} but the training crops are ${data.size}×${data.size}`,
        {
          field: 'fr-train.resolution',
        },
      );
    }
    if (trainRows.length < config.batchSize) {
      throw new InvalidInputError(
        `field 'fr-train.trainer.batchSize': ${config.batchSize} exceeds the ${trainRows.length} training images`,
        {
          field: 'fr-train.trainer.batchSize',
        },
      );
    }
    this.net = IResNet.create(backbone, config.seed);
    this.head = MarginHead.create(config.head, { classes: data.classes, embeddingDim: backbone.embeddingDim }, config.seed);
    this.variables = [...this.net.variables, ...this.head.variables];
    this.optimizer = createOptimizer(
      { kind: 'sgd', momentum: config.momentum, weightDecay: config.weightDecay, nesterov: false },
      this.variables,
      {
        implementation: options.optimizer ?? 'auto',
      },
    );
    this.schedule = frLearningRateSchedule(config);
    this.rng = new Rng(config.seed).fork('fr-train');
  }

  /** Draw the next batch from the RNG: rows (with replacement), flips, augmentation. Values in [-1, 1]. */
  drawBatch(): { x: Float32Array; labels: Int32Array } {
    const { size, crops } = this.data;
    const B = this.config.batchSize;
    const px = size * size * 3;
    const x = new Float32Array(B * px);
    const labels = new Int32Array(B);
    const maxShift = Math.max(1, Math.round(size / 16));
    for (let i = 0; i < B; i++) {
      const row = this.trainRows[this.rng.int(this.trainRows.length)];
      labels[i] = this.data.labels[row];
      const flip = this.config.flip && this.rng.uniform() < 0.5;
      const light = this.config.augment === 'light';
      const dx = light ? this.rng.int(2 * maxShift + 1) - maxShift : 0;
      const dy = light ? this.rng.int(2 * maxShift + 1) - maxShift : 0;
      const gain = light ? 1 + this.rng.range(-0.1, 0.1) : 1;
      const bias = light ? this.rng.range(-0.1, 0.1) : 0;
      const src = row * px;
      const dst = i * px;
      for (let y = 0; y < size; y++) {
        const sy = y - dy;
        for (let c = 0; c < size; c++) {
          const sxRaw = c - dx;
          const sx = flip ? size - 1 - sxRaw : sxRaw;
          const to = dst + (y * size + c) * 3;
          if (sy < 0 || sy >= size || sx < 0 || sx >= size) {
            x[to] = x[to + 1] = x[to + 2] = -1; // shifted in from outside: black, as alignment pads
            continue;
          }
          const from = src + (sy * size + sx) * 3;
          for (let k = 0; k < 3; k++) x[to + k] = Math.max(-1, Math.min(1, gain * (crops[from + k] / 127.5 - 1) + bias));
        }
      }
    }
    return { x, labels };
  }

  learningRate(step: number): number {
    return learningRateAt(this.schedule, step);
  }

  /**
   * Compute gradients on this many threads (this one plus workers), each with its own backend and
   * replicas: tfjs-wasm uses one core per thread in Node. Call once, before training; close()
   * stops them. BatchNorm normalises each shard with its own statistics and the running
   * statistics are this thread's (as data-parallel training without synchronised BatchNorm).
   */
  async startWorkers(threads: number, backend: string): Promise<void> {
    if (threads <= 1 || this.pool) return;
    if (!this.optimizer.hostWeights) throw new Error('fr-train: worker threads need the host-memory optimiser (a CPU backend)');
    this.pool = await GradientWorkerPool.start<FrWorkerInit, FrBatchShard>({
      script: join(__dirname, 'gradient-worker.ts'),
      count: threads - 1,
      init: { backend, backbone: this.backbone, head: this.head.config, classes: this.data.classes },
    });
  }

  get threads(): number {
    return 1 + (this.pool?.size ?? 0);
  }

  /** One step's update from flat gradients summed over the shards (the data-parallel path). */
  private async parallelStep(
    x: Float32Array,
    labels: Int32Array,
    marginFactor: number,
  ): Promise<{ loss: number; correct: number; grads: Float32Array }> {
    const px = this.data.size * this.data.size * 3;
    const seeds = Array.from({ length: this.threads }, () => this.rng.nextUint32());
    const shards = splitFrBatch(x, labels, px, this.threads, { marginFactor, seeds });
    const pool = this.pool as GradientWorkerPool<FrWorkerInit, FrBatchShard>;
    // Post the worker shards first (with the current weights), then compute ours meanwhile.
    const remote = shards.length > 1 ? pool.gradients(this.optimizer.hostWeights as Float32Array, shards.slice(1)) : Promise.resolve([]);
    remote.catch(() => undefined); // awaited below; never an unhandled rejection if ours throws first
    const local = tf.tidy(() => frShardGradients(this.net, this.head, shards[0]));
    let grads: Float32Array;
    let terms: Float32Array;
    try {
      grads = Float32Array.from((await local.flat.data()) as Float32Array);
      terms = Float32Array.from((await local.terms.data()) as Float32Array);
    } finally {
      tf.dispose([local.flat, local.terms]);
    }
    // Sum in a fixed order (ours, then workers by index) so a run is reproducible.
    for (const other of await remote) {
      for (let k = 0; k < grads.length; k++) grads[k] += other.grads[k];
      for (let k = 0; k < terms.length; k++) terms[k] += other.terms[k];
    }
    return { loss: terms[0], correct: terms[1], grads };
  }

  /** One optimiser step. Resolves once its numbers are on the CPU. */
  async trainStep(): Promise<FrStepLog> {
    const started = performance.now();
    const step = this.step + 1;
    const c = this.config;
    const { x, labels } = this.drawBatch();
    const lr = this.learningRate(step);
    const marginFactor = marginWarmupFactor(step, c.marginWarmupSteps, 'linear');
    if (this.pool) {
      const r = await this.parallelStep(x, labels, marginFactor);
      const gradNorm = globalNorm(r.grads);
      if (!Number.isFinite(r.loss) || !Number.isFinite(gradNorm))
        throw new Error(`fr-train: loss became ${r.loss} (grad norm ${gradNorm}) at step ${step}`);
      this.optimizer.apply(r.grads, { step, learningRate: lr, gradScale: c.gradClip > 0 ? clipScale(gradNorm, c.gradClip) : 1 });
      this.step = step;
      const log: FrStepLog = {
        step,
        loss: r.loss,
        accuracy: r.correct / labels.length,
        gradNorm,
        learningRate: lr,
        marginFactor,
        seconds: (performance.now() - started) / 1000,
      };
      this.record(log);
      return log;
    }
    const size = this.data.size;
    const out = tf.tidy(() => {
      const input = tf.tensor4d(x, [labels.length, size, size, 3]);
      let embeddings: tf.Tensor2D | undefined;
      const { value, grads } = tf.variableGrads(() => {
        const e = this.net.forward(input, { training: true, rng: this.rng });
        embeddings = tf.keep(e);
        return this.head.loss(e, labels, { marginFactor });
      }, this.variables);
      const list = this.variables.map((v) => grads[v.name]);
      const norm = globalNormTensor(list);
      const correct = tf.sum(
        tf.cast(tf.equal(tf.argMax(this.head.cosines(embeddings as tf.Tensor2D), 1), tf.tensor1d(labels, 'int32')), 'float32'),
      );
      tf.dispose(embeddings);
      return { value, norm, correct, grads: list.map((g) => tf.keep(g)) };
    });
    let loss: number;
    let gradNorm: number;
    let correct: number;
    try {
      [loss, gradNorm, correct] = await Promise.all([out.value.data(), out.norm.data(), out.correct.data()]).then((v) =>
        v.map((a) => a[0]),
      );
      // Refuse the update rather than poison the weights (the last checkpoint stays good).
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm))
        throw new Error(`fr-train: loss became ${loss} (grad norm ${gradNorm}) at step ${step}`);
      this.optimizer.apply(out.grads, { step, learningRate: lr, gradScale: c.gradClip > 0 ? clipScale(gradNorm, c.gradClip) : 1 });
    } finally {
      tf.dispose([out.value, out.norm, out.correct, ...out.grads]);
    }
    this.step = step;
    const log: FrStepLog = {
      step,
      loss,
      accuracy: correct / labels.length,
      gradNorm,
      learningRate: lr,
      marginFactor,
      seconds: (performance.now() - started) / 1000,
    };
    this.record(log);
    return log;
  }

  /** Fold step logs into history points of `logEvery` steps (part of the checkpointed state). */
  private record(log: FrStepLog): void {
    this.pending.push(log);
    if (this.pending.length < this.config.logEvery) return;
    const p = this.pending;
    const mean = (f: (l: FrStepLog) => number): number => p.reduce((s, l) => s + f(l), 0) / p.length;
    this.history.push({
      step: log.step,
      loss: mean((l) => l.loss),
      accuracy: mean((l) => l.accuracy),
      learningRate: log.learningRate,
      imagesPerSecond: (p.length * this.config.batchSize) / p.reduce((s, l) => s + l.seconds, 0),
    });
    this.pending = [];
  }

  /**
   * Closed-set accuracy on held-out training images: the share whose nearest class centre is
   * their own (inference mode, no augmentation). Monitoring only; it never selects a model.
   */
  async validate(rows: readonly number[], chunk = 64): Promise<number> {
    if (rows.length === 0) return Number.NaN;
    const { size, crops } = this.data;
    const px = size * size * 3;
    let correct = 0;
    for (let start = 0; start < rows.length; start += chunk) {
      const part = rows.slice(start, start + chunk);
      const x = new Float32Array(part.length * px);
      part.forEach((r, i) => {
        for (let k = 0; k < px; k++) x[i * px + k] = crops[r * px + k] / 127.5 - 1;
      });
      const predicted = tf.tidy(() =>
        tf.argMax(this.head.cosines(this.net.forward(tf.tensor4d(x, [part.length, size, size, 3]), { training: false })), 1),
      );
      const p = (await predicted.data()) as Int32Array;
      predicted.dispose();
      part.forEach((r, i) => {
        if (p[i] === this.data.labels[r]) correct++;
      });
    }
    return correct / rows.length;
  }

  /** Attach a validation accuracy to the newest history point (the stage measures it at checkpoints). */
  noteValidation(accuracy: number): void {
    const last = this.history.at(-1);
    if (last && last.step === this.step) this.history[this.history.length - 1] = { ...last, validationAccuracy: accuracy };
  }

  /** Write a checkpoint (weights + BatchNorm statistics, head, momentum, RNG, history) atomically. */
  async saveCheckpoint(root: string): Promise<string> {
    const state: FrCheckpointState = {
      format: FR_CHECKPOINT_FORMAT,
      step: this.step,
      key: this.key,
      rng: this.rng.snapshot(),
      history: this.history,
      pending: this.pending,
    };
    const optimizerState = await this.optimizer.readState();
    return writeCheckpoint(root, state, {
      keep: this.config.keepCheckpoints,
      writeFiles: async (dir) => {
        await this.net.save(join(dir, 'backbone'), { step: this.step });
        await this.head.save(join(dir, 'head'), { step: this.step });
        for (const slot of OPTIMIZER_SLOTS.sgd) {
          const values = optimizerState.slots[slot];
          writeTensorFile(join(dir, `sgd-${slot}`), 'float32', [values.length], values, {
            what: `SGD ${slot}, parameter order of backbone then head`,
          });
        }
      },
    });
  }

  /**
   * Restore the newest checkpoint under `root` whose key matches (another key's checkpoints are
   * moved aside and the run starts fresh).
   */
  resumeFrom(root: string): ResumeOutcome {
    return resumeCheckpoint<FrCheckpointState>(root, { format: FR_CHECKPOINT_FORMAT, key: this.key }, (dir, state) => {
      const net = IResNet.load(join(dir, 'backbone'));
      const head = MarginHead.load(join(dir, 'head'));
      try {
        // The key covers the architecture; this guards a hand-edited or foreign checkpoint.
        if (JSON.stringify(net.layout()) !== JSON.stringify(this.net.layout()) || head.parameterCount() !== this.head.parameterCount()) {
          throw new InvalidInputError(`${dir}: the checkpoint's network differs from this trainer's (backbone or class count)`, {
            file: dir,
          });
        }
        const weights = new Float32Array(this.net.parameterCount() + this.head.parameterCount());
        weights.set(net.flatWeightsSync(), 0);
        weights.set(head.flatWeightsSync(), this.net.parameterCount());
        this.optimizer.writeWeights(weights);
        this.net.setFlatBuffers(net.flatBuffersSync());
      } finally {
        net.dispose();
        head.dispose();
      }
      const slots = Object.fromEntries(
        OPTIMIZER_SLOTS.sgd.map((slot) => [slot, readTensorFile(join(dir, `sgd-${slot}`)).values as Float32Array]),
      );
      this.optimizer.writeState({ kind: 'sgd', slots });
      this.rng = Rng.restore(state.rng);
      this.step = state.step;
      this.history = [...state.history];
      this.pending = [...state.pending];
    });
  }

  /** Stop the worker threads and free the tensors. */
  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = undefined;
    this.dispose();
  }

  dispose(): void {
    this.optimizer.dispose();
    this.net.dispose();
    this.head.dispose();
  }
}
