import {
  INVALID_INPUT_EXIT_CODE,
  InvalidInputError,
  RunStore,
  consoleSink,
  executeShard,
  executeStage,
  initBackend,
  isInvalidInput,
  jsonLineSink,
  prepareStageRun,
  throttled,
  timeLeftEstimator,
  type AnyStageDefinition,
  type ProgressSink,
  type StageRunOptions,
  type StageRunResult,
} from '@id3/core';
import type { ShardSummary, StagePlanSummary, StageSummary } from './contracts';
import { readPipelineConfig, stageSection } from './pipeline-config';
import { stageRegistry } from './stages';

export const RESULT_LINE_PREFIX = '@@id3-result ';

/** What one stage process does: the whole stage (default), only decide what is left, or one shard. */
export type StageCommandMode = { readonly kind: 'run' } | { readonly kind: 'plan' } | { readonly kind: 'shard'; readonly shard: string };

export interface StageCommandOptions {
  readonly stage: string;
  /** config.json written by planRun. */
  readonly configPath: string;
  readonly runDir: string;
  readonly force?: boolean;
  /** Print progress as JSON lines on stdout (for the activity) instead of human lines on stderr. */
  readonly jsonProgress?: boolean;
  readonly mode?: StageCommandMode;
}

export function summarise(result: StageRunResult, store: RunStore): StageSummary {
  const m = result.manifest;
  return {
    stage: result.stage,
    skipped: result.skipped,
    runDir: store.root,
    manifestPath: store.manifestPath(result.stage),
    outputs: m.outputs,
    metrics: m.metrics,
    durationMs: m.durationMs,
  };
}

function stageDefinition(stage: string): AnyStageDefinition {
  const def = stageRegistry().get(stage);
  if (!def) throw new InvalidInputError(`unknown stage '${stage}' (known: ${stageRegistry().names.join(', ')})`, { field: 'stage' });
  return def;
}

/** Run one stage (or plan it, or one of its shards) in this process: `id3 stage <name>` and every activity's child. */
export async function runStageCommand(o: StageCommandOptions): Promise<StageSummary | StagePlanSummary | ShardSummary> {
  const def = stageDefinition(o.stage);
  const config = readPipelineConfig(o.configPath);
  const mode = o.mode ?? { kind: 'run' };
  const backend = mode.kind === 'plan' ? { name: 'none' } : await initBackend();
  const store = new RunStore(o.runDir);
  // A worker's activity estimates the time left itself (from the events it reads); a person at the console gets it here.
  const timeLeft = timeLeftEstimator();
  const progress: ProgressSink = o.jsonProgress
    ? throttled(jsonLineSink, 1000)
    : throttled((event) => consoleSink(timeLeft(event, Date.now())), 2000);
  const options: StageRunOptions = {
    store,
    progress,
    backend: backend.name,
    force: o.force,
    configSource: o.configPath,
    fieldPrefix: o.stage,
  };
  const section = stageSection(config, o.stage);
  if (mode.kind === 'plan') {
    const plan = await prepareStageRun(def, section, options);
    if (plan.current) {
      // A sharded stage found current here is skipped here (no merge step follows): say so.
      store.logEvent(o.stage, 'skip');
      return { kind: 'plan', stage: o.stage, current: summarise(plan.result, store), shards: [] };
    }
    return {
      kind: 'plan',
      stage: o.stage,
      reason: plan.reason,
      shards: plan.shards.filter((s) => !s.done).map((s) => s.id),
      totalShards: plan.shards.length,
    };
  }
  if (mode.kind === 'shard') {
    const r = await executeShard(def, section, mode.shard, { ...options, force: false });
    return { kind: 'shard', stage: o.stage, ...r };
  }
  return summarise(await executeStage(def, section, options), store);
}

/**
 * Exit code contract with the activity: 0 and a result line on success; INVALID_INPUT_EXIT_CODE
 * with the message on stderr for bad input (non-retryable); anything else is retryable.
 */
export async function stageCommandMain(o: StageCommandOptions & { exitWithParent?: boolean }): Promise<number> {
  if (o.exitWithParent) {
    // The activity holds our stdin open; when the worker dies, stdin closes and we must not
    // keep computing (and writing) as an orphan next to the retried attempt.
    process.stdin.on('end', () => process.exit(143));
    process.stdin.on('error', () => process.exit(143));
    process.stdin.resume();
  }
  try {
    const result = await runStageCommand(o);
    // Wait until the line is handed to the pipe: stdout to a pipe is asynchronous, and the
    // process exits right after (a stage that printed thousands of progress lines lost it).
    if (o.jsonProgress)
      await new Promise<void>((resolve) => process.stdout.write(`${RESULT_LINE_PREFIX}${JSON.stringify(result)}\n`, () => resolve()));
    else process.stderr.write(`${describeResult(result)}\n`);
    return 0;
  } catch (err) {
    if (isInvalidInput(err)) {
      process.stderr.write(`id3: invalid input: ${(err as Error).message}\n`);
      return INVALID_INPUT_EXIT_CODE;
    }
    process.stderr.write(`id3: stage '${o.stage}' failed: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

function describeResult(r: StageSummary | StagePlanSummary | ShardSummary): string {
  if ('kind' in r && r.kind === 'plan') {
    return r.current
      ? `[${r.stage}] current (outputs complete)`
      : `[${r.stage}] to run (${r.reason}); shards left: ${r.shards.length}/${r.totalShards}${r.shards.length ? ` (${r.shards.join(', ')})` : ''}`;
  }
  if ('kind' in r && r.kind === 'shard') return `[${r.stage}] shard ${r.shard} ${r.skipped ? 'already done' : 'done'}`;
  const s = r as StageSummary;
  return `[${s.stage}] ${s.skipped ? 'skipped (outputs current)' : 'done'} → ${s.manifestPath}`;
}
