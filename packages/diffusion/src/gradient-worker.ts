/**
 * Worker-thread body for data-parallel training (see parallel.ts; the pool and the messaging are
 * the core training kit's): holds its own wasm backend (one thread per backend in Node), UNet
 * replica and teacher; per step it loads the current weights and computes one shard's gradients.
 */
import { initBackend, serveGradientWorker, tf, type BackendRequest, type GradientResult } from '@id3/core';
import { loadEmbedder } from '@id3/faces';
import { GaussianDiffusion } from './gaussian-diffusion';
import { makeSchedule } from './schedule';
import { shardGradients, type ShardLossOptions } from './shard';
import { TeacherInput } from './teacher-input';
import { UNet } from './unet';
import type { WorkerInit } from './parallel';
import type { BatchShard } from './shard';

let state: { net: UNet; diffusion: GaussianDiffusion; options: ShardLossOptions } | undefined;

async function init(msg: WorkerInit): Promise<void> {
  await initBackend(msg.backend as BackendRequest, () => undefined);
  const net = UNet.create(msg.unetConfig, 0);
  // No name: no identity term. An unknown name throws (never train silently without the teacher).
  const teacher = msg.teacher === undefined ? undefined : await loadEmbedder(msg.teacher);
  state = {
    net,
    diffusion: new GaussianDiffusion(makeSchedule(msg.scheduleConfig)),
    options: {
      reconWeight: msg.reconWeight,
      identityScale: msg.identityScale,
      teacher: teacher ? { embedder: teacher, input: TeacherInput.forTeacher(teacher, msg.unetConfig.resolution) } : undefined,
    },
  };
}

async function gradients(weights: Float32Array, shard: BatchShard): Promise<GradientResult> {
  if (!state) throw new Error('gradient worker: step before init');
  const { net, diffusion, options } = state;
  net.setFlatWeights(weights);
  const out = tf.tidy(() => {
    const { grads, terms } = shardGradients(net, diffusion, shard, options);
    return { flat: tf.concat(grads.map((g) => tf.reshape(g, [-1]))), terms };
  });
  const grads = (await out.flat.data()) as Float32Array;
  const terms = (await out.terms.data()) as Float32Array;
  tf.dispose([out.flat, out.terms]);
  return { grads, terms };
}

serveGradientWorker({ init, gradients });
