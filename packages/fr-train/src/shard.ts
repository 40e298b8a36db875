import { Rng, tf } from '@id3/core';
import type { IResNet } from './iresnet';
import type { IResNetConfig } from './iresnet-config';
import type { MarginHead, MarginHeadConfig } from './margin-head';

/** What every gradient worker is told once: how to build its replicas. */
export interface FrWorkerInit {
  readonly backend: string;
  readonly backbone: IResNetConfig;
  readonly head: MarginHeadConfig;
  readonly classes: number;
}

/** One shard of a training batch, as plain arrays (so it can cross to a worker thread). */
export interface FrBatchShard {
  readonly x: Float32Array;
  readonly labels: Int32Array;
  /** The whole batch's size: each shard's loss is its sum over the batch size, so shards add up. */
  readonly batch: number;
  readonly marginFactor: number;
  /** Seeds this shard's dropout masks (drawn from the trainer's RNG). */
  readonly dropoutSeed: number;
}

/**
 * Gradients of one shard's share of the batch loss w.r.t. every variable (backbone then head,
 * flat) and its terms [loss share, correct count]. BatchNorm normalises with this shard's own
 * statistics, as data-parallel training without synchronised BatchNorm does. Call inside tf.tidy.
 */
export function frShardGradients(net: IResNet, head: MarginHead, shard: FrBatchShard): { flat: tf.Tensor1D; terms: tf.Tensor1D } {
  const n = shard.labels.length;
  const r = net.config.resolution;
  const variables = [...net.variables, ...head.variables];
  const input = tf.tensor4d(shard.x, [n, r, r, 3]);
  const rng = new Rng(shard.dropoutSeed);
  let embeddings: tf.Tensor2D | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const e = net.forward(input, { training: true, rng });
    embeddings = tf.keep(e);
    return tf.mul(head.loss(e, shard.labels, { marginFactor: shard.marginFactor }), n / shard.batch) as tf.Scalar;
  }, variables);
  const correct = tf.sum(
    tf.cast(tf.equal(tf.argMax(head.cosines(embeddings as tf.Tensor2D), 1), tf.tensor1d(shard.labels, 'int32')), 'float32'),
  );
  tf.dispose(embeddings);
  const flat = tf.concat(variables.map((v) => tf.reshape(grads[v.name], [-1]))) as tf.Tensor1D;
  return { flat, terms: tf.stack([value, correct]) as tf.Tensor1D };
}

/** Split a batch into `parts` contiguous shards (sizes differing by at most one). */
export function splitFrBatch(
  x: Float32Array,
  labels: Int32Array,
  px: number,
  parts: number,
  o: { marginFactor: number; seeds: readonly number[] },
): FrBatchShard[] {
  const B = labels.length;
  const shards: FrBatchShard[] = [];
  let start = 0;
  for (let j = 0; j < parts; j++) {
    const n = Math.floor(B / parts) + (j < B % parts ? 1 : 0);
    if (n === 0) continue;
    shards.push({
      x: x.slice(start * px, (start + n) * px),
      labels: labels.slice(start, start + n),
      batch: B,
      marginFactor: o.marginFactor,
      dropoutSeed: o.seeds[j],
    });
    start += n;
  }
  return shards;
}
