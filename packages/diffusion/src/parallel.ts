import { join } from 'node:path';
import { GradientWorkerPool } from '@id3/core';
import type { ScheduleConfig } from './schedule';
import type { BatchShard } from './shard';
import type { UNetConfig } from './unet';

/** What every diffusion gradient worker is told once: how to build its UNet replica and loss. */
export interface WorkerInit {
  readonly backend: string;
  readonly unetConfig: UNetConfig;
  readonly scheduleConfig: ScheduleConfig;
  readonly teacher?: string;
  readonly reconWeight: 'gamma' | number;
  readonly identityScale: number;
}

/** Workers that each take the current weights and one BatchShard, and return its gradients. */
export type DiffusionWorkerPool = GradientWorkerPool<WorkerInit, BatchShard>;

/**
 * Start `count` data-parallel gradient workers running gradient-worker.ts (through the kit's tsx
 * bootstrap, so the TypeScript runs as everywhere else in id3, with no build step).
 */
export function startDiffusionWorkers(count: number, init: WorkerInit): Promise<DiffusionWorkerPool> {
  return GradientWorkerPool.start<WorkerInit, BatchShard>({ script: join(__dirname, 'gradient-worker.ts'), count, init });
}
