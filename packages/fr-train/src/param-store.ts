import { tf, type Rng } from '@id3/core';

/** How a tensor starts: a constant, or random with PyTorch's init for the layer that owns it. */
export type Init = { constant: number } | { uniform: number } | { normal: number };

export interface NamedShape {
  readonly name: string;
  readonly shape: number[];
}

/**
 * Named tensors of a network in a fixed order, created on first request (so the architecture
 * is written once, in the forward pass, and creation order is save order):
 *  - params: trainable tf.Variables, the order an optimiser and flat gradients use;
 *  - buffers: non-trainable state (BatchNorm running mean/var) that forward passes update and
 *    the weights file saves, but that gradients never see.
 */
export class ParamStore {
  readonly params = new Map<string, tf.Variable>();
  readonly buffers = new Map<string, tf.Variable>();
  /** While frozen, asking for a missing tensor is an error (a forward after construction). */
  private frozen = false;

  /** `rng` undefined: random inits are left at zero (a network about to be loaded skips drawing them). */
  constructor(private readonly rng: Rng | undefined) {}

  param(name: string, shape: readonly number[], init: Init): tf.Variable {
    return this.getOrCreate(this.params, name, shape, init, true);
  }

  buffer(name: string, shape: readonly number[], init: Init): tf.Variable {
    return this.getOrCreate(this.buffers, name, shape, init, false);
  }

  private getOrCreate(map: Map<string, tf.Variable>, name: string, shape: readonly number[], init: Init, trainable: boolean): tf.Variable {
    const existing = map.get(name);
    if (existing) {
      if (existing.shape.join() !== shape.join())
        throw new Error(`${name}: shape [${existing.shape.join(', ')}] requested as [${shape.join(', ')}]`);
      return existing;
    }
    if (this.frozen) throw new Error(`${name} does not exist in this network`);
    const values = initialValues(this.rng, shape, init);
    const initial = tf.tensor(values, [...shape]);
    // tfjs variable names must be unique process-wide: ours live in the maps.
    const v = tf.variable(initial, trainable);
    initial.dispose();
    map.set(name, v);
    return v;
  }

  freeze(): void {
    this.frozen = true;
  }

  paramCount(): number {
    return countOf(this.params);
  }

  bufferCount(): number {
    return countOf(this.buffers);
  }

  layout(): { params: NamedShape[]; buffers: NamedShape[] } {
    return { params: layoutOf(this.params), buffers: layoutOf(this.buffers) };
  }

  dispose(): void {
    for (const v of [...this.params.values(), ...this.buffers.values()]) v.dispose();
    this.params.clear();
    this.buffers.clear();
  }
}

function initialValues(rng: Rng | undefined, shape: readonly number[], init: Init): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  if ('constant' in init) values.fill(init.constant);
  else if (!rng) return values;
  else if ('uniform' in init) for (let i = 0; i < n; i++) values[i] = rng.range(-init.uniform, init.uniform);
  else {
    rng.fillNormal(values);
    for (let i = 0; i < n; i++) values[i] *= init.normal;
  }
  return values;
}

const countOf = (map: Map<string, tf.Variable>): number => [...map.values()].reduce((n, v) => n + v.size, 0);

const layoutOf = (map: Map<string, tf.Variable>): NamedShape[] => [...map.entries()].map(([name, v]) => ({ name, shape: [...v.shape] }));
