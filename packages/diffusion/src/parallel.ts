import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ScheduleConfig } from './schedule';
import type { BatchShard } from './shard';
import type { UNetConfig } from './unet';

export interface WorkerInit {
  readonly kind: 'init';
  readonly backend: string;
  readonly unetConfig: UNetConfig;
  readonly scheduleConfig: ScheduleConfig;
  readonly teacher?: string;
  readonly reconWeight: 'gamma' | number;
  readonly identityScale: number;
}
export type WorkerRequest = WorkerInit | { readonly kind: 'step'; readonly id: number; readonly weights: Float32Array; readonly shard: BatchShard };
export type WorkerReply =
  | { readonly kind: 'ready' }
  | { readonly kind: 'grads'; readonly id: number; readonly grads: Float32Array; readonly terms: Float32Array }
  | { readonly kind: 'error'; readonly message: string };

/**
 * Data-parallel gradient workers: tfjs-wasm runs one thread per backend in Node, so the other
 * cores are used by worker threads, each with its own wasm backend and UNet replica. Each step
 * the trainer sends every worker the current weights and one shard; the worker returns that
 * shard's flat gradients and loss terms. Threads start through a tiny CommonJS bootstrap that
 * registers tsx, so the TypeScript sources run as everywhere else in id3 (no build step).
 */
export class GradientWorkerPool {
  private readonly workers: Worker[];
  private nextId = 0;

  private constructor(workers: Worker[]) {
    this.workers = workers;
  }

  get size(): number {
    return this.workers.length;
  }

  static async start(count: number, init: Omit<WorkerInit, 'kind'>): Promise<GradientWorkerPool> {
    const script = join(__dirname, 'gradient-worker-entry.cjs');
    const workers = Array.from({ length: count }, () => new Worker(script, { execArgv: [] }));
    const pool = new GradientWorkerPool(workers);
    try {
      await Promise.all(workers.map((w) => pool.request(w, { kind: 'init', ...init })));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private request(worker: Worker, msg: WorkerRequest): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (reply: WorkerReply): void => {
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

  /** Gradients of shards[i] on worker i, given the current flat weights. */
  async gradients(weights: Float32Array, shards: readonly BatchShard[]): Promise<{ grads: Float32Array; terms: Float32Array }[]> {
    if (shards.length > this.workers.length) throw new Error(`${shards.length} shards for ${this.workers.length} workers`);
    const replies = await Promise.all(shards.map((shard, i) => this.request(this.workers[i], { kind: 'step', id: this.nextId++, weights, shard })));
    return replies.map((r) => {
      if (r.kind !== 'grads') throw new Error(`gradient worker: unexpected reply '${r.kind}'`);
      return { grads: r.grads, terms: r.terms };
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
