import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { RunStore } from '@id3/core';
import { TASK_QUEUE, stageWorkflowId, type PipelineInput, type PipelineResult, type ProgressView, type StageSummary } from '@id3/workflows';
import { startHarness, startInProcessWorker, type Harness } from './harness';

// Real Temporal dev server + real worker + real stage processes (bin/id3 stage …).
jest.setTimeout(240_000);

// The demo pipeline (prepare on procedural faces → train-diffusion → anchors → identities →
// sample → fr-train on the sampled faces → eval), made small.
const small: PipelineInput = {
  profile: 'demo',
  overrides: {
    prepare: { source: { kind: 'procedural', identities: 4, perIdentity: 3 } },
    'train-diffusion': {
      unet: { baseChannels: 8, channelMult: [1, 2], attentionResolutions: [], groups: 4, conditionHidden: [32, 16] },
      trainer: { steps: 4, batchSize: 4, warmupSteps: 2, identity: { subBatch: 1, every: 2 }, checkpointEvery: 2 },
      holdout: 3,
      preview: { rows: 2, samples: 2, ddimSteps: 3 },
      evaluation: { count: 3, ddimSteps: 3 },
    },
    anchors: { n: 300, dim: 128, iterations: 60, neighbours: 8, refreshEvery: 10 },
    identities: { m: 4 },
    sample: {
      identities: { count: 3, images: 3 },
      loop: { steps: 3 },
      guidance: { scale: 1, every: 2, lastFraction: 0.5 },
      filter: { minSimilarity: -1, faceCheck: false, replacements: 0 },
      identitiesPerShard: 2,
      card: { gridIdentities: 2, gridImages: 3, guidanceComparison: 1, readBackImages: 3 },
    },
    'fr-train': {
      backbone: { depth: 18, width: 0.125, embeddingDim: 32 },
      trainer: { steps: 4, batchSize: 4, warmupSteps: 1, marginWarmupSteps: 0, checkpointEvery: 2, logEvery: 1 },
    },
    eval: { pairsPerShard: 20 },
  },
};
const ALL = ['prepare', 'train-diffusion', 'anchors', 'identities', 'sample', 'fr-train', 'eval'];

