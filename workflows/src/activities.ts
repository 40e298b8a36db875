import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  INVALID_INPUT_EXIT_CODE,
  InvalidInputError,
  isInvalidInput,
  parseProgressLine,
  timeLeftEstimator,
  type ProgressEvent,
} from '@id3/core';
import type {
  ExperimentInput,
  ExperimentPlan,
  ExperimentRun,
  PipelineInput,
  PipelineResult,
  ReuseSummary,
  ProgressSignal,
  RunPlan,
  RunStageActivityInput,
  ShardSummary,
  StagePlanSummary,
  StageSummary,
} from './contracts';
import { planExperiment, publishedFolderOf, recordExperimentRun, reuseFinishedStages } from './experiment';
import { restoreExperimentProgress } from './experiment-progress';
import { ID3_BIN, stateDir } from './paths';
import { localRunDir, planRun } from './pipeline-config';
import { RESULT_LINE_PREFIX } from './stage-command';

export interface ActivityDeps {
  /** Used to signal progress to the stage workflow; omit to rely on heartbeats only. */
  readonly client?: Client;
  /** How often the stage workflow gets a progress signal (each one is a history event). */
  readonly progressSignalEveryMs?: number;
  /**
   * At most this many progress signals per activity attempt (phase changes included), so a
   * stage that runs for days or reports very often cannot fill its workflow's history (Temporal
   * caps it at 51,200 events). Past it, live progress is in the heartbeat details only.
   */
  readonly maxProgressSignals?: number;
  /** How often the activity heartbeats while its stage process lives. */
  readonly heartbeatEveryMs?: number;
  /** Override the stage launcher (default bin/id3). */
  readonly id3Bin?: string;
  /**
   * Stages whose processes take only the CPU that others leave (`ID3_BACKGROUND_STAGES`): on a
   * machine running a recognizer beside another row's sampling, the sampling waits, not the training.
   */
  readonly backgroundStages?: readonly string[];
}

/** The environment variable naming the stages a worker runs in the background. */
export const BACKGROUND_STAGES_ENV = 'ID3_BACKGROUND_STAGES';

/**
 * `ID3_BACKGROUND_STAGES` ("sample" or "sample,eval"; empty: none) checked against the stage
 * names this worker knows, so a typo fails at start instead of silently running at full priority.
 */
export function parseBackgroundStages(value: string | undefined, known: readonly string[]): string[] {
  const names = (value ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n.length > 0);
  const unknown = names.find((n) => !known.includes(n));
  if (unknown !== undefined)
    throw new InvalidInputError(`${BACKGROUND_STAGES_ENV}: '${unknown}' is not a stage (known: ${known.join(', ')})`, {
      field: BACKGROUND_STAGES_ENV,
    });
  return [...new Set(names)];
}

/**
 * How a background stage is started: under `nice -n 19` (every thread it creates inherits it) in
 * a session of its own. Linux shares the CPU fairly between sessions (autogroups) whatever the
 * nice of the processes inside, so the new session's autogroup is lowered to 19 as well
 * (`lowerAutogroup`); otherwise it would still take half of a two-core machine from the worker
 * running the recognizer. The child still exits with the worker: its stdin closes.
 */
export function backgroundLaunch(bin: string, args: readonly string[]): { command: string; args: string[]; detached: true } {
  return { command: 'nice', args: ['-n', '19', bin, ...args], detached: true };
}

/** Where autogroups exist (Linux with CONFIG_SCHED_AUTOGROUP): what a background stage's lowered autogroup needs. */
export const hasAutogroups = (): boolean => existsSync('/proc/self/autogroup');

/**
 * Lower a process's autogroup to the weakest share. Resolves true when it took, false where the
 * kernel has no autogroups (nice alone applies there). Outside root the kernel allows one such
 * change per 100 ms machine-wide (EAGAIN), which two workers starting shards together can hit:
 * retried a few times, and a failure is reported rather than hidden.
 */
