import {
  INVALID_INPUT_EXIT_CODE, InvalidInputError, RunStore, consoleSink, executeStage, initBackend, isInvalidInput, jsonLineSink, throttled,
  type ProgressSink, type StageDefinition, type StageRunResult,
} from '@id3/core';
import type { z } from 'zod';
import type { StageSummary } from './contracts';
import { readPipelineConfig, stageSection } from './pipeline-config';
import { STAGES, isStageName } from './stages';

export const RESULT_LINE_PREFIX = '@@id3-result ';

export interface StageCommandOptions {
  readonly stage: string;
  /** config.json written by planRun. */
  readonly configPath: string;
  readonly runDir: string;
  readonly force?: boolean;
  /** Print progress as JSON lines on stdout (for the activity) instead of human lines on stderr. */
  readonly jsonProgress?: boolean;
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

/** Run one stage in this process: the body of `id3 stage <name>` and of every activity's child. */
export async function runStageCommand(o: StageCommandOptions): Promise<StageSummary> {
  if (!isStageName(o.stage)) throw new InvalidInputError(`unknown stage '${o.stage}' (known: ${Object.keys(STAGES).join(', ')})`, { field: 'stage' });
  const config = readPipelineConfig(o.configPath);
  const backend = await initBackend();
  const store = new RunStore(o.runDir);
  const progress: ProgressSink = o.jsonProgress ? throttled(jsonLineSink, 1000) : throttled(consoleSink, 2000);
  // The registry's union of definitions, viewed through the common interface.
  const def = STAGES[o.stage] as StageDefinition<z.ZodTypeAny>;
  const result = await executeStage(def, stageSection(config, o.stage), {
    store,
    progress,
    backend: backend.name,
    force: o.force,
    configSource: o.configPath,
    fieldPrefix: o.stage,
  });
  return summarise(result, store);
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
    const summary = await runStageCommand(o);
    if (o.jsonProgress) process.stdout.write(`${RESULT_LINE_PREFIX}${JSON.stringify(summary)}\n`);
    else {
      process.stderr.write(`[${summary.stage}] ${summary.skipped ? 'skipped (outputs current)' : 'done'} → ${summary.manifestPath}\n`);
    }
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
