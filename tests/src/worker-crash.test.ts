import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RunStore } from '@id3/core';
import { ID3_BIN, TASK_QUEUE, type PipelineInput, type PipelineResult } from '@id3/workflows';
import { sleep, startHarness, waitFor, type Harness } from './harness';

// The worker is a separate `id3 worker` process that we SIGKILL in the middle of a stage —
// twice: once inside the checkpointed anchors stage, once inside identities after anchors
// completed. The run must finish, resume anchors from its checkpoint, and never re-run a
// completed stage.
jest.setTimeout(420_000);

const input: PipelineInput = {
  profile: 'demo',
  runName: 'it-worker-crash',
  stages: ['anchors', 'identities'],
  overrides: {
    anchors: { n: 4000, dim: 128, iterations: 200, refreshEvery: 25, checkpointEvery: 50 },
    identities: { m: 50 },
  },
  // Short heartbeat timeout so the dead worker's activity is retried within seconds.
  timing: { heartbeatTimeoutSeconds: 5, maximumAttempts: 5 },
};

describe('a worker killed in the middle of a stage', () => {
  let h: Harness;
  let worker: ChildProcess | undefined;
  const logs: string[] = [];

  function startWorker(): ChildProcess {
    const child = spawn(ID3_BIN, ['worker'], {
      env: { ...process.env, TEMPORAL_ADDRESS: h.server.address, ID3_RUNS_DIR: h.runsDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    return child;
  }

  async function kill(child: ChildProcess): Promise<void> {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await exited;
  }

  beforeAll(async () => {
    h = await startHarness();
  });

  afterAll(async () => {
    if (worker && worker.exitCode === null) await kill(worker);
    await h?.close();
  });

  it('lets the run finish without repeating completed stages', async () => {
    worker = startWorker();
    const handle = await h.client.workflow.start('pipeline', {
      taskQueue: TASK_QUEUE,
      workflowId: `it-crash-${Date.now()}`,
      args: [input],
    });
    const runDir = join(h.runsDir, 'it-worker-crash');
    const store = () => new RunStore(runDir);

    // Kill 1: inside anchors, after its first checkpoint.
    await waitFor('the first anchors checkpoint', () => existsSync(join(runDir, 'anchors', 'checkpoint.json')));
    await kill(worker);
    // The orphaned stage process notices its parent is gone and stops (no manifest appears).
    await sleep(3000);
    expect(existsSync(join(runDir, 'anchors', 'manifest.json'))).toBe(false);
    worker = startWorker();

    // Kill 2: inside identities, after anchors completed.
    await waitFor(
      'identities to start',
      () =>
        store()
          .readEvents()
          .some((e) => e.stage === 'identities' && e.event === 'start'),
      240_000,
    );
    await sleep(2000);
    expect(existsSync(join(runDir, 'identities', 'manifest.json'))).toBe(false);
    await kill(worker);
    await sleep(1000);
    worker = startWorker();

    const result = (await handle.result()) as PipelineResult;
    expect(result.stages.map((s) => [s.stage, s.skipped])).toEqual([
      ['anchors', false],
      ['identities', false],
    ]);

    const events = store().readEvents();
    const count = (stage: string, event: string) => events.filter((e) => e.stage === stage && e.event === event).length;
    // anchors: the killed attempt and the resumed one; completed once, never started again after.
    expect(count('anchors', 'start')).toBe(2);
    expect(count('anchors', 'complete')).toBe(1);
    const anchorsDone = events.findIndex((e) => e.stage === 'anchors' && e.event === 'complete');
    expect(events.slice(anchorsDone).some((e) => e.stage === 'anchors' && e.event === 'start')).toBe(false);
    expect(result.stages[0].metrics.resumedFromStep).toBeGreaterThanOrEqual(50);
    // identities: started twice (killed, retried), completed once.
    expect(count('identities', 'start')).toBe(2);
    expect(count('identities', 'complete')).toBe(1);
    // Temporal saw the retries as further attempts of the same activities.
    const history = await h.client.workflow.getHandle(`${handle.workflowId}--identities`).fetchHistory();
    const attempts = (history.events ?? [])
      .map((e) => e.activityTaskStartedEventAttributes?.attempt)
      .filter((a) => a !== undefined && a !== null);
    expect(Math.max(...(attempts as number[]))).toBeGreaterThanOrEqual(2);
  });

  it('a generator training killed mid-run resumes from its newest checkpoint, not from scratch', async () => {
    const trainInput: PipelineInput = {
      profile: 'demo',
      runName: 'it-worker-crash-train',
      stages: ['prepare', 'train-diffusion'],
      overrides: {
        prepare: { source: { kind: 'procedural', identities: 4, perIdentity: 3 } },
        'train-diffusion': {
          unet: { baseChannels: 8, channelMult: [1, 2], attentionResolutions: [], groups: 4, conditionHidden: [32, 16] },
          trainer: { steps: 300, batchSize: 4, warmupSteps: 2, threads: 1, identity: { subBatch: 1, every: 10 }, checkpointEvery: 20 },
          holdout: 3,
          preview: { rows: 1, samples: 1, ddimSteps: 2 },
          evaluation: { enabled: false },
        },
      },
      timing: { heartbeatTimeoutSeconds: 5, maximumAttempts: 5 },
    };
    if (worker && worker.exitCode === null) await kill(worker); // the first test's last worker
    worker = startWorker();
    const handle = await h.client.workflow.start('pipeline', {
      taskQueue: TASK_QUEUE,
      workflowId: `it-crash-train-${Date.now()}`,
      args: [trainInput],
    });
    const checkpoints = join(h.runsDir, 'it-worker-crash-train', 'train-diffusion', 'checkpoints');
    await waitFor('the second generator checkpoint', () => existsSync(join(checkpoints, 'step-000000040')), 240_000);
    await kill(worker);
    await sleep(2000);
    worker = startWorker();
    const result = (await handle.result()) as PipelineResult;
    const train = result.stages.find((s) => s.stage === 'train-diffusion');
    expect(train?.metrics.steps).toBe(300);
    expect(train?.metrics.resumedFromStep).toBeGreaterThanOrEqual(40);
    const events = new RunStore(join(h.runsDir, 'it-worker-crash-train')).readEvents();
    expect(events.filter((e) => e.stage === 'train-diffusion' && e.event === 'start')).toHaveLength(2);
    expect(events.filter((e) => e.stage === 'prepare' && e.event === 'start')).toHaveLength(1);
  });
});