export async function lowerAutogroup(pid: number, tries = 5): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      writeFileSync(`/proc/${pid}/autogroup`, '19');
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !hasAutogroups()) return false;
      if (code !== 'EAGAIN' || attempt >= tries) throw new Error(`lowering the autogroup of pid ${pid}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 120));
    }
  }
}

/** Bad input is a non-retryable failure whose message names the field, file or line. */
function invalidInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: 'InvalidInput', message, nonRetryable: true });
}

function asInvalidInput<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isInvalidInput(err)) throw invalidInput((err as Error).message);
    throw err;
  }
}

export function createActivities(deps: ActivityDeps = {}) {
  const signalEvery = deps.progressSignalEveryMs ?? 15_000;
  const heartbeatEvery = deps.heartbeatEveryMs ?? 2_000;
  const maxSignals = deps.maxProgressSignals ?? 500;

  return {
    /** Validate the input, choose the run directory and write its config.json. */
    async planRun(input: PipelineInput): Promise<RunPlan> {
      return asInvalidInput(() => planRun(input ?? {}));
    },

    /**
     * Decide what is left of a sharded stage (in a stage process: it reads the stage's inputs):
     * nothing (current: its summary), or the shards still to do before the merge.
     */
    async planStage(input: RunStageActivityInput): Promise<StagePlanSummary> {
      return runStageProcess<StagePlanSummary>(input, ['--plan-only']);
    },

    /** One shard of a sharded stage; any worker may take it, and a done shard is not redone. */
    async runShard(input: RunStageActivityInput & { shard: string }): Promise<ShardSummary> {
      return runStageProcess<ShardSummary>(input, ['--shard', input.shard]);
    },

    /**
     * Run one stage (for a sharded stage: whatever shards are left, then the merge). A retried
     * attempt starts the stage again, and the stage itself skips finished work (manifest,
     * shard records) or resumes from its checkpoint.
     */
    async runStage(input: RunStageActivityInput): Promise<StageSummary> {
      return runStageProcess<StageSummary>(input, []);
    },

    /**
     * Validate an experiment file and every run it makes (each row × seed), in run order; then
     * unpack the unfinished work its publish folder carries into the runs that will start.
     */
    async planExperiment(input: ExperimentInput): Promise<ExperimentPlan> {
      return asInvalidInput(() => {
        const plan = planExperiment(input);
        const published = publishedFolderOf(plan);
        if (published) {
          const { restored, failed } = restoreExperimentProgress(plan, input, published);
          const log = Context.current().log;
          if (restored.length) log.info(`restored ${restored.length} carried shard(s) from ${published}/progress`, { restored });
          // A speed-up only: what cannot be unpacked is sampled again.
          for (const why of failed) log.warn(`carried progress not restored: ${why}`);
        }
        return plan;
      });
    },

    /** Seed a run's directory with the finished stages of sibling runs that have the same config and inputs. */
    async reuseFinishedStages(input: { run: ExperimentRun; siblings: readonly string[] }): Promise<ReuseSummary> {
      return asInvalidInput(() => reuseFinishedStages(input.run, input.siblings));
    },

    /** A run finished: rebuild the experiment's results.json and report.md (returns where they are). */
    async recordExperimentRun(input: {
      plan: ExperimentPlan;
      run: ExperimentRun;
      result: Pick<PipelineResult, 'stages'>;
      reuse: ReuseSummary;
    }): Promise<{ results: number }> {
      return asInvalidInput(() => ({ results: recordExperimentRun(input.plan, input.run, input.result, input.reuse).results.length }));
    },
  };

  /**
   * Run a stage process (tfjs work is CPU-bound and would starve this worker's event loop).
   * Heartbeats carry its latest progress; cancellation kills it; the result is its one result
   * line (paths, hashes, metrics). The run directory is resolved by name under this worker's
   * own runs directory, so workers on other machines may mount the shared one elsewhere.
   */
  async function runStageProcess<T>(input: RunStageActivityInput, extraArgs: string[]): Promise<T> {
    const ctx = Context.current();
    const { stage, plan } = input;
    const runDir = localRunDir(plan);
    const label = input.shard ? `${stage}/${input.shard}` : stage;
    const args = [
      'stage',
      stage,
      '--config',
      join(runDir, 'config.json'),
      '--run-dir',
      runDir,
      '--json-progress',
      '--exit-with-parent',
      ...extraArgs,
    ];
    if (plan.force && extraArgs.length === 0) args.push('--force');
    const env = {
      ...process.env,
      ID3_WORKER_IDENTITY: `${process.pid}@${hostname()}`,
      // One evaluation cache per machine: every run's eval reuses the benchmark crops the detector cut once.
      ID3_CACHE_DIR: process.env.ID3_CACHE_DIR ?? join(stateDir(), 'cache', 'eval'),
    };
    const bin = deps.id3Bin ?? ID3_BIN;
    // Planning (--plan-only) is quick and on the workflow's critical path: never in the background.
    const background = deps.backgroundStages?.includes(stage) === true && !extraArgs.includes('--plan-only');
    const launch = background ? backgroundLaunch(bin, args) : { command: bin, args, detached: false };
    const child = spawn(launch.command, launch.args, { stdio: ['pipe', 'pipe', 'pipe'], env, detached: launch.detached });
    if (launch.detached && child.pid !== undefined)
      lowerAutogroup(child.pid).catch((err: unknown) => ctx.log.warn(`${label}: runs at nice 19 only: ${(err as Error).message}`));
    let latest: ProgressEvent = { stage, phase: 'starting', message: `${label}: attempt ${ctx.info.attempt}` };
    let result: T | undefined;
    const stderrTail: string[] = [];
    let lastSignal = 0;
    let lastPhase = '';
    let signals = 0;
    // "about … left" in the message of a counted phase: what `id3 status` and the Web UI show (for a shard, after its step).
    const timeLeft = timeLeftEstimator();

    const signalProgress = (event: ProgressEvent, force = false): void => {
      if (!deps.client || !input.progressWorkflowId) return;
      const now = Date.now();
      if (!force && event.phase === lastPhase && now - lastSignal < signalEvery) return;
      if (!force && signals >= maxSignals) return; // bounded history: heartbeats carry the rest
      signals += 1;
      lastSignal = now;
      lastPhase = event.phase;
      const payload: ProgressSignal = { ...event, ...(input.shard ? { shard: input.shard } : {}) };
      deps.client.workflow
        .getHandle(input.progressWorkflowId)
        .signal('progress', payload)
        .catch(() => undefined); // progress is best effort; the heartbeat carries it too
    };

    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith(RESULT_LINE_PREFIX)) {
        try {
          result = JSON.parse(line.slice(RESULT_LINE_PREFIX.length)) as T;
        } catch {
          stderrTail.push(`unparseable result line: ${line.slice(0, 200)}`); // reported as a stage failure below
        }
        return;
      }
      const parsed = parseProgressLine(line);
      if (parsed) {
        const event = timeLeft(parsed, Date.now());
        latest = event;
        ctx.heartbeat(latest);
        signalProgress(event);
      }
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 40) stderrTail.shift();
      ctx.log.debug(`[${label}] ${line}`);
    });

    // Heartbeat on a timer too: a stage may spend longer than the heartbeat timeout inside
    // one computation, and cancellation is only delivered to a heartbeating activity.
    const timer = setInterval(() => ctx.heartbeat(latest), heartbeatEvery);
    const kill = (): void => {
      // A background stage leads its own process group: signal the group, helpers included.
      const signal = (sig: NodeJS.Signals): void => {
        if (child.exitCode !== null || child.signalCode !== null) return; // gone: its pid may be another's now
        if (launch.detached && child.pid !== undefined) {
          try {
            process.kill(-child.pid, sig);
            return;
          } catch {
            // the group is gone already: fall through to the child itself
          }
        }
        child.kill(sig);
      };
      signal('SIGTERM');
      setTimeout(() => signal('SIGKILL'), 5000).unref();
    };
    const onCancel = (): void => kill();
    ctx.cancellationSignal.addEventListener('abort', onCancel);
    try {
      ctx.heartbeat(latest);
      const code = await new Promise<number | null>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (c) => resolve(c));
      });
      if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');
      const tail = stderrTail
        .filter((l) => !l.startsWith('[id3] tfjs backend'))
        .slice(-12)
        .join('\n');
      if (code === INVALID_INPUT_EXIT_CODE) {
        const message = stderrTail.find((l) => l.startsWith('id3: invalid input:'))?.slice('id3: invalid input: '.length) ?? tail;
        throw invalidInput(`stage '${stage}': ${message}`);
      }
      if (code !== 0 || !result) {
        throw ApplicationFailure.create({ type: 'StageFailed', message: `stage '${label}' exited with ${code}:\n${tail}` });
      }
      const done = result as { skipped?: boolean; metrics?: Record<string, number> };
      if (extraArgs.length === 0) signalProgress({ stage, phase: done.skipped ? 'skipped' : 'done', metrics: done.metrics }, true);
      return result;
    } finally {
      clearInterval(timer);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      kill();
    }
  }
}

export type Activities = ReturnType<typeof createActivities>;
