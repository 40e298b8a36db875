/**
 * Temporal workflows. Deterministic code only: no Node built-ins, no tfjs, no stage packages
 * (eslint enforces it) — activities are imported as a type.
 */
import {
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  executeChild,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from './activities';
import {
  RUN_SEARCH_ATTRIBUTE,
  STAGE_SEARCH_ATTRIBUTE,
  experimentRunWorkflowId,
  forEachLimited,
  rootMessage,
  runsToStart,
  shardedStageFinish,
  type ExperimentInput,
  type ExperimentResult,
  type PipelineInput,
  type PipelineResult,
  type ProgressSignal,
  type ProgressView,
  type RunPlan,
  type ShardSummary,
  type StageSummary,
  type StageTiming,
  type StageWorkflowInput,
  stageWorkflowId,
} from './contracts';

export const progressQuery = defineQuery<ProgressView>('progress');
export const progressSignal = defineSignal<[ProgressSignal]>('progress');

const { planRun } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: ['InvalidInput'] },
});

function stageActivities(timing: StageTiming = {}) {
  return proxyActivities<Activities>({
    // A stage may train for days; liveness comes from the heartbeat, not from this bound.
    startToCloseTimeout: `${timing.startToCloseTimeoutMinutes ?? 7 * 24 * 60} minutes`,
    heartbeatTimeout: `${timing.heartbeatTimeoutSeconds ?? 60} seconds`,
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 2,
      maximumInterval: '2 minutes',
      maximumAttempts: timing.maximumAttempts ?? 5,
      nonRetryableErrorTypes: ['InvalidInput'],
    },
  });
}

function detailsMarkdown(view: ProgressView): string {
  const lines = [`**${view.stage ?? 'pipeline'}** — ${view.phase}${view.total ? ` (${view.step ?? 0}/${view.total})` : ''}`];
  if (view.runName) lines.push(`run: \`${view.runName}\``);
  if (view.metrics) {
    lines.push(
      Object.entries(view.metrics)
        // Metrics arrive as JSON: a non-finite number is null there; never let display crash the workflow.
        .map(([k, v]) => `${k}: ${typeof v !== 'number' ? String(v) : Number.isInteger(v) ? v : v.toPrecision(5)}`)
        .join(' · '),
    );
  }
  if (view.message) lines.push(view.message);
  if (view.finishesAt) lines.push(`expected to finish about ${view.finishesAt.slice(0, 16).replace('T', ' ')} UTC`);
  if (view.completedStages.length) lines.push(`completed: ${view.completedStages.join(', ')}`);
  return lines.join('\n\n');
}

function publish(view: ProgressView): ProgressView {
  setCurrentDetails(detailsMarkdown(view));
  return view;
}

/**
 * The whole pipeline: validate the config once, then every stage as a child workflow with a
 * deterministic id (`<pipeline id>--<stage>`), in order. A re-run with the same config reuses
 * the run directory and every stage whose outputs are current is skipped.
 */
export async function pipeline(input: PipelineInput = {}): Promise<PipelineResult> {
  let view: ProgressView = publish({ phase: 'planning', completedStages: [] });
  setHandler(progressQuery, () => view);
  const plan = await planRun(input);
  upsertSearchAttributes({ [RUN_SEARCH_ATTRIBUTE]: [plan.runName] });
  const summaries: StageSummary[] = [];
  for (const stageName of plan.stages) {
    view = publish({ runName: plan.runName, stage: stageName, phase: 'running', completedStages: summaries.map((s) => s.stage) });
    upsertSearchAttributes({ [STAGE_SEARCH_ATTRIBUTE]: [stageName] });
    const summary = await executeChild(stage, {
      workflowId: stageWorkflowId(workflowInfo().workflowId, stageName),
      args: [{ stage: stageName, plan, timing: input.timing }],
      searchAttributes: { [STAGE_SEARCH_ATTRIBUTE]: [stageName], [RUN_SEARCH_ATTRIBUTE]: [plan.runName] },
      // Every child is a `stage` workflow: its summary is what the Web UI shows to tell them apart.
      staticSummary: stageName,
      staticDetails: `Stage **${stageName}** of run \`${plan.runName}\` (${plan.stages.indexOf(stageName) + 1} of ${plan.stages.length})`,
    });
    summaries.push(summary);
  }
  view = publish({ runName: plan.runName, phase: 'done', completedStages: summaries.map((s) => s.stage) });
  upsertSearchAttributes({ [STAGE_SEARCH_ATTRIBUTE]: ['done'] });
  return { runName: plan.runName, runDir: plan.runDir, stages: summaries };
}

