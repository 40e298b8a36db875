import { tf } from '@id3/core';

/** PyTorch's BatchNorm defaults (arcface_torch sets eps = 1e-5 explicitly and keeps momentum 0.1). */
export const BN_EPSILON = 1e-5;
export const BN_MOMENTUM = 0.1;

/** The statistics of one training batch, per channel: mean and biased variance, and how many values each came from. */
export interface BatchStatistics {
  readonly mean: tf.Tensor1D;
  readonly variance: tf.Tensor1D;
  readonly count: number;
}

/**
 * Batch normalisation with batch statistics (training mode), over every axis but the last
 * (channels): y = γ·(x − μ_B)/√(σ²_B + ε) + β with the biased σ²_B, as PyTorch normalises.
 * `gamma` undefined means a fixed γ = 1 (arcface_torch's `features` BatchNorm1d).
 * `onStatistics` receives μ_B and σ²_B while they exist (for the running averages).
 *
 * The backward pass is written by hand — autodiff through moments/rsqrt runs about twice as many
 * kernels: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = γ·dy, means over the batch axes.
 */
export function batchNormTraining(
  x: tf.Tensor,
  gamma: tf.Tensor1D | undefined,
  beta: tf.Tensor1D,
  o: { epsilon?: number; onStatistics?: (stats: BatchStatistics) => void } = {},
): tf.Tensor {
  const shape = x.shape;
  const c = shape[shape.length - 1];
  const m = x.size / c;
  const eps = o.epsilon ?? BN_EPSILON;
  const op = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xIn = args[0] as tf.Tensor;
    const g = gamma ? (args[1] as tf.Tensor) : undefined;
    const b = args[gamma ? 2 : 1] as tf.Tensor;
    const x2 = tf.reshape(xIn, [m, c]);
    const { mean, variance } = tf.moments(x2, 0);
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(tf.sub(x2, mean), rstd);
    o.onStatistics?.({ mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D, count: m });
    save(g ? [xhat, rstd, g] : [xhat, rstd]);
    const scaled = g ? tf.mul(xhat, g) : xhat;
    return {
      value: tf.reshape(tf.add(scaled, b), shape),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved;
        const dy2 = tf.reshape(dy, [m, c]);
        const dbeta = tf.sum(dy2, 0);
        const dxhat = sg ? tf.mul(dy2, sg) : dy2;
        const m1 = tf.mean(dxhat, 0);
        const m2 = tf.mean(tf.mul(dxhat, sx), 0);
        const dx = tf.reshape(tf.mul(sr, tf.sub(tf.sub(dxhat, m1), tf.mul(sx, m2))), shape);
        return sg ? [dx, tf.sum(tf.mul(dy2, sx), 0), dbeta] : [dx, dbeta];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return (gamma ? op(x, gamma, beta) : op(x, beta)) as tf.Tensor;
}

/** Batch normalisation with fixed statistics (inference mode): one scale and one shift per channel. */
export function batchNormInference(
  x: tf.Tensor,
  gamma: tf.Tensor1D | undefined,
  beta: tf.Tensor1D,
  mean: tf.Tensor1D,
  variance: tf.Tensor1D,
  epsilon = BN_EPSILON,
): tf.Tensor {
  const rstd = tf.rsqrt(tf.add(variance, epsilon));
  const scale = gamma ? tf.mul(gamma, rstd) : rstd;
  return tf.add(tf.mul(x, scale), tf.sub(beta, tf.mul(mean, scale)));
}

/**
 * PyTorch's running averages, in place: r ← (1 − momentum)·r + momentum·batch, where the
 * variance entering the average is the unbiased one (σ²_B·n/(n − 1)) although the batch was
 * normalised with the biased one.
 */
export function updateRunningStatistics(
  runningMean: tf.Variable,
  runningVariance: tf.Variable,
  stats: BatchStatistics,
  momentum = BN_MOMENTUM,
): void {
  if (stats.count < 2) throw new RangeError(`BatchNorm in training mode needs more than 1 value per channel, got ${stats.count}`);
  tf.tidy(() => {
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - momentum), tf.mul(stats.mean, momentum)));
    const unbiased = tf.mul(stats.variance, stats.count / (stats.count - 1));
    runningVariance.assign(tf.add(tf.mul(runningVariance, 1 - momentum), tf.mul(unbiased, momentum)));
  });
}
