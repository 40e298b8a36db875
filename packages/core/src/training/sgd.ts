/** SGD hyperparameters, as torch.optim.SGD (no dampening). */
export interface SgdHyperparameters {
  readonly momentum: number;
  /** L2 penalty added to the gradient (coupled, not AdamW-style decoupled). */
  readonly weightDecay: number;
  readonly nesterov: boolean;
}

export interface SgdUpdate extends SgdHyperparameters {
  readonly learningRate: number;
  /** Multiplies every gradient first (global-norm clipping); 1 for none. */
  readonly gradScale: number;
}

/**
 * One SGD-with-momentum update over flat arrays, in place, as torch.optim.SGD computes it:
 * g ← s·g + wd·w; buf ← μ·buf + g; w ← w − lr·(nesterov ? g + μ·buf : buf). A zero buffer
 * makes the first step buf = g, PyTorch's initialisation.
 */
export function sgdMomentumUpdate(w: Float32Array, buf: Float32Array, grads: Float32Array, o: SgdUpdate): void {
  const { learningRate: lr, momentum: mu, weightDecay: wd, nesterov, gradScale } = o;
  for (let k = 0; k < w.length; k++) {
    const g = grads[k] * gradScale + wd * w[k];
    buf[k] = mu * buf[k] + g;
    w[k] -= lr * (nesterov ? g + mu * buf[k] : buf[k]);
  }
}