describe('pipeline workflow against a real Temporal server', () => {
  let h: Harness;
  let stopWorker: () => Promise<void>;

  beforeAll(async () => {
    // A throwaway stage joins the registry of this worker and of the stage processes it spawns.
    process.env.ID3_EXTRA_STAGES = resolve(__dirname, '../../workflows/src/__tests__/fixtures/throwaway-stage.ts');
    h = await startHarness();
    stopWorker = await startInProcessWorker(h);
  });

  afterAll(async () => {
    await stopWorker?.();
    await h?.close();
    delete process.env.ID3_EXTRA_STAGES;
  });

  it('runs every stage as a child workflow, writes outputs, and a re-run skips them all', async () => {
    const id = `it-pipeline-${Date.now()}`;
    const result = await h.client.workflow.execute('pipeline', { taskQueue: TASK_QUEUE, workflowId: id, args: [small] });
    const r = result as PipelineResult;
    expect(r.stages.map((s) => [s.stage, s.skipped])).toEqual(ALL.map((s) => [s, false]));
    expect(r.stages[0].metrics.accepted).toBeGreaterThan(0);
    for (const s of r.stages) {
      expect(existsSync(s.manifestPath)).toBe(true);
      for (const out of Object.values(s.outputs)) expect(existsSync(`${r.runDir}/${out.path}`)).toBe(true);
    }
    expect(r.stages[1].metrics.steps).toBe(4);
    expect(r.stages[2].metrics.minAngleDeg).toBeGreaterThan(r.stages[2].metrics.random_minAngleDeg);
    expect(r.stages[4].metrics).toMatchObject({ identities: 3, images: 9, shards: 2 }); // sample: 2 shards of identities
    expect(r.stages[5].metrics).toMatchObject({ steps: 4, identities: 3 }); // fr-train on the sampled faces
    expect(r.stages[6].metrics.LFW40pairsample_accuracy).toBeGreaterThan(0); // eval of that model (sharded: 2 shards)
    expect(r.stages[6].metrics.shards).toBe(2);

    // Children have deterministic ids, progress is queryable, and the stage search attribute is set.
    const child = h.client.workflow.getHandle(stageWorkflowId(id, 'anchors'));
    expect((await child.describe()).status.name).toBe('COMPLETED');
    const view = await h.client.workflow.getHandle(id).query<ProgressView>('progress');
    expect(view).toMatchObject({ phase: 'done', completedStages: ALL });
    const described = await h.client.workflow.getHandle(id).describe();
    expect(described.searchAttributes.Id3Stage).toEqual(['done']);

    const again = (await h.client.workflow.execute('pipeline', {
      taskQueue: TASK_QUEUE,
      workflowId: `${id}-again`,
      args: [small],
    })) as PipelineResult;
    expect(again.runDir).toBe(r.runDir);
    expect(again.stages.map((s) => s.skipped)).toEqual(ALL.map(() => true));
    const events = new RunStore(r.runDir).readEvents();
    expect(events.filter((e) => e.event === 'start').map((e) => e.stage)).toEqual(ALL);
    expect(events.filter((e) => e.event === 'skip').map((e) => e.stage)).toEqual(ALL);
  });

  it('a stage registered by one line (an extra stage module) runs in a pipeline after the stage it reads', async () => {
    const id = `it-throwaway-${Date.now()}`;
    const input: PipelineInput = {
      ...small,
      runName: 'it-throwaway',
      stages: ['throwaway', 'anchors'],
      overrides: { ...small.overrides, throwaway: { suffix: '!' } },
    };
    const r = (await h.client.workflow.execute('pipeline', { taskQueue: TASK_QUEUE, workflowId: id, args: [input] })) as PipelineResult;
    expect(r.stages.map((s) => s.stage)).toEqual(['anchors', 'throwaway']);
    const out = r.stages[1].outputs.count;
    expect(JSON.parse(readFileSync(`${r.runDir}/${out.path}`, 'utf8'))).toEqual({ anchors: 300, note: 'counted!' });
    // The child workflow carries the stage's own name for the Web UI.
    const child = await h.client.workflow.getHandle(stageWorkflowId(id, 'throwaway')).describe();
    expect(await child.staticSummary()).toBe('throwaway');
  });

  it('a single stage runs alone from a one-object input (as from the Web UI form)', async () => {
    const summary = (await h.client.workflow.execute('stage', {
      taskQueue: TASK_QUEUE,
      workflowId: `it-stage-${Date.now()}`,
      args: [{ stage: 'anchors', profile: 'demo', runName: 'it-single-stage', overrides: small.overrides }],
    })) as StageSummary;
    expect(summary.stage).toBe('anchors');
    expect(summary.runDir).toMatch(/it-single-stage$/);
    expect(existsSync(summary.manifestPath)).toBe(true);
  });

  it.each([
    [{ anchors: { n: 'many' } }, /field 'anchors\.n': Expected number, received string/],
    [{ anchors: { nn: 5 } }, /field 'anchors\.nn': Unrecognized key/],
    [{ identities: { lb: 0.9, ub: 0.5 } }, /field 'identities\.lb': lb must not exceed ub/],
    [{ stages: ['anchors', 'nope'] }, /field 'profile\.stages\[1\]': unknown stage 'nope'/],
    // Impossible sizes are refused at plan time (not retried until a RangeError deep in the stage).
    [{ anchors: { n: 100000000 } }, /field 'anchors\.n': stage 'anchors' needs about .* GiB/],
    // The sampler refuses before any sampling: more images than the identities stage drew, a model folder without a generator.
    [{ sample: { identities: { images: 99 } } }, /field 'sample\.identities\.images': 99 asked, identities\.m is 16/],
    [{ sample: { model: 'no/such/model' } }, /no\/such\/model\/generator\.json: no generator descriptor/],
  ])('invalid config %j fails non-retryably, naming the field', async (overrides, message) => {
    const handle = await h.client.workflow.start('pipeline', {
      taskQueue: TASK_QUEUE,
      workflowId: `it-bad-${Date.now()}`,
      args: [{ profile: 'demo', overrides }],
    });
    const err: unknown = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    // Failure chain: workflow failed ← activity failed ← ApplicationFailure(InvalidInput, nonRetryable)
    let cause = (err as WorkflowFailedError).cause as
      { cause?: unknown; message: string; type?: string; nonRetryable?: boolean } | undefined;
    while (cause?.cause) cause = cause.cause as typeof cause;
    expect(cause?.type).toBe('InvalidInput');
    expect(cause?.nonRetryable).toBe(true);
    expect(cause?.message).toMatch(message);
    // Exactly one attempt: the activity was not retried.
    const history = await handle.fetchHistory();
    const started = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes);
    expect(started.map((e) => e.activityTaskStartedEventAttributes?.attempt)).toEqual([1]);
  });

  it('an unknown profile fails non-retryably with the known profiles listed', async () => {
    const handle = await h.client.workflow.start('pipeline', {
      taskQueue: TASK_QUEUE,
      workflowId: `it-bad-profile-${Date.now()}`,
      args: [{ profile: 'nope' }],
    });
    await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
    const err = await handle.result().catch((e: WorkflowFailedError) => e);
    let cause = (err as WorkflowFailedError).cause as { cause?: unknown; message: string } | undefined;
    while (cause?.cause) cause = cause.cause as typeof cause;
    expect(cause?.message).toMatch(/unknown profile 'nope' \(known: .*demo/);
  });
});
