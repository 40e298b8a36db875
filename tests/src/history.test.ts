import { resolve } from 'node:path';
import { TASK_QUEUE, stageWorkflowId, type PipelineInput, type PipelineResult, type ProgressView } from '@id3/workflows';
import { startHarness, startInProcessWorker, type Harness } from './harness';

// Bounded workflow histories: a stage that reports progress thousands of times, and a stage of
// more shards than one history budget holds, both finish with histories far below Temporal's
// 51,200-event cap (scaled down here: 40 signals per attempt, 200 events per stage run).
jest.setTimeout(300_000);

const MAX_SIGNALS = 40;
const EVENTS_PER_RUN = 200;

describe('bounded workflow history', () => {
  let h: Harness;
  let stopWorker: () => Promise<void>;

  beforeAll(async () => {
    process.env.ID3_EXTRA_STAGES = resolve(__dirname, '../../workflows/src/__tests__/fixtures/chatty-stages.ts');
    h = await startHarness();
    // Signal every progress event, up to the cap: far more often than production (15 s).
    stopWorker = await startInProcessWorker(h, { progressSignalEveryMs: 0, maxProgressSignals: MAX_SIGNALS });
  });

  afterAll(async () => {
    await stopWorker?.();
    await h?.close();
    delete process.env.ID3_EXTRA_STAGES;
  });

  const historyLengths = async (workflowId: string): Promise<number[]> => {
    const lengths: number[] = [];
    for await (const wf of h.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) lengths.push(wf.historyLength);
    return lengths;
  };

  it('5,000 progress phase changes reach the stage workflow as at most the capped number of signals', async () => {
    const id = `it-chatty-${Date.now()}`;
    const input: PipelineInput = { profile: 'demo', runName: 'it-chatty', stages: ['chatty'], overrides: { chatty: { flips: 5000 } } };
    const r = (await h.client.workflow.execute('pipeline', { taskQueue: TASK_QUEUE, workflowId: id, args: [input] })) as PipelineResult;
    expect(r.stages[0].metrics.flips).toBe(5000);
    const history = await h.client.workflow.getHandle(stageWorkflowId(id, 'chatty')).fetchHistory();
    const signals = (history.events ?? []).filter((e) => e.workflowExecutionSignaledEventAttributes).length;
    expect(signals).toBeGreaterThan(0);
    expect(signals).toBeLessThanOrEqual(MAX_SIGNALS + 1); // + the final 'done'
    expect(history.events?.length).toBeLessThan(6 * MAX_SIGNALS);
    const view = await h.client.workflow.getHandle(stageWorkflowId(id, 'chatty')).query<ProgressView>('progress');
    expect(view.phase).toBe('done');
  });

  it('a stage of more shards than one history holds continues as new, merges every shard, and shows its expected finish', async () => {
    const id = `it-chatty-shards-${Date.now()}`;
    const input: PipelineInput = {
      profile: 'demo',
      runName: 'it-chatty-shards',
      stages: ['chatty-shards'],
      overrides: { 'chatty-shards': { shards: 24, flips: 30 } },
      timing: { historyEventsPerRun: EVENTS_PER_RUN, maxParallelShards: 2 },
    };
    const started = Date.now();
    const run = await h.client.workflow.start('pipeline', { taskQueue: TASK_QUEUE, workflowId: id, args: [input] });
    // While shards run, the stage's view carries its expected finish (once two shards have run).
    const stageHandle = h.client.workflow.getHandle(stageWorkflowId(id, 'chatty-shards'));
    let finishesAt: string | undefined;
    let finished = false;
    const done = (): void => void (finished = true);
    run.result().then(done, done);
    while (!finished && finishesAt === undefined) {
      finishesAt = (await stageHandle.query<ProgressView>('progress').catch(() => undefined))?.finishesAt;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(finishesAt).toBeDefined();
    expect(Date.parse(finishesAt ?? '')).toBeGreaterThan(started);
    const r = (await run.result()) as PipelineResult;
    expect(r.stages[0].metrics).toMatchObject({ shards: 24, flips: 24 * 30 });
    const lengths = await historyLengths(stageWorkflowId(id, 'chatty-shards'));
    expect(lengths.length).toBeGreaterThanOrEqual(2); // continued as new at least once
    // Each run stops starting shards past the budget; the two in flight may add their events.
    for (const n of lengths) expect(n).toBeLessThan(EVENTS_PER_RUN + 2 * (MAX_SIGNALS + 12));
  });
});
