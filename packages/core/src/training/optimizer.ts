import { z } from 'zod';
import type { tf } from '../backend';

export const adamConfigSchema = z
  .object({
    kind: z.literal('adam'),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    epsilon: z.number().positive().default(1e-8),
  })
  .strict();

export const sgdConfigSchema = z
  .object({
    kind: z.literal('sgd'),
    momentum: z.number().min(0).lt(1).default(0.9),
    weightDecay: z.number().nonnegative().default(5e-4),
    nesterov: z.boolean().default(false),
  })
  .strict()
  .refine((c) => !c.nesterov || c.momentum > 0, { message: 'nesterov needs momentum > 0', path: ['nesterov'] });

export const optimizerConfigSchema = z.union([adamConfigSchema, sgdConfigSchema]);
export type OptimizerConfig = z.output<typeof optimizerConfigSchema>;
export type OptimizerConfigInput = z.input<typeof optimizerConfigSchema>;
export type OptimizerKind = OptimizerConfig['kind'];

/** The state vectors each kind keeps per parameter, in checkpoint order. */
export const OPTIMIZER_SLOTS: Readonly<Record<OptimizerKind, readonly string[]>> = { adam: ['m', 'v'], sgd: ['momentum'] };

/**
 * Where the update runs. 'js-loop': one JS pass over flat Float32Arrays, for the CPU backends
 * (wasm, cpu), where the weights are host memory anyway and hundreds of tiny per-parameter
 * kernels cost more than the arithmetic. 'tfjs-ops': tf ops on tf.Variables, for GPU backends,
 * so weights and moments stay on the device (no gradient download or weight upload per step).
 */
export type OptimizerImplementation = 'js-loop' | 'tfjs-ops';

export function optimizerImplementationFor(backend: string): OptimizerImplementation {
  return backend === 'wasm' || backend === 'cpu' ? 'js-loop' : 'tfjs-ops';
}

export interface UpdateOptions {
  /** 1-based number of this update (Adam's bias correction). */
  readonly step: number;
  readonly learningRate: number;
  /** Multiplies the gradients first (from clipScale); default 1. */
  readonly gradScale?: number;
}

/** Serialisable optimiser state: each slot flat, in parameter order (Adam: m, v; SGD: momentum). */
export interface OptimizerState {
  readonly kind: OptimizerKind;
  readonly slots: Readonly<Record<string, Float32Array>>;
}

/**
 * Gradients in parameter order: one flat array (the js-loop path's own form) or one tensor per
 * variable (the tfjs-ops path's). Both paths accept both; the other form costs a transfer.
 */
export type Gradients = Float32Array | readonly tf.Tensor[];

/**
 * A first-order optimiser bound to a model's variables (in a fixed order): each update leaves
 * the new weights in those variables, ready for the next forward pass.
 */
export interface Optimizer {
  readonly config: OptimizerConfig;
  readonly implementation: OptimizerImplementation;
  readonly parameterCount: number;
  /**
   * The live master weights when they are kept in host memory (js-loop), flat in parameter
   * order, for data-parallel workers and a flat EMA; undefined on the device path. Read-only:
   * change them through writeWeights.
   */
  readonly hostWeights: Float32Array | undefined;
  apply(grads: Gradients, o: UpdateOptions): void;
  /** A copy of the weights, flat in parameter order (a download on the device path). */
  readWeights(): Promise<Float32Array>;
  /** Replace the weights (a resume); the variables follow. */
  writeWeights(values: Float32Array): void;
  readState(): Promise<OptimizerState>;
  writeState(state: OptimizerState): void;
  /** Frees the optimiser's own tensors (never the model's variables). */
  dispose(): void;
}

/** Total element count of the variables, checked against a flat array's length. */
export function checkLength(what: string, values: { length: number }, expected: number): void {
  if (values.length !== expected) throw new RangeError(`${what}: ${values.length} values for ${expected} parameters`);
}

export function checkState(config: OptimizerConfig, state: OptimizerState, parameterCount: number): void {
  if (state.kind !== config.kind) throw new RangeError(`optimiser state is for '${state.kind}', this optimiser is '${config.kind}'`);
  for (const slot of OPTIMIZER_SLOTS[config.kind]) {
    const values = state.slots[slot];
    if (!values) throw new RangeError(`optimiser state lacks slot '${slot}'`);
    checkLength(`optimiser slot '${slot}'`, values, parameterCount);
  }
}
