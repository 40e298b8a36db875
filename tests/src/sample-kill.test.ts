import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { RunStore } from '@id3/core';
import { TASK_QUEUE, stageWorkflowId, type PipelineInput, type PipelineResult, type ProgressView } from '@id3/workflows';
import { killProcess, killProcessTree, spawnWorker, startHarness, waitFor, workerIdentity, type Harness } from './harness';

// The sample stage on two workers, one SIGKILLed in the middle of a shard: the run completes,
// the killed shard resumes from its last finished identity, and the dataset is byte-identical
// to an uninterrupted single-worker run of the same config.
jest.setTimeout(900_000);

const IDENTITIES = 6;
const PER_SHARD = 3;
const overrides = {
  prepare: { source: { kind: 'procedural', identities: 8, perIdentity: 4 } },
  'train-diffusion': {
    trainer: { steps: 4, batchSize: 4, warmupSteps: 1, checkpointEvery: 4, identity: { subBatch: 1, every: 2 } },
    holdout: 4,
    preview: { rows: 1, samples: 1, ddimSteps: 2 },
    evaluation: { enabled: false },
  },
  anchors: { n: 8, iterations: 20, checkpointEvery: 10 },
  identities: { m: 4 },
  sample: {
    identities: { count: IDENTITIES, images: 3 },
    loop: { steps: 6 },
    guidance: { scale: 20, every: 2, lastFraction: 0.5 },
    // A 4-step generator draws noise: a similarity bar of 0 rejects some of it, so replacement
    // attempts are part of what must come out identical.
    filter: { minSimilarity: 0, faceCheck: false, replacements: 1, minImagesPerIdentity: 1 },
    identitiesPerShard: PER_SHARD,
    card: { gridIdentities: 2, gridImages: 3, guidanceComparison: 1, readBackImages: 4 },
  },
};
const upstream: PipelineInput = {
  profile: 'demo',
  runName: 'it-sample-ref',
  stages: ['prepare', 'train-diffusion', 'anchors', 'identities'],
  overrides,
};
const timing = { heartbeatTimeoutSeconds: 5, maximumAttempts: 5 };

/** Every file of the dataset a later stage reads, by path relative to the stage folder. */
function datasetFiles(runDir: string): Map<string, Buffer> {
  const dir = join(runDir, 'sample');
  const files = new Map<string, Buffer>();
  for (const f of readdirSync(join(dir, 'dataset'), { recursive: true }).map(String)) {
    if (f.endsWith('.png')) files.set(join('dataset', f), readFileSync(join(dir, 'dataset', f)));
  }
  for (const f of ['crops-32.bin', 'crops-32.json', 'manifest.jsonl']) files.set(f, readFileSync(join(dir, f)));
  // index.json names absolute paths: compare them relative to the run folder.
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { rows: { path: string }[] };
  files.set('index.json', Buffer.from(JSON.stringify(index.rows.map((r) => ({ ...r, path: relative(runDir, r.path) })))));
  return files;
}

describe('the sample stage on two workers, one killed mid-shard', () => {
  let h: Harness;
  const workers: ChildProcess[] = [];
  const logs: string[] = [];
  const start = (): ChildProcess => {
    const w = spawnWorker(h, logs);
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    for (const w of workers) await killProcess(w);
    await h?.close();
  });

  it('completes, resumes the killed shard from its last identity, and writes the same bytes as one uninterrupted worker', async () => {
    const a = start();
    const run = async (input: PipelineInput, id: string): Promise<PipelineResult> =>
      (await (
        await h.client.workflow.start('pipeline', { taskQueue: TASK_QUEUE, workflowId: id, args: [input] })
      ).result()) as PipelineResult;

    // The upstream stages once, then the same folder copied for the interrupted run.
    await run(upstream, `it-sample-up-${Date.now()}`);
    const refDir = join(h.runsDir, 'it-sample-ref');
    const killDir = join(h.runsDir, 'it-sample-kill');
    cpSync(refDir, killDir, { recursive: true });
    rmSync(join(killDir, 'events.jsonl'), { force: true });

    // Reference: one worker, never interrupted.
    const ref = await run(
      { profile: 'demo', runName: 'it-sample-ref', stages: ['sample'], overrides, timing },
      `it-sample-ref-${Date.now()}`,
    );
    expect(ref.stages[0].metrics.identities).toBeGreaterThan(0);

    // Two workers; kill a once a shard it started has finished one identity but not the shard.
    const b = start();
    const workflowId = `it-sample-kill-${Date.now()}`;
    const handle = await h.client.workflow.start('pipeline', {
      taskQueue: TASK_QUEUE,
      workflowId,
      args: [{ profile: 'demo', runName: 'it-sample-kill', stages: ['sample'], overrides, timing } satisfies PipelineInput],
    });
    const events = () => (existsSync(join(killDir, 'events.jsonl')) ? new RunStore(killDir).readEvents() : []);
    const identitiesDone = (shard: string): number => {
      const d = join(killDir, 'sample', 'shards', shard, 'identities');
      return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.json')).length : 0;
    };
    const killed = await waitFor(
      'worker a to be half-way through a shard',
      () => {
        const es = events();
        const started = es.filter((e) => e.event === 'shard-start' && e.worker === workerIdentity(a)).map((e) => e.shard as string);
        const complete = new Set(es.filter((e) => e.event === 'shard-complete').map((e) => e.shard as string));
        return started.find((s) => !complete.has(s) && identitiesDone(s) >= 1);
      },
      400_000,
    );
    await killProcessTree(a); // the worker's machine dies: its stage process with it
    expect(identitiesDone(killed)).toBeLessThan(PER_SHARD);

    const result = (await handle.result()) as PipelineResult;
    expect(result.stages[0].metrics.identities).toBe(ref.stages[0].metrics.identities);
    const es = events();
    const starts = es.filter((e) => e.event === 'shard-start' && e.shard === killed);
    expect(starts.map((e) => e.worker)).toEqual([workerIdentity(a), workerIdentity(b)]);
    // The second run of the killed shard kept the identity the dead worker had finished.
    const record = JSON.parse(readFileSync(join(killDir, 'sample', 'shards', killed, 'done.json'), 'utf8')) as {
      metrics: Record<string, number>;
    };
    expect(record.metrics.resumedIdentities).toBeGreaterThanOrEqual(1);

    const want = datasetFiles(refDir);
    const got = datasetFiles(killDir);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, bytes] of want) expect({ name, same: got.get(name)?.equals(bytes) }).toEqual({ name, same: true });

    const view = await h.client.workflow.getHandle(stageWorkflowId(workflowId, 'sample')).query<ProgressView>('progress');
    expect(view.phase).toBe('done');
  });
});
