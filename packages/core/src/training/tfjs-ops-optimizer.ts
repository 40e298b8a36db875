import { tf } from '../backend';
import { adamStepSize } from './adam';
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

/** Split a flat array into tensors shaped like the variables (an upload). */
function splitLike(values: Float32Array, like: readonly tf.Variable[]): tf.Tensor[] {
  let offset = 0;
  return like.map((v) => {
    const t = tf.tensor(values.subarray(offset, offset + v.size), v.shape);
    offset += v.size;
    return t;
  });
}

async function flatten(tensors: readonly tf.Tensor[]): Promise<Float32Array> {
  const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
  let offset = 0;
  for (const t of tensors) {
    out.set((await t.data()) as Float32Array, offset);
    offset += t.size;
  }
  return out;
}

/**
 * The GPU-backend optimiser: the model's variables are the weights and every moment is a
 * tf.Variable beside its parameter, so an update is a few tf ops per parameter on the device.
 * The formulas are the js-loop path's (same ε placement), in float32 throughout.
 */
export class TfjsOpsOptimizer implements Optimizer {
  readonly implementation = 'tfjs-ops' as const;
  readonly parameterCount: number;
  readonly hostWeights = undefined;
  /** slots[s][i]: slot s of variable i. */
  private readonly slots: tf.Variable[][];

  constructor(
    readonly config: OptimizerConfig,
    private readonly variables: readonly tf.Variable[],
  ) {
    this.parameterCount = variables.reduce((n, v) => n + v.size, 0);
    this.slots = OPTIMIZER_SLOTS[config.kind].map(() => variables.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false))));
  }

  apply(grads: Gradients, o: UpdateOptions): void {
    if (!(grads instanceof Float32Array) && grads.length !== this.variables.length)
      throw new RangeError(`apply: ${grads.length} gradients for ${this.variables.length} variables`);
    if (grads instanceof Float32Array) checkLength('apply', grads, this.parameterCount);
    const scale = o.gradScale ?? 1;
    const c = this.config;
    tf.tidy(() => {
      const gs = grads instanceof Float32Array ? splitLike(grads, this.variables) : grads;
      this.variables.forEach((w, i) => {
        const g = scale === 1 ? gs[i] : tf.mul(gs[i], scale);
        if (c.kind === 'adam') {
          const [m, v] = [this.slots[0][i], this.slots[1][i]];
          m.assign(tf.add(tf.mul(c.beta1, m), tf.mul(1 - c.beta1, g)));
          v.assign(tf.add(tf.mul(c.beta2, v), tf.mul(1 - c.beta2, tf.square(g))));
          const stepSize = adamStepSize(o.learningRate, o.step, c.beta1, c.beta2);
          w.assign(tf.sub(w, tf.div(tf.mul(stepSize, m), tf.add(tf.sqrt(v), c.epsilon))));
        } else {
          const buf = this.slots[0][i];
          const decayed = c.weightDecay > 0 ? tf.add(g, tf.mul(c.weightDecay, w)) : g;
          buf.assign(tf.add(tf.mul(c.momentum, buf), decayed));
          const direction = c.nesterov ? tf.add(decayed, tf.mul(c.momentum, buf)) : buf;
          w.assign(tf.sub(w, tf.mul(o.learningRate, direction)));
        }
      });
    });
  }

  readWeights(): Promise<Float32Array> {
    return flatten(this.variables);
  }

  writeWeights(values: Float32Array): void {
    checkLength('writeWeights', values, this.parameterCount);
    assignFlat(this.variables, values);
  }

  async readState(): Promise<OptimizerState> {
    const slots: Record<string, Float32Array> = {};
    const names = OPTIMIZER_SLOTS[this.config.kind];
    for (let s = 0; s < names.length; s++) slots[names[s]] = await flatten(this.slots[s]);
    return { kind: this.config.kind, slots };
  }

  writeState(state: OptimizerState): void {
    checkState(this.config, state, this.parameterCount);
    OPTIMIZER_SLOTS[this.config.kind].forEach((name, s) => assignFlat(this.slots[s], state.slots[name]));
  }

  dispose(): void {
    for (const slot of this.slots) for (const v of slot) v.dispose();
    this.slots.length = 0;
  }
}

function assignFlat(variables: readonly tf.Variable[], values: Float32Array): void {
  const parts = splitLike(values, variables);
  variables.forEach((v, i) => v.assign(parts[i]));
  tf.dispose(parts);
}
