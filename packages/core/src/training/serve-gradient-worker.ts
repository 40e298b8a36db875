import { parentPort } from 'node:worker_threads';
import type { GradientResult, GradientWorkerReply, GradientWorkerRequest } from './gradient-worker-protocol';

/** The model-specific part of a gradient worker. */
export interface GradientWorkerBody<Init, Payload> {
  /** Once: select the backend, build the model replica and loss. */
  init(init: Init): void | Promise<void>;
  /** Per step: load `weights` (flat, parameter order) and compute one payload's gradients. */
  gradients(weights: Float32Array, payload: Payload): GradientResult | Promise<GradientResult>;
}

/**
 * Run this worker thread as a GradientWorkerPool member: answers init and step requests with
 * `body`, sends gradients back without a copy (transferred), and reports any failure as a
 * reply (with its stack) rather than crashing the thread.
 */
export function serveGradientWorker<Init, Payload>(body: GradientWorkerBody<Init, Payload>): void {
  const port = parentPort;
  if (!port) throw new Error('serveGradientWorker: not running in a worker thread');
  port.on('message', (msg: GradientWorkerRequest<Init, Payload>) => {
    const run = async (): Promise<GradientWorkerReply> => {
      if (msg.kind === 'init') {
        await body.init(msg.init);
        return { kind: 'ready' };
      }
      const { grads, terms } = await body.gradients(msg.weights, msg.payload);
      return { kind: 'grads', id: msg.id, grads, terms };
    };
    run().then(
      (reply) => port.postMessage(reply, reply.kind === 'grads' ? transferable(reply.grads, reply.terms) : []),
      (err: unknown) => port.postMessage({ kind: 'error', message: (err as Error).stack ?? String(err) } satisfies GradientWorkerReply),
    );
  });
}

/** The arrays' buffers, once each, when the arrays own them whole (else they are copied). */
function transferable(...arrays: Float32Array[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const a of arrays)
    if (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer) buffers.add(a.buffer);
  return [...buffers];
}
