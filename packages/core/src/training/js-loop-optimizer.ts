import { tf } from '../backend';
import { adamStepSize, adamUpdate } from './adam';
import {
  OPTIMIZER_SLOTS,
  checkLength,
  checkState,
  type Gradients,
  type Optimizer,
  type OptimizerConfig,
  type OptimizerState,
  type UpdateOptions,
} from './optimizer';
import { sgdMomentumUpdate } from './sgd';

/** Per-variable tensors → one flat array (a download per tensor). */
export function flattenTensorsSync(tensors: readonly tf.Tensor[]): Float32Array {
  const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
  let offset = 0;
  for (const t of tensors) {
    out.set(t.dataSync() as Float32Array, offset);
    offset += t.size;
  }
  return out;
}

/**
 * The CPU-backend optimiser: master weights and moments are flat Float32Arrays updated by one JS
 * loop; after each update the weights are copied into the model's variables. On wasm a pass over
 * 1.35 M parameters costs milliseconds, where the same update as tensor ops is thousands of
 * small kernel launches.
 */
export class JsLoopOptimizer implements Optimizer {
  readonly implementation = 'js-loop' as const;
  readonly parameterCount: number;
  readonly hostWeights: Float32Array;
  private readonly slots: Float32Array[];

  constructor(
    readonly config: OptimizerConfig,
    private readonly variables: readonly tf.Variable[],
  ) {
    this.hostWeights = flattenTensorsSync(variables);
    this.parameterCount = this.hostWeights.length;
    this.slots = OPTIMIZER_SLOTS[config.kind].map(() => new Float32Array(this.parameterCount));
  }

  apply(grads: Gradients, o: UpdateOptions): void {
    const g = grads instanceof Float32Array ? grads : flattenTensorsSync(grads);
    checkLength('apply', g, this.parameterCount);
    const gradScale = o.gradScale ?? 1;
    const c = this.config;
    if (c.kind === 'adam') {
      const [m, v] = this.slots;
      adamUpdate(this.hostWeights, m, v, g, { ...c, stepSize: adamStepSize(o.learningRate, o.step, c.beta1, c.beta2), gradScale });
    } else {
      sgdMomentumUpdate(this.hostWeights, this.slots[0], g, { ...c, learningRate: o.learningRate, gradScale });
    }
    this.writeVariables();
  }

  readWeights(): Promise<Float32Array> {
    return Promise.resolve(Float32Array.from(this.hostWeights));
  }

  writeWeights(values: Float32Array): void {
    checkLength('writeWeights', values, this.parameterCount);
    this.hostWeights.set(values);
    this.writeVariables();
  }

  readState(): Promise<OptimizerState> {
    const slots: Record<string, Float32Array> = {};
    OPTIMIZER_SLOTS[this.config.kind].forEach((name, i) => (slots[name] = Float32Array.from(this.slots[i])));
    return Promise.resolve({ kind: this.config.kind, slots });
  }

  writeState(state: OptimizerState): void {
    checkState(this.config, state, this.parameterCount);
    OPTIMIZER_SLOTS[this.config.kind].forEach((name, i) => this.slots[i].set(state.slots[name]));
  }

  private writeVariables(): void {
    let offset = 0;
    for (const v of this.variables) {
      const t = tf.tensor(this.hostWeights.subarray(offset, offset + v.size), v.shape);
      v.assign(t);
      t.dispose();
      offset += v.size;
    }
  }

  dispose(): void {
    // Nothing on the device: the state is plain arrays.
  }
}
