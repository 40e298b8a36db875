import { tf } from '@id3/core';
import type { FaceEmbedder } from '@id3/faces';
import type { GaussianDiffusion } from './gaussian-diffusion';
import { identityWeight } from './schedule';
import type { TeacherInput } from './teacher-input';
import type { UNet } from './unet';

/**
 * The ID³ training loss for one batch (method page, "Training loss"):
 *
 *   L = mean‖ε − ε̂‖² + β_t·mean‖x0 − x̂0‖² − κ·γ_t·⟨f(x̂0), y⟩
 *
 * with per-pixel means for the two squared errors (so their scale does not depend on the
 * resolution), γ_t = 0.5·(1 − σ(t/T)), β_t = γ_t unless configured, x̂0 clipped to [-1, 1] and
 * the identity term on the first `identityCount` samples only (it costs a teacher forward and
 * backward per image). The teacher's weights are not in the variable list, so they stay frozen.
 */
export interface Id3LossBatch {
  /** [b, r, r, 3] in [-1, 1]. */
  readonly x0: tf.Tensor4D;
  /** [b, d] unit teacher embeddings: the identity term's target (and the condition, unless `condition` is given). */
  readonly y: tf.Tensor2D;
  /** [b, c] what the UNet is conditioned on when it is not y itself (e.g. y whitened into the identity space). */
  readonly condition?: tf.Tensor2D;
  readonly s: tf.Tensor2D;
  readonly t: readonly number[];
  readonly noise: tf.Tensor4D;
  /** [b, 1] 0/1 condition keep mask (classifier-free guidance dropout), or none. */
  readonly keepCondition?: tf.Tensor2D;
  /** How many leading samples get the identity term (0 = none this step). */
  readonly identityCount: number;
  /**
   * Divisors of the per-sample sums when this batch is one shard of a larger one (data-parallel
   * training): the whole batch's size and identity count, so that shard losses — and their
   * gradients — add up exactly to the whole batch's. Default: this batch's own.
   */
  readonly normalizers?: { readonly batch: number; readonly identity: number };
}

export interface Id3LossOptions {
  /** β_t: 'gamma' (= γ_t) or a constant. */
  readonly reconWeight: 'gamma' | number;
  /** κ: multiplies γ_t in the identity term. */
  readonly identityScale: number;
  readonly teacher?: { readonly embedder: FaceEmbedder; readonly input: TeacherInput };
}

export interface Id3LossTerms {
  readonly total: tf.Scalar;
  readonly denoise: tf.Scalar;
  /** β_t-weighted reconstruction term (as added to the loss). */
  readonly recon: tf.Scalar;
  /** Mean γ_t-weighted ⟨f(x̂0), y⟩ over the identity sub-batch (subtracted, times κ); 0 if none. */
  readonly identity: tf.Scalar;
  /** Mean raw cosine ⟨f(x̂0), y⟩ over the sub-batch (for the log). */
  readonly identityCos: tf.Scalar;
}

export function id3LossTerms(net: UNet, diffusion: GaussianDiffusion, batch: Id3LossBatch, o: Id3LossOptions): Id3LossTerms {
  const T = diffusion.steps;
  const b = batch.t.length;
  const xt = diffusion.qSample(batch.x0, batch.t, batch.noise);
  const eps = net.forward({ xt, t: batch.t, y: batch.condition ?? batch.y, s: batch.s, keepCondition: batch.keepCondition });
  const nBatch = batch.normalizers?.batch ?? b;
  const denoise = tf.div(tf.sum(tf.mean(tf.square(tf.sub(batch.noise, eps)), [1, 2, 3])), nBatch) as tf.Scalar;

  const x0hat = tf.clipByValue(diffusion.predictX0FromEps(xt, batch.t, eps), -1, 1);
  const gamma = batch.t.map((t) => identityWeight(t, T));
  const beta = o.reconWeight === 'gamma' ? gamma : batch.t.map(() => o.reconWeight as number);
  const perSampleRecon = tf.mean(tf.square(tf.sub(batch.x0, x0hat)), [1, 2, 3]);
  const recon = tf.div(tf.sum(tf.mul(perSampleRecon, tf.tensor1d(beta))), nBatch) as tf.Scalar;

  let identity = tf.scalar(0);
  let identityCos = tf.scalar(0);
  const k = Math.min(batch.identityCount, b);
  if (k > 0) {
    if (!o.teacher) throw new Error('id3LossTerms: identityCount > 0 needs a teacher');
    const sub = tf.slice(x0hat, [0, 0, 0, 0], [k, -1, -1, -1]);
    const emb = o.teacher.embedder.embed(o.teacher.input.apply(sub));
    const cos = tf.sum(tf.mul(emb, tf.slice(batch.y, [0, 0], [k, -1])), 1);
    const nIdentity = batch.normalizers?.identity ?? k;
    identityCos = tf.div(tf.sum(cos), nIdentity) as tf.Scalar;
    identity = tf.div(tf.sum(tf.mul(cos, tf.tensor1d(gamma.slice(0, k)))), nIdentity) as tf.Scalar;
  }
  const total = tf.sub(tf.add(denoise, recon), tf.mul(o.identityScale, identity)) as tf.Scalar;
  return { total, denoise, recon, identity, identityCos };
}
