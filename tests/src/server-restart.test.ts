import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RunStore } from '@id3/core';
import { ID3_BIN, TASK_QUEUE, type PipelineInput, type PipelineResult } from '@id3/workflows';
import { startHarness, waitFor, type Harness } from './harness';

// The Temporal dev server is SIGKILLed in the middle of a stage and restarted on the same SQLite
// file. The worker (a separate `id3 worker` process) reconnects, the run completes, and no
// finished work is repeated: the stage that was running either finishes in its first attempt or
// resumes from its checkpoint; the stage after it runs once.
jest.setTimeout(420_000);

const input: PipelineInput = {
  profile: 'demo',
  runName: 'it-server-restart',
  stages: ['anchors', 'identities'],
  overrides: {
    anchors: { n: 4000, dim: 128, iterations: 200, refreshEvery: 25, checkpointEvery: 50 },
    identities: { m: 20 },
  },
  timing: { heartbeatTimeoutSeconds: 10, maximumAttempts: 5 },
};

describe('a Temporal server killed in the middle of a stage', () => {
  let h: Harness;
  let worker: ChildProcess | undefined;
  const logs: string[] = [];

  beforeAll(async () => {
    h = await startHarness();
  });

  afterAll(async () => {
    if (worker && worker.exitCode === null) worker.kill('SIGKILL');
    await h?.close();
  });

  it('is restarted on its database and the run completes without repeating finished work', async () => {
    worker = spawn(ID3_BIN, ['worker'], {
      env: { ...process.env, TEMPORAL_ADDRESS: h.server.address, ID3_RUNS_DIR: h.runsDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
    worker.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    const workflowId = `it-restart-${Date.now()}`;
    await h.client.workflow.start('pipeline', { taskQueue: TASK_QUEUE, workflowId, args: [input] });
    const runDir = join(h.runsDir, 'it-server-restart');

    // Kill the server once anchors has written its first checkpoint (the stage is mid-way).
    await waitFor('the anchors checkpoint', () => existsSync(join(runDir, 'anchors', 'checkpoint.json')), 240_000);
    await h.killAndRestartServer(3000);

    const result = (await h.client.workflow.getHandle(workflowId).result()) as PipelineResult;
    expect(result.stages.map((s) => [s.stage, s.skipped])).toEqual([
      ['anchors', false],
      ['identities', false],
    ]);
    expect(worker.exitCode).toBeNull(); // the worker lived through it

    const events = new RunStore(runDir).readEvents();
    const count = (stage: string, event: string) => events.filter((e) => e.stage === stage && e.event === event).length;
    expect(count('anchors', 'complete')).toBe(1);
    expect(count('identities', 'start')).toBe(1);
    expect(count('identities', 'complete')).toBe(1);
    // If the server's restart made Temporal retry the anchors activity, the retry resumed from
    // the checkpoint rather than starting over.
    if (count('anchors', 'start') > 1) expect(result.stages[0].metrics.resumedFromStep).toBeGreaterThan(0);
    else expect(result.stages[0].metrics.resumedFromStep).toBe(0);
  });
});
