import { tf } from '@id3/core';

export type MarginKind = 'arcface' | 'cosface' | 'softmax';

/** What turns cosines into logits: the kind, its margin (0 for softmax) and the scale s. */
export interface MarginSpec {
  readonly kind: MarginKind;
  readonly margin: number;
  readonly scale: number;
}

/** Default margins: ArcFace m = 0.5 (an angle, arcface_torch's), CosFace m = 0.35 (a cosine; the CosFace paper's and the method page's — arcface_torch's CosFace configs use 0.4). */
export const DEFAULT_MARGINS: Readonly<Record<MarginKind, number>> = { arcface: 0.5, cosface: 0.35, softmax: 0 };

/**
 * The fixed AdaCos scale s = √2·ln(C − 1) (Zhang et al., CVPR 2019): the s at which a target at
 * θ = π/4, with the C − 1 other classes near θ = π/2, has probability ½, so the softmax keeps a
 * gradient over the useful range of angles instead of saturating. arcface_torch's s = 64 was
 * chosen for 10k–2M-class sets (MS1M, Glint360k, WebFace); with tens or hundreds of classes
 * it often does not converge (ronghuaiyang/arcface-pytorch#38: 92 classes stuck at accuracy 0
 * with s = 64, learning with s = 4; the other usual cure is a softmax warm-up,
 * auroua/InsightFace_TF#42). This gives s = 8.1 at 300 classes, 13.0 at 10,000.
 * Defined for C ≥ 3 (at C = 2 it is 0).
 */
export function adaCosScale(classes: number): number {
  if (!Number.isInteger(classes) || classes < 3)
    throw new RangeError(`the AdaCos scale √2·ln(C − 1) needs at least 3 classes, got ${classes}: set the scale explicitly`);
  return Math.SQRT2 * Math.log(classes - 1);
}

/** x / ‖x‖ along `axis`, with torch.nn.functional.normalize's guard (‖x‖ ≥ 1e-12). */
export function l2Normalize<T extends tf.Tensor>(x: T, axis: number): T {
  return tf.mul(x, tf.rsqrt(tf.maximum(tf.sum(tf.square(x), axis, true), 1e-24)));
}

/** Checks that there is one integer label in [0, classes) per row. */
export function checkLabels(labels: ArrayLike<number>, classes: number, rows: number): void {
  if (labels.length !== rows) throw new RangeError(`labels: ${labels.length} labels for a batch of ${rows}`);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= classes) throw new RangeError(`labels[${i}] = ${y} is not a class in [0, ${classes})`);
  }
}

function oneHot(labels: ArrayLike<number>, classes: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), classes), 'float32') as tf.Tensor2D);
}

/**
 * ArcFace exactly as arcface_torch's CombinedMarginLoss (m1 = 1, m3 = 0) computes it: the target
 * cosine becomes cos(arccos(cos θ_y) + m) in the forward pass, under torch.no_grad, so the
 * backward pass treats the margin as the identity (a straight-through gradient, ∂/∂cos θ = 1).
 * This is also its numerical stability: the derivative of arccos, −1/√(1 − x²), infinite at
 * θ = 0, is never taken, and past θ + m > π nothing is special-cased — the forward value
 * cos(θ + m) turns upwards again there, but the gradient still pushes cos θ_y up. (The older
 * insightface ArcFace replaced cos(θ + m) by cos θ − m·sin m past θ > π − m and
 * differentiated through √(1 − cos²θ).)
 */
function arcMarginStraightThrough(cosines: tf.Tensor2D, targetMask: tf.Tensor2D, margin: number): tf.Tensor2D {
  const op = tf.customGrad(((c: tf.Tensor) => {
    const target = tf.sum(tf.mul(c, targetMask), 1, true);
    const shifted = tf.cos(tf.add(tf.acos(target), margin));
    return { value: tf.add(c, tf.mul(targetMask, tf.sub(shifted, target))), gradFunc: (dy: tf.Tensor) => dy };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(cosines) as tf.Tensor2D;
}

/**
 * Logits from cosines cos θ_j (rows: samples, columns: classes) for the label of each row:
 *   ArcFace  s·cos(θ_y + m) at the target, s·cos θ_j elsewhere (straight-through, see above);
 *   CosFace  s·(cos θ_y − m) at the target, s·cos θ_j elsewhere;
 *   softmax  s·cos θ_j (a normalised softmax, NormFace).
 * The cosines are clipped to [−1, 1] first (arcface_torch's partial_fc does the same: rounding
 * can carry |cos| past 1, where arccos is NaN). `marginFactor` ∈ [0, 1] scales the margin: 0 is
 * the margin-free softmax warm-up, 1 the full margin.
 */
export function marginLogits(cosines: tf.Tensor2D, labels: ArrayLike<number>, spec: MarginSpec, marginFactor = 1): tf.Tensor2D {
  if (!(marginFactor >= 0 && marginFactor <= 1)) throw new RangeError(`marginFactor ${marginFactor} must be in [0, 1]`);
  const [rows, classes] = cosines.shape;
  checkLabels(labels, classes, rows);
  const m = spec.margin * marginFactor;
  return tf.tidy(() => {
    const c = tf.clipByValue(cosines, -1, 1);
    if (spec.kind === 'softmax' || m === 0) return tf.mul(c, spec.scale);
    const mask = oneHot(labels, classes);
    const margined = spec.kind === 'arcface' ? arcMarginStraightThrough(c, mask, m) : tf.sub(c, tf.mul(mask, m));
    return tf.mul(margined, spec.scale);
  });
}

/** Mean cross-entropy of integer labels under softmax(logits), through log-softmax (max subtracted, no overflow). */
export function softmaxCrossEntropy(logits: tf.Tensor2D, labels: ArrayLike<number>): tf.Scalar {
  const [rows, classes] = logits.shape;
  checkLabels(labels, classes, rows);
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), oneHot(labels, classes)), 1))) as tf.Scalar);
}

/**
 * The margin factor at a 1-based step for a softmax warm-up of `warmupSteps` steps: 'step'
 * switches the margin on after the warm-up (0 then 1), 'linear' ramps it from 0 to 1 over it.
 */
export function marginWarmupFactor(step: number, warmupSteps: number, ramp: 'step' | 'linear' = 'step'): number {
  if (warmupSteps <= 0) return 1;
  if (ramp === 'step') return step > warmupSteps ? 1 : 0;
  return Math.min(1, Math.max(0, step / warmupSteps));
}
