/** Adam's hyperparameters (Kingma & Ba). */
export interface AdamHyperparameters {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
}

/**
 * Adam's step size at 1-based step t with both bias corrections folded in (the paper's
 * "efficient" form, §2): lr·√(1 − β2^t) / (1 − β1^t). ε is then added to the uncorrected √v.
 */
export function adamStepSize(learningRate: number, step: number, beta1: number, beta2: number): number {
  return (learningRate * Math.sqrt(1 - beta2 ** step)) / (1 - beta1 ** step);
}

export interface AdamUpdate extends AdamHyperparameters {
  /** From adamStepSize. */
  readonly stepSize: number;
  /** Multiplies every gradient first (global-norm clipping); 1 for none. */
  readonly gradScale: number;
}

/**
 * One Adam update over flat arrays, in place, one pass: g ← s·g; m ← β1·m + (1−β1)·g;
 * v ← β2·v + (1−β2)·g²; w ← w − stepSize·m / (√v + ε). The arithmetic (and its order) is the
 * diffusion trainer's, so its checkpoints resume bit for bit.
 */
export function adamUpdate(w: Float32Array, m: Float32Array, v: Float32Array, grads: Float32Array, o: AdamUpdate): void {
  const { beta1: b1, beta2: b2, epsilon: eps, stepSize, gradScale } = o;
  for (let k = 0; k < w.length; k++) {
    const g = grads[k] * gradScale;
    m[k] = b1 * m[k] + (1 - b1) * g;
    v[k] = b2 * v[k] + (1 - b2) * g * g;
    w[k] -= (stepSize * m[k]) / (Math.sqrt(v[k]) + eps);
  }
}
