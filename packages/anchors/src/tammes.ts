import { Rng, tf } from '@id3/core';
import { angleDeg, randomUnitVectors } from './sphere';

/**
 * Tammes anchors: N unit vectors in R^d whose smallest pairwise angle is as large as we can make it.
 *
 * Each step every point is pushed away from its nearest neighbours along the sphere:
 * the gradient of the smooth maximum (1/τ)·log Σ_j exp(τ·cos(x_i, x_j)) over the point's
 * k nearest neighbours is Σ_j softmax_j(τ·cos_ij)·x_j; we take its tangential part, step
 * against it and re-normalise. The sharpness τ rises geometrically (early steps spread
 * everything, late steps act on the closest pair only) and the step size decays, so the
 * configuration settles instead of jittering.
 *
 * A full N×N Gram matrix per step would be wasteful: only each point's nearest neighbours
 * matter, so a k-nearest list is rebuilt every `refreshEvery` steps (block by block) and
 * steps touch only N·k pairs. When k ≥ N−1 all pairs are used and the method is exact.
 */
export interface TammesOptions {
  readonly n: number;
  readonly dim: number;
  readonly seed: number;
  readonly iterations: number;
  /** Neighbours per point that push it (capped at N−1). */
  readonly neighbours?: number;
  /** Rebuild the neighbour lists every this many steps. */
  readonly refreshEvery?: number;
  /** Step size (radians-ish) at the first and the last step; decays geometrically. */
  readonly stepStart?: number;
  readonly stepEnd?: number;
  /** Softmax sharpness τ at the first and last step; rises geometrically. */
  readonly sharpnessStart?: number;
  readonly sharpnessEnd?: number;
  /** Rows processed together (memory: blockRows·k·d floats for the neighbour gather). */
  readonly blockRows?: number;
}

export interface TammesProgress {
  readonly step: number;
  readonly total: number;
  /** Largest cosine to a listed neighbour (equals the true max right after a refresh). */
  readonly maxNeighbourCos: number;
  readonly minAngleDeg: number;
  readonly meanNearestCos: number;
  readonly sharpness: number;
  readonly stepSize: number;
}

export interface TammesRunHooks {
  /** Resume from these points at this step (from a checkpoint). */
  readonly resume?: { readonly points: Float32Array; readonly step: number };
  readonly onProgress?: (p: TammesProgress) => void;
  /** Called at steps that are multiples of `every` (always on refresh boundaries). */
  readonly checkpoint?: { readonly every: number; readonly save: (step: number, points: Float32Array) => void | Promise<void> };
}

export type ResolvedTammesOptions = Required<TammesOptions>;

export function resolveTammesOptions(o: TammesOptions): ResolvedTammesOptions {
  if (!Number.isInteger(o.n) || o.n < 2) throw new RangeError(`tammes: n must be an integer ≥ 2, got ${o.n}`);
  if (!Number.isInteger(o.dim) || o.dim < 2) throw new RangeError(`tammes: dim must be an integer ≥ 2, got ${o.dim}`);
  if (!Number.isInteger(o.iterations) || o.iterations < 0) throw new RangeError(`tammes: iterations must be an integer ≥ 0`);
  return {
    neighbours: 32,
    refreshEvery: 20,
    stepStart: 0.1,
    stepEnd: 0.001,
    sharpnessStart: 10,
    sharpnessEnd: 1000,
    blockRows: 1024,
    ...o,
  };
}

/** Geometric interpolation a→b at fraction t ∈ [0, 1]. */
export const geometric = (a: number, b: number, t: number): number => a * Math.pow(b / a, t);

export function scheduleAt(o: ResolvedTammesOptions, step: number): { sharpness: number; stepSize: number } {
  const t = o.iterations <= 1 ? 1 : step / (o.iterations - 1);
  return { sharpness: geometric(o.sharpnessStart, o.sharpnessEnd, t), stepSize: geometric(o.stepStart, o.stepEnd, t) };
}

/**
 * Indices of each point's k nearest other points, computed block by block: [n, k] int32.
 * (matMul against a transposed copy: on wasm, matMul(a, b, false, true) is ~9× slower.)
 */
export function nearestNeighbours(x: tf.Tensor2D, k: number, blockRows: number): Int32Array {
  const [n, dim] = x.shape;
  const out = new Int32Array(n * k);
  const xt = tf.transpose(x);
  try {
    for (let start = 0; start < n; start += blockRows) {
      const rows = Math.min(blockRows, n - start);
      const idx = tf.tidy(() => {
        const gram = tf.matMul(tf.slice(x, [start, 0], [rows, dim]), xt);
        // Push each point's own similarity (1) below everything so it is never its own neighbour.
        const self = tf.oneHot(tf.range(start, start + rows, 1, 'int32'), n, 4, 0);
        return tf.topk(tf.sub(gram, self), k).indices;
      });
      out.set(idx.dataSync() as Int32Array, start * k);
      idx.dispose();
    }
  } finally {
    xt.dispose();
  }
  return out;
}

