import { tf } from '../backend';

/**
 * The EMA decay at a 1-based step: min(decay, (1 + step) / (10 + step)), so a short run's average
 * is not dominated by the random initial weights.
 */
export function emaDecayAt(decay: number, step: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}

/** ema ← decay·ema + (1 − decay)·weights, in place over flat arrays. */
export function emaUpdate(ema: Float32Array, weights: Float32Array, decay: number): void {
  if (ema.length !== weights.length) throw new RangeError(`emaUpdate: ${ema.length} EMA values for ${weights.length} weights`);
  for (let k = 0; k < ema.length; k++) ema[k] = decay * ema[k] + (1 - decay) * weights[k];
}

/** The same update with tf ops, for weights that stay on the device. */
export function emaUpdateVariables(ema: readonly tf.Variable[], weights: readonly tf.Tensor[], decay: number): void {
  if (ema.length !== weights.length) throw new RangeError(`emaUpdateVariables: ${ema.length} EMA variables for ${weights.length} weights`);
  tf.tidy(() => {
    for (let i = 0; i < ema.length; i++) ema[i].assign(tf.add(tf.mul(decay, ema[i]), tf.mul(1 - decay, weights[i])));
  });
}
