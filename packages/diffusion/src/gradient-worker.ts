/**
 * Worker-thread entry for data-parallel training (see parallel.ts): holds its own wasm backend
 * (one thread per backend in Node), UNet replica and teacher; per message it loads the current
 * weights, computes one shard's gradients and sends them back flat.
 */
import { parentPort } from 'node:worker_threads';
import { initBackend, tf, type BackendRequest } from '@id3/core';
import { loadEmbedder } from '@id3/faces';
import { GaussianDiffusion } from './gaussian-diffusion';
import { makeSchedule } from './schedule';
import { shardGradients, type ShardLossOptions } from './shard';
import { TeacherInput } from './teacher-input';
import { UNet } from './unet';
import type { WorkerInit, WorkerReply, WorkerRequest } from './parallel';

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

async function step(msg: WorkerRequest & { kind: 'step' }): Promise<WorkerReply> {
  if (!state) throw new Error('gradient worker: step before init');
  const { net, diffusion, options } = state;
  net.setFlatWeights(msg.weights);
  const out = tf.tidy(() => {
    const { grads, terms } = shardGradients(net, diffusion, msg.shard, options);
    return { flat: tf.concat(grads.map((g) => tf.reshape(g, [-1]))), terms };
  });
  const grads = (await out.flat.data()) as Float32Array;
  const terms = (await out.terms.data()) as Float32Array;
  tf.dispose([out.flat, out.terms]);
  return { kind: 'grads', id: msg.id, grads, terms };
}

parentPort?.on('message', (msg: WorkerRequest) => {
  const run = msg.kind === 'init' ? init(msg).then((): WorkerReply => ({ kind: 'ready' })) : step(msg);
  run.then(
    (reply) => parentPort?.postMessage(reply, reply.kind === "grads" ? [reply.grads.buffer as ArrayBuffer, reply.terms.buffer as ArrayBuffer] : []),
    (err: unknown) => parentPort?.postMessage({ kind: 'error', message: (err as Error).stack ?? String(err) } satisfies WorkerReply),
  );
});
