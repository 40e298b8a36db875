import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { RunStore } from '@id3/core';
import { TASK_QUEUE, stageWorkflowId, type PipelineInput, type PipelineResult, type ProgressView } from '@id3/workflows';
import { killProcess, spawnWorker, startHarness, waitFor, workerIdentity, type Harness } from './harness';

// Two `id3 worker` processes share the eval stage's shards (one run directory, one task queue);
// one of them is SIGKILLed in the middle of a shard. The run must finish, no finished shard may
// run again, and the killed shard's re-run must reuse what the dead worker had already embedded.
jest.setTimeout(420_000);

const PAIRS = 40; // the insightface .bin sample: 40 LFW pairs of 112×112 crops
const PER_SHARD = 5;
const input: PipelineInput = {
  profile: 'demo',
  runName: 'it-shards',
  stages: ['eval'],
  overrides: {
    eval: {
      model: 'teacher:faceapi-dlib-128',
      benchmarks: [{ kind: 'bin', name: 'lfw-sample', path: 'data:samples/insightface-bin/sample-py3.bin' }],
      pairsPerShard: PER_SHARD,
    },
  },
  // A dead worker's shard is handed to the other one within seconds.
  timing: { heartbeatTimeoutSeconds: 5, maximumAttempts: 5 },
};

interface ShardRecord {
  shard: string;
  metrics: { computed: number; cached: number; pairs: number };
}

describe('a sharded stage on two workers', () => {
  let h: Harness;
  const workers: ChildProcess[] = [];
  const logs: string[] = [];

  function startWorker(): ChildProcess {
    const child = spawnWorker(h, logs);
    workers.push(child);
    return child;
  }

  beforeAll(async () => {
    h = await startHarness();
  });

  afterAll(async () => {
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    await h?.close();
  });

  it('shares the shards, and a worker killed mid-shard loses only that shard’s unfinished part', async () => {
    const a = startWorker();
    const b = startWorker();
    const idOf = workerIdentity;
    const workflowId = `it-shards-${Date.now()}`;
    const handle = await h.client.workflow.start('pipeline', { taskQueue: TASK_QUEUE, workflowId, args: [input] });
    const runDir = join(h.runsDir, 'it-shards');
    const events = () => (existsSync(join(runDir, 'events.jsonl')) ? new RunStore(runDir).readEvents() : []);
    const cacheFiles = (): number => {
      const root = h.cacheDir; // this harness's own: only this run's embeddings are in it
      if (!existsSync(root)) return 0;
      return readdirSync(root, { recursive: true }).filter((f) => String(f).endsWith('.f32')).length;
    };

    // Both workers take shards.
    await waitFor(
      'both workers to finish a shard',
      () => {
        const done = events().filter((e) => e.event === 'shard-complete');
        return done.some((e) => e.worker === idOf(a)) && done.some((e) => e.worker === idOf(b));
      },
      240_000,
    );
    // Worker a starts another shard; kill it once that shard has embedded a few images.
    const killed = await waitFor('worker a to start another shard', () => {
      const es = events();
      const last = es.filter((e) => e.worker === idOf(a) && (e.event === 'shard-start' || e.event === 'shard-complete')).at(-1);
      return last?.event === 'shard-start' ? (last.shard as string) : undefined;
    });
    const atStart = cacheFiles();
    await waitFor('a few images embedded after that shard started', () => cacheFiles() >= atStart + 4, 60_000);
    await killProcess(a);
    expect(events().some((e) => e.event === 'shard-complete' && e.shard === killed)).toBe(false);

    const result = (await handle.result()) as PipelineResult;
    const evalSummary = result.stages[0];
    expect(evalSummary.metrics.shards).toBe(PAIRS / PER_SHARD);
    expect(evalSummary.metrics.lfwsample_accuracy).toBeGreaterThan(0.85);

    const es = events();
    const starts = (shard: string) => es.filter((e) => e.event === 'shard-start' && e.shard === shard);
    const completes = es.filter((e) => e.event === 'shard-complete');
    // Every shard completed exactly once; only the killed one was started twice, the second time on b.
    expect(completes.map((e) => e.shard).sort()).toEqual([...new Set(completes.map((e) => e.shard as string))].sort());
    expect(completes).toHaveLength(PAIRS / PER_SHARD);
    for (const shard of new Set(completes.map((e) => e.shard as string))) expect(starts(shard)).toHaveLength(shard === killed ? 2 : 1);
    expect(starts(killed).map((e) => e.worker)).toEqual([idOf(a), idOf(b)]);

    // What a embedded before dying is in the cache and was reused by the shard's second run.
    const records = readdirSync(join(runDir, 'eval', 'shards')).map(
      (s) => JSON.parse(readFileSync(join(runDir, 'eval', 'shards', s, 'done.json'), 'utf8')) as ShardRecord,
    );
    const computedByFinishedRuns = records.reduce((t, r) => t + r.metrics.computed, 0);
    const embeddedByDeadRun = cacheFiles() - computedByFinishedRuns;
    expect(embeddedByDeadRun).toBeGreaterThanOrEqual(1);
    const rerun = records.find((r) => r.shard === killed);
    expect(rerun?.metrics.cached).toBeGreaterThanOrEqual(embeddedByDeadRun);
    expect((rerun?.metrics.computed ?? 0) + (rerun?.metrics.cached ?? 0)).toBe(2 * PER_SHARD);

    // The stage workflow counted shards for the UI.
    const view = await h.client.workflow.getHandle(stageWorkflowId(workflowId, 'eval')).query<ProgressView>('progress');
    expect(view.phase).toBe('done');
  });
});