/**
 * One stage. Started by the pipeline with a plan, or alone (Web UI / `id3 run --stage`) with
 * {"stage": "anchors", "profile": "demo"}, in which case it plans the run itself.
 */
export async function stage(input: StageWorkflowInput): Promise<StageSummary> {
  if (!input || typeof input.stage !== 'string') {
    throw ApplicationFailure.create({
      type: 'InvalidInput',
      message: 'field \'stage\': required, e.g. {"stage": "anchors", "profile": "demo"}',
      nonRetryable: true,
    });
  }
  let view: ProgressView = publish({ stage: input.stage, phase: 'planning', completedStages: [] });
  setHandler(progressQuery, () => view);
  // While shards run, the view counts shards; a shard's own progress goes into the message.
  let shards: { done: number; total: number } | undefined;
  setHandler(progressSignal, (event) => {
    const updatedAt = new Date().toISOString();
    if (shards && event.shard) {
      const own = `shard ${event.shard}: ${event.phase}${event.total ? ` ${event.step ?? 0}/${event.total}` : ''}${event.message ? ` ${event.message}` : ''}`;
      view = publish({ ...view, phase: 'shards', step: shards.done, total: shards.total, metrics: event.metrics, message: own, updatedAt });
    } else {
      view = publish({
        ...view,
        phase: event.phase,
        step: event.step,
        total: event.total,
        metrics: event.metrics,
        message: event.message,
        updatedAt,
      });
    }
  });
  const plan: RunPlan = input.plan ?? (await planRun({ ...input, stages: [input.stage] }));
  view = publish({ ...view, runName: plan.runName, phase: 'running' });
  upsertSearchAttributes({ [STAGE_SEARCH_ATTRIBUTE]: [input.stage], [RUN_SEARCH_ATTRIBUTE]: [plan.runName] });
  const activities = stageActivities(input.timing);
  const base = { stage: input.stage, plan, progressWorkflowId: workflowInfo().workflowId };
  if (plan.shardedStages?.includes(input.stage)) {
    // Work that splits: each shard is its own activity, so any worker can take it and a retry
    // redoes one shard only; the merge runs once all are done.
    const left = await activities.planStage(base);
    if (left.current) {
      view = publish({ ...view, phase: 'skipped', metrics: left.current.metrics, completedStages: [input.stage] });
      return left.current;
    }
    // `ran` and `startedAtMs` time this execution's own shards (workflow time: replays alike).
    const counter = { done: left.totalShards - left.shards.length, total: left.totalShards, ran: 0, startedAtMs: Date.now() };
    shards = counter;
    view = publish({
      ...view,
      phase: 'shards',
      step: counter.done,
      total: counter.total,
      message: `${left.shards.length} shard(s) to run`,
    });
    // Bounded history: past the budget, start no more shards, let those in flight finish, and
    // continue as a new run, which asks again what is left (finished shards are on disk).
    const budget = input.timing?.historyEventsPerRun ?? 10_000;
    const full = (): boolean => workflowInfo().historyLength > budget || workflowInfo().continueAsNewSuggested;
    await forEachLimited(
      left.shards,
      input.timing?.maxParallelShards ?? 16,
      async (shard) => {
        const result: ShardSummary = await activities.runShard({ ...base, shard });
        counter.done += 1;
        if (!result.skipped) counter.ran += 1;
        const finish = shardedStageFinish({ ...counter, left: counter.total - counter.done, nowMs: Date.now() });
        view = publish({
          ...view,
          phase: 'shards',
          step: counter.done,
          total: counter.total,
          message: `shard ${result.shard} ${result.skipped ? 'was already done' : 'done'}`,
          finishesAt: finish === undefined ? view.finishesAt : new Date(finish).toISOString(),
        });
      },
      { stop: full },
    );
    if (counter.done < counter.total) {
      await continueAsNew<typeof stage>({ ...input, plan, continued: (input.continued ?? 0) + 1 });
    }
    shards = undefined;
    view = publish({
      ...view,
      phase: 'merge',
      step: undefined,
      total: undefined,
      finishesAt: undefined,
      message: `merging ${left.totalShards} shard(s)`,
    });
  }
  const summary = await activities.runStage(base);
  view = publish({ ...view, phase: summary.skipped ? 'skipped' : 'done', metrics: summary.metrics, completedStages: [input.stage] });
  return summary;
}

