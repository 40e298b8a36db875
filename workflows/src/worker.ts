import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { BACKGROUND_STAGES_ENV, createActivities, parseBackgroundStages, type ActivityDeps } from './activities';
import { TASK_QUEUE } from './contracts';
import { stageRegistry } from './stages';

export interface Id3WorkerOptions {
  readonly address: string;
  readonly namespace?: string;
  readonly taskQueue?: string;
  /** Pre-bundled workflow code (tests bundle once per file); default: bundle workflows.ts. */
  readonly workflowBundle?: WorkerOptions['workflowBundle'];
  readonly activityDeps?: Omit<ActivityDeps, 'client'>;
}

/** The stages `ID3_BACKGROUND_STAGES` names, checked against the registered ones (the worker's and `ensureWorker`'s check). */
export const backgroundStagesFromEnv = (): string[] => parseBackgroundStages(process.env[BACKGROUND_STAGES_ENV], stageRegistry().names);

/** A worker for the id3 task queue, plus the connections it owns (closed by `shutdown`). */
export async function createId3Worker(
  o: Id3WorkerOptions,
): Promise<{ worker: Worker; backgroundStages: readonly string[]; close(): Promise<void> }> {
  const namespace = o.namespace ?? 'default';
  const backgroundStages = o.activityDeps?.backgroundStages ?? backgroundStagesFromEnv();
  const nativeConnection = await NativeConnection.connect({ address: o.address });
  const clientConnection = await Connection.connect({ address: o.address });
  const client = new Client({ connection: clientConnection, namespace });
  const worker = await Worker.create({
    connection: nativeConnection,
    namespace,
    taskQueue: o.taskQueue ?? TASK_QUEUE,
    ...(o.workflowBundle ? { workflowBundle: o.workflowBundle } : { workflowsPath: require.resolve('./workflows') }),
    activities: createActivities({ ...o.activityDeps, backgroundStages, client }),
    // One stage process at a time: each is CPU-bound and this machine has two cores.
    maxConcurrentActivityTaskExecutions: Number(process.env.ID3_MAX_CONCURRENT_STAGES ?? 1),
    shutdownGraceTime: '10 seconds',
  });
  return {
    worker,
    backgroundStages,
    async close() {
      await clientConnection.close();
      await nativeConnection.close();
    },
  };
}