/**
 * One projected step for rows [start, start+rows) of `x` (row-major [n, dim]); writes the moved,
 * re-normalised rows into `next` and returns the largest neighbour cosine per row (before the
 * move). The neighbour rows are gathered in JS: tfjs-wasm's Gather kernel is ~50× slower than
 * copying rows with TypedArray.set.
 */
function stepBlock(
  x: Float32Array,
  dim: number,
  nbr: Int32Array,
  k: number,
  start: number,
  rows: number,
  sharpness: number,
  stepSize: number,
  gatherBuffer: Float32Array,
  next: Float32Array,
): Float32Array {
  for (let r = 0; r < rows * k; r++) {
    const j = nbr[start * k + r];
    gatherBuffer.set(x.subarray(j * dim, (j + 1) * dim), r * dim);
  }
  const [moved, nearest] = tf.tidy(() => {
    const xb = tf.tensor2d(x.subarray(start * dim, (start + rows) * dim), [rows, dim]);
    const xn = tf.tensor3d(gatherBuffer.subarray(0, rows * k * dim), [rows, k, dim]);
    const cos = tf.reshape(tf.matMul(xn, tf.reshape(xb, [rows, dim, 1])), [rows, k]);
    const weights = tf.softmax(tf.mul(cos, sharpness));
    const pull = tf.reshape(tf.matMul(tf.reshape(weights, [rows, 1, k]), xn), [rows, dim]);
    const radial = tf.sum(tf.mul(pull, xb), 1, true);
    const tangent = tf.sub(pull, tf.mul(radial, xb));
    const step = tf.sub(xb, tf.mul(tangent, stepSize));
    return [tf.div(step, tf.norm(step, 2, 1, true)), tf.max(cos, 1)];
  });
  next.set(moved.dataSync() as Float32Array, start * dim);
  const near = nearest.dataSync() as Float32Array;
  moved.dispose();
  nearest.dispose();
  return near;
}

/** Run the optimiser; returns the points (row-major [n, dim]) and the last step's statistics. */
export async function tammesAnchors(
  options: TammesOptions,
  hooks: TammesRunHooks = {},
): Promise<{ points: Float32Array; options: ResolvedTammesOptions; last: TammesProgress | undefined }> {
  const o = resolveTammesOptions(options);
  const k = Math.min(o.neighbours, o.n - 1);
  const startStep = hooks.resume?.step ?? 0;
  let x = Float32Array.from(hooks.resume?.points ?? randomUnitVectors(o.n, o.dim, new Rng(o.seed)));
  if (x.length !== o.n * o.dim) throw new RangeError(`tammes: resume points have ${x.length} values, expected ${o.n * o.dim}`);
  let next = new Float32Array(x.length);
  const gatherBuffer = new Float32Array(Math.min(o.blockRows, o.n) * k * o.dim);
  let nbr: Int32Array | undefined;
  let last: TammesProgress | undefined;
  for (let step = startStep; step < o.iterations; step++) {
    // Refresh on a fixed grid (and at a resume, which checkpoints place on that grid), so a
    // resumed run follows exactly the same path as an uninterrupted one.
    if (nbr === undefined || step % o.refreshEvery === 0) {
      const xt = tf.tensor2d(x, [o.n, o.dim]);
      try {
        nbr = nearestNeighbours(xt, k, o.blockRows);
      } finally {
        xt.dispose();
      }
    }
    const { sharpness, stepSize } = scheduleAt(o, step);
    let maxCos = -Infinity;
    let sumNearest = 0;
    for (let start = 0; start < o.n; start += o.blockRows) {
      const near = stepBlock(x, o.dim, nbr, k, start, Math.min(o.blockRows, o.n - start), sharpness, stepSize, gatherBuffer, next);
      for (const c of near) {
        if (c > maxCos) maxCos = c;
        sumNearest += c;
      }
    }
    [x, next] = [next, x];
    last = {
      step: step + 1,
      total: o.iterations,
      maxNeighbourCos: maxCos,
      minAngleDeg: angleDeg(maxCos),
      meanNearestCos: sumNearest / o.n,
      sharpness,
      stepSize,
    };
    hooks.onProgress?.(last);
    const done = step + 1;
    if (hooks.checkpoint && done < o.iterations && done % lcm(hooks.checkpoint.every, o.refreshEvery) === 0) {
      await hooks.checkpoint.save(done, x);
    }
    // Let timers (heartbeats, signals) run between steps.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { points: x, options: o, last };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
