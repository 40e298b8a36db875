import { tf } from '@id3/core';
import type { FaceEmbedder } from '@id3/faces';
import type { GaussianDiffusion } from './gaussian-diffusion';
import { id3LossTerms, type Id3LossOptions } from './loss';
import type { TeacherInput } from './teacher-input';
import type { UNet } from './unet';

/** One shard of a training batch, as plain arrays (so it can cross to a worker thread). */
export interface BatchShard {
  readonly count: number;
  readonly x0: Float32Array;
  /** Teacher embeddings (the identity term's target). */
  readonly y: Float32Array;
  /** UNet condition rows when they are not y (TrainingData.condition), else undefined. */
  readonly c?: Float32Array;
  readonly s: Float32Array;
  readonly t: number[];
  readonly noise: Float32Array;
  /** Per-sample 1/0 condition keep mask, or undefined when dropout is off. */
  readonly keep?: Float32Array;
  /** Leading samples of this shard that get the identity term. */
  readonly identityCount: number;
  /** The whole batch's size and identity count (loss normalisers). */
  readonly normalizers: { readonly batch: number; readonly identity: number };
}

export interface ShardLossOptions {
  readonly reconWeight: Id3LossOptions['reconWeight'];
  readonly identityScale: number;
  readonly teacher?: { readonly embedder: FaceEmbedder; readonly input: TeacherInput };
}

/**
 * Gradients of the ID³ loss of one shard w.r.t. every UNet variable (in parameter order) and the
 * shard's loss terms as a [5] tensor (total, denoise, recon, identity, identityCos). With the
 * shard's normalisers set to the whole batch's, the sum over shards of either is exactly the
 * whole batch's. Call inside tf.tidy.
 */
export function shardGradients(
  net: UNet,
  diffusion: GaussianDiffusion,
  shard: BatchShard,
  o: ShardLossOptions,
): { grads: tf.Tensor[]; terms: tf.Tensor1D } {
  const r = net.config.resolution;
  const n = shard.count;
  const inputs = {
    x0: tf.tensor4d(shard.x0, [n, r, r, 3]),
    y: tf.tensor2d(shard.y, [n, shard.y.length / n]),
    condition: shard.c ? tf.tensor2d(shard.c, [n, net.config.identityDim]) : undefined,
    s: tf.tensor2d(shard.s, [n, net.config.attributeDim]),
    t: shard.t,
    noise: tf.tensor4d(shard.noise, [n, r, r, 3]),
    keepCondition: shard.keep ? tf.tensor2d(shard.keep, [n, 1]) : undefined,
    identityCount: shard.identityCount,
    normalizers: shard.normalizers,
  };
  const vars = net.variables;
  let kept: tf.Tensor[] = [];
  const { grads } = tf.variableGrads(() => {
    const terms = id3LossTerms(net, diffusion, inputs, o);
    kept = [terms.total, terms.denoise, terms.recon, terms.identity, terms.identityCos].map((x) => tf.keep(x));
    return terms.total;
  }, vars);
  const terms = tf.stack(kept.map((x) => tf.reshape(x, []))) as tf.Tensor1D;
  tf.dispose(kept);
  return { grads: vars.map((v) => grads[v.name]), terms };
}

/** Split a batch into `parts` contiguous shards; the identity samples are spread evenly. */
export function splitBatch(whole: Omit<BatchShard, 'normalizers'>, parts: number, px: number, d: number, a: number): BatchShard[] {
  const B = whole.count;
  const shards: BatchShard[] = [];
  let start = 0;
  for (let j = 0; j < parts; j++) {
    const n = Math.floor(B / parts) + (j < B % parts ? 1 : 0);
    const ids = Math.floor(whole.identityCount / parts) + (j < whole.identityCount % parts ? 1 : 0);
    shards.push({
      count: n,
      x0: whole.x0.slice(start * px, (start + n) * px),
      y: whole.y.slice(start * d, (start + n) * d),
      c: whole.c?.slice(start * (whole.c.length / B), (start + n) * (whole.c.length / B)),
      s: whole.s.slice(start * a, (start + n) * a),
      t: whole.t.slice(start, start + n),
      noise: whole.noise.slice(start * px, (start + n) * px),
      keep: whole.keep?.slice(start, start + n),
      identityCount: Math.min(ids, n),
      normalizers: { batch: B, identity: whole.identityCount },
    });
    start += n;
  }
  return shards.filter((s) => s.count > 0);
}
