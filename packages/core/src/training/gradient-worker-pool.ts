import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { GradientResult, GradientWorkerReply, GradientWorkerRequest } from './gradient-worker-protocol';

export interface GradientWorkerPoolOptions<Init> {
  /**
   * The worker body: a TypeScript module (started through a tsx bootstrap) or a .js/.cjs file,
   * that calls serveGradientWorker.
   */
  readonly script: string;
  readonly count: number;
  /** Sent to every worker once (backend, model config, loss options). */
  readonly init: Init;
}

/** A worker thread for `script`: TypeScript through the tsx CommonJS bootstrap, else directly. */
function startWorker(script: string): Worker {
  // execArgv []: the parent's loader flags (tsx's --import, Jest's) are not for worker threads.
  if (script.endsWith('.ts')) return new Worker(join(__dirname, 'ts-worker-entry.cjs'), { execArgv: [], workerData: { module: script } });
  return new Worker(script, { execArgv: [] });
}

/**
 * Data-parallel gradient workers. tfjs-wasm runs one thread per backend in Node, so the other
 * cores are used by worker threads, each with its own backend and model replica (built from
 * `init`). Each step every worker gets the current flat weights and one payload (its shard of
 * the batch) and returns that shard's flat gradients and loss terms.
 */
export class GradientWorkerPool<Init, Payload> {
  private nextId = 0;

  private constructor(private readonly workers: Worker[]) {}

  get size(): number {
    return this.workers.length;
  }

  static async start<Init, Payload>(o: GradientWorkerPoolOptions<Init>): Promise<GradientWorkerPool<Init, Payload>> {
    const pool = new GradientWorkerPool<Init, Payload>(Array.from({ length: o.count }, () => startWorker(o.script)));
    try {
      await Promise.all(pool.workers.map((w) => pool.request(w, { kind: 'init', init: o.init })));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private request(worker: Worker, msg: GradientWorkerRequest<Init, Payload>): Promise<GradientWorkerReply> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (reply: GradientWorkerReply): void => {
        cleanup();
        if (reply.kind === 'error') reject(new Error(`gradient worker failed: ${reply.message}`));
        else resolve(reply);
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(err);
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new Error(`gradient worker exited with code ${code}`));
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(msg);
    });
  }

  /** Gradients of payloads[i] on worker i, given the current flat weights (copied to each). */
  async gradients(weights: Float32Array, payloads: readonly Payload[]): Promise<GradientResult[]> {
    if (payloads.length > this.workers.length) throw new Error(`${payloads.length} shards for ${this.workers.length} workers`);
    const replies = await Promise.all(
      payloads.map((payload, i) => this.request(this.workers[i], { kind: 'step', id: this.nextId++, weights, payload })),
    );
    return replies.map((r) => {
      if (r.kind !== 'grads') throw new Error(`gradient worker: unexpected reply '${r.kind}'`);
      return { grads: r.grads, terms: r.terms };
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
