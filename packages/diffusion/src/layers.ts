import { tf, type Rng } from '@id3/core';

/**
 * A flat, ordered store of named trainable variables. Layers ask for a parameter by name and
 * shape; the first request creates it (so the architecture is written once, in the forward
 * pass), later requests return it. The order of creation is the save order.
 */
export class ParamStore {
  readonly variables = new Map<string, tf.Variable>();
  /** While frozen, asking for a missing parameter is an error (a forward after construction). */
  private frozen = false;

  constructor(private readonly rng: Rng) {}

  get(name: string, shape: readonly number[], init: 'zeros' | 'ones' | { uniform: number }): tf.Variable {
    const existing = this.variables.get(name);
    if (existing) {
      if (existing.shape.join() !== shape.join())
        throw new Error(`parameter ${name}: shape [${existing.shape.join(', ')}] requested as [${shape.join(', ')}]`);
      return existing;
    }
    if (this.frozen) throw new Error(`parameter ${name} does not exist in this network`);
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    if (init === 'ones') values.fill(1);
    else if (init !== 'zeros') for (let i = 0; i < n; i++) values[i] = this.rng.range(-init.uniform, init.uniform);
    const initial = tf.tensor(values, [...shape]);
    const v = tf.variable(initial, true); // tfjs names must be unique process-wide: ours live in the map
    initial.dispose();
    this.variables.set(name, v);
    return v;
  }

  freeze(): void {
    this.frozen = true;
  }

  count(): number {
    let total = 0;
    for (const v of this.variables.values()) total += v.size;
    return total;
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}

/** PyTorch's default init bound for a layer with this fan-in (kaiming_uniform with a = √5). */
const bound = (fanIn: number): { uniform: number } => ({ uniform: 1 / Math.sqrt(fanIn) });

export function conv2d(
  p: ParamStore,
  name: string,
  x: tf.Tensor4D,
  cout: number,
  kernel: number,
  o: { stride?: 1 | 2; zeroInit?: boolean } = {},
): tf.Tensor4D {
  const cin = x.shape[3];
  const fanIn = cin * kernel * kernel;
  const w = p.get(`${name}.weight`, [kernel, kernel, cin, cout], o.zeroInit ? 'zeros' : bound(fanIn));
  const b = p.get(`${name}.bias`, [cout], o.zeroInit ? 'zeros' : bound(fanIn));
  if (kernel === 1 && (o.stride ?? 1) === 1) {
    // A 1×1 convolution is a matrix product; skipping conv2d saves its im2col and gradient path.
    const [n, h, wd] = x.shape;
    const y = tf.add(tf.matMul(tf.reshape(x, [n * h * wd, cin]), tf.reshape(w, [cin, cout])), b);
    return tf.reshape(y, [n, h, wd, cout]);
  }
  return tf.add(tf.conv2d(x, w as tf.Tensor4D, o.stride ?? 1, 'same'), b);
}

export function linear(p: ParamStore, name: string, x: tf.Tensor2D, out: number, o: { zeroInit?: boolean } = {}): tf.Tensor2D {
  const fanIn = x.shape[1];
  const w = p.get(`${name}.weight`, [fanIn, out], o.zeroInit ? 'zeros' : bound(fanIn));
  const b = p.get(`${name}.bias`, [out], o.zeroInit ? 'zeros' : bound(fanIn));
  return tf.add(tf.matMul(x, w as tf.Tensor2D), b);
}

export const silu = <T extends tf.Tensor>(x: T): T => tf.mul(x, tf.sigmoid(x));

/**
 * Group normalisation with a hand-written backward pass: autodiff through mean/variance/rsqrt
 * runs about twice as many kernels, and GroupNorm sits in front of every convolution.
 * dx = rstd · (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), means over each (sample, group).
 */
export function groupNormWith(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, groups: number, eps = 1e-5): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  if (c % groups !== 0) throw new Error(`GroupNorm: ${c} channels do not split into ${groups} groups`);
  const grouped = [b, h * w, groups, c / groups];
  const op = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, g, bt] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const xg = tf.reshape(xIn, grouped);
    const { mean, variance } = tf.moments(xg, [1, 3], true);
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(tf.sub(xg, mean), rstd);
    const xhat4 = tf.reshape(xhat, [b, h, w, c]);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat4, g), bt),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved;
        const dgamma = tf.sum(tf.mul(dy, tf.reshape(sx, [b, h, w, c])), [0, 1, 2]);
        const dbeta = tf.sum(dy, [0, 1, 2]);
        const dxhat = tf.reshape(tf.mul(dy, sg), grouped);
        const m1 = tf.mean(dxhat, [1, 3], true);
        const m2 = tf.mean(tf.mul(dxhat, sx), [1, 3], true);
        const dx = tf.mul(sr, tf.sub(tf.sub(dxhat, m1), tf.mul(sx, m2)));
        return [tf.reshape(dx, [b, h, w, c]), dgamma, dbeta];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, gamma, beta) as tf.Tensor4D;
}

export function groupNorm(p: ParamStore, name: string, x: tf.Tensor4D, groups: number): tf.Tensor4D {
  const c = x.shape[3];
  const g = Math.min(groups, c);
  return groupNormWith(x, p.get(`${name}.gamma`, [c], 'ones') as tf.Tensor1D, p.get(`${name}.beta`, [c], 'zeros') as tf.Tensor1D, g);
}

/** Nearest-neighbour 2× upsampling by broadcasting (differentiable on every backend). */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const expanded = tf.mul(tf.reshape(x, [b, h, 1, w, 1, c]), tf.ones([1, 1, 2, 1, 2, 1]));
  return tf.reshape(expanded, [b, 2 * h, 2 * w, c]);
}

/** Sinusoidal timestep embedding [cos(t·f_i), sin(t·f_i)], f_i = 10000^(−i/half) (improved-diffusion). */
export function timestepEmbedding(t: readonly number[], dim: number, maxPeriod = 10000): tf.Tensor2D {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(t.length * dim);
  for (let r = 0; r < t.length; r++) {
    for (let i = 0; i < half; i++) {
      const arg = t[r] * Math.exp((-Math.log(maxPeriod) * i) / half);
      out[r * dim + i] = Math.cos(arg);
      out[r * dim + half + i] = Math.sin(arg);
    }
  }
  return tf.tensor2d(out, [t.length, dim]);
}