const experimentActivities = proxyActivities<Activities>({
  // Mirroring stage folders falls back to copying across filesystems: give it room.
  startToCloseTimeout: '30 minutes',
  retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes: ['InvalidInput'] },
});

/**
 * An experiment (`experiments/<name>.json`): every row × seed as a child `pipeline` run
 * (`<experiment id>--<row>-s<seed>`, run directory `<experiment>-<row>-s<seed>`), at most
 * `maxParallelRows` at once, in the plan's order (the baseline row first; two runs that make the same
 * data, never side by side: the later waits and reuses). Before each run, finished stages of
 * sibling runs with the same config and inputs are mirrored into its directory (its pipeline
 * then skips them); after each, results.json and report.md are rebuilt. Rerunning the experiment
 * reruns every pipeline, which finds its stages current and skips them.
 */
export async function experiment(input: ExperimentInput): Promise<ExperimentResult> {
  if (!input || typeof input.name !== 'string') {
    throw ApplicationFailure.create({
      type: 'InvalidInput',
      message: 'field \'name\': required, e.g. {"name": "demo-table1"}',
      nonRetryable: true,
    });
  }
  let view: ProgressView = publish({ phase: 'planning', completedStages: [] });
  setHandler(progressQuery, () => view);
  const plan = await experimentActivities.planExperiment(input);
  // Adopted runs are already in the results (see ExperimentPlan.adopted): they stay in the table, not rerun.
  const toRun = runsToStart(plan, input);
  const finished: ExperimentResult['runs'][number][] = [];
  const failed: string[] = [];
  const running = new Set<string>();
  const show = (): void => {
    view = publish({
      runName: input.name,
      stage: 'experiment',
      phase: running.size ? 'running' : 'done',
      step: finished.length,
      total: toRun.length,
      message: [
        running.size ? `running: ${[...running].join(', ')}` : '',
        failed.length ? `failed: ${failed.join('; ')}` : '',
        plan.pending.length ? `pending (not run): ${plan.pending.map((p) => p.row).join(', ')}` : '',
      ]
        .filter(Boolean)
        .join('\n\n'),
      completedStages: finished.map((r) => r.runName),
    });
  };
  show(); // also when every run was adopted and none starts
  // results.json is rebuilt read-modify-write: one update at a time.
  let recording: Promise<unknown> = Promise.resolve();
  await forEachLimited(
    toRun,
    input.maxParallelRows ?? 1,
    async (run) => {
      running.add(run.runName);
      show();
      const siblings = plan.runs.filter((r) => r.runName !== run.runName).map((r) => r.runName);
      try {
        const reuse = await experimentActivities.reuseFinishedStages({ run, siblings });
        const result = await executeChild(pipeline, {
          workflowId: experimentRunWorkflowId(workflowInfo().workflowId, run.row, run.seed),
          args: [run.input],
          searchAttributes: { [RUN_SEARCH_ATTRIBUTE]: [run.runName] },
          staticSummary: `${run.row} (seed ${run.seed})`,
          staticDetails: `Row **${run.row}**, seed ${run.seed}, of experiment \`${plan.name}\` (run \`${run.runName}\`)`,
        });
        const record = recording.then(() =>
          experimentActivities.recordExperimentRun({ plan, run, result: { stages: result.stages }, reuse }),
        );
        recording = record.catch(() => undefined);
        await record;
        finished.push({
          runName: run.runName,
          row: run.row,
          seed: run.seed,
          stages: result.stages.length,
          skippedStages: result.stages.filter((s) => s.skipped).length,
        });
      } catch (err) {
        // One failed row must not stop the others: it is reported, and the experiment fails at the end.
        failed.push(`${run.runName}: ${rootMessage(err)}`);
      } finally {
        running.delete(run.runName);
        show();
      }
    },
    // Runs that make the same data wait for each other, so the second reuses the first's instead of remaking it.
    { conflict: (a, b) => a.dataKey !== undefined && a.dataKey === b.dataKey, waitUntil: (ready) => condition(ready) },
  );
  if (failed.length) {
    throw ApplicationFailure.create({
      type: 'ExperimentRunsFailed',
      message: `experiment '${plan.name}': ${failed.length} of ${toRun.length} run(s) failed: ${failed.join('; ')}`,
      nonRetryable: true,
    });
  }
  const dir = `${plan.name}`;
  return {
    name: plan.name,
    resultsPath: `${dir}/results.json`,
    reportPath: `${dir}/report.md`,
    runs: finished,
    pending: plan.pending,
  };
}
