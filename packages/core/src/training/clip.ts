import { tf } from '../backend';

/** √(Σ g²) over one flat gradient vector, accumulated in float64. */
export function globalNorm(grads: Float32Array): number {
  let sq = 0;
  for (let k = 0; k < grads.length; k++) sq += grads[k] * grads[k];
  return Math.sqrt(sq);
}

/** The global norm of per-parameter gradient tensors, computed on the device (a scalar tensor). */
export function globalNormTensor(grads: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) as tf.Scalar);
}

/**
 * The factor that scales gradients of global norm `norm` down to `maxNorm` (1 when already
 * within; maxNorm 0 turns clipping off). The 1e-6 is torch.nn.utils.clip_grad_norm_'s.
 */
export function clipScale(norm: number, maxNorm: number): number {
  return maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
}
