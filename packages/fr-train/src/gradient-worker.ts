/**
 * Worker-thread body for data-parallel face-recognition training (the pool and messaging are the
 * core training kit's): its own wasm backend, IResNet and margin-head replicas; per step it loads
 * the current weights and computes one shard's gradients.
 */
import { initBackend, serveGradientWorker, tf, type BackendRequest, type GradientResult } from '@id3/core';
import { IResNet } from './iresnet';
import { MarginHead } from './margin-head';
import { frShardGradients, type FrBatchShard, type FrWorkerInit } from './shard';

let replica: { net: IResNet; head: MarginHead } | undefined;

async function init(msg: FrWorkerInit): Promise<void> {
  await initBackend(msg.backend as BackendRequest, () => undefined);
  replica = {
    net: IResNet.empty(msg.backbone),
    head: MarginHead.empty(msg.head, { classes: msg.classes, embeddingDim: msg.backbone.embeddingDim }),
  };
}

async function gradients(weights: Float32Array, shard: FrBatchShard): Promise<GradientResult> {
  if (!replica) throw new Error('fr-train gradient worker: step before init');
  const { net, head } = replica;
  const split = net.parameterCount();
  net.setFlatWeights(weights.subarray(0, split));
  head.setFlatWeights(weights.subarray(split));
  const out = tf.tidy(() => frShardGradients(net, head, shard));
  const grads = (await out.flat.data()) as Float32Array;
  const terms = (await out.terms.data()) as Float32Array;
  tf.dispose([out.flat, out.terms]);
  return { grads, terms };
}

serveGradientWorker({ init, gradients });
