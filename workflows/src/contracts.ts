/**
 * The small JSON values that cross Temporal: workflow inputs, activity inputs and results.
 * Workflow code imports this file, so it holds types, plain constants and pure functions of them only.
 */

export const TASK_QUEUE = 'id3';
/** Keyword search attribute holding the stage a workflow is in (registered by `id3 server`). */
export const STAGE_SEARCH_ATTRIBUTE = 'Id3Stage';
/** Keyword search attribute holding the run name (one run directory). */
export const RUN_SEARCH_ATTRIBUTE = 'Id3Run';

/**
 * Input of the `pipeline` workflow: ONE JSON object, so the Web UI's "Start Workflow" form can
 * send it. Example: {"profile": "demo", "overrides": {"anchors": {"n": 2000}}}.
 */
export interface PipelineInput {
  /** Profile data file in profiles/ (default 'demo'). */
  readonly profile?: string;
  /** Deep-merged over the profile; validated as a whole. */
  readonly overrides?: Record<string, unknown>;
  /** Run directory name under the state dir; default: profile + config hash (same config → same run). */
  readonly runName?: string;
  /** Stages to run (default: all the profile enables, in pipeline order). */
  readonly stages?: readonly string[];
  /** Re-run stages even if their outputs are current. */
  readonly force?: boolean;
  /** Activity timing, for tests and slow machines. */
  readonly timing?: StageTiming;
}

export interface StageTiming {
  /** Heartbeat timeout of the stage activity: a silent stage process is declared dead after this. */
  readonly heartbeatTimeoutSeconds?: number;
  readonly startToCloseTimeoutMinutes?: number;
  readonly maximumAttempts?: number;
  /** At most this many shards of one stage in flight at once (each is one activity any worker may take). */
  readonly maxParallelShards?: number;
  /**
   * A sharded stage's workflow continues as new once its history passes this many events
   * (default 10,000; Temporal's hard cap is 51,200), so a stage of any number of shards fits.
   */
  readonly historyEventsPerRun?: number;
}

/** Input of the `stage` workflow (also startable from the Web UI: {"stage": "anchors", "profile": "demo"}). */
export interface StageWorkflowInput extends PipelineInput {
  readonly stage: string;
  /** Set by the pipeline; when absent the stage resolves the config itself. */
  readonly plan?: RunPlan;
  /** How many times this stage's workflow has continued as new (bounded history). */
  readonly continued?: number;
}

/** A validated pipeline config, written to disk; what every stage activity receives. */
export interface RunPlan {
  readonly runName: string;
  readonly runDir: string;
  /** Path of the validated, fully resolved config JSON inside the run directory. */
  readonly configPath: string;
  readonly configHash: string;
  readonly stages: readonly string[];
  /** Those of `stages` whose work splits into shards (the stage workflow fans them out). */
  readonly shardedStages?: readonly string[];
  readonly force: boolean;
}

export interface RunStageActivityInput {
  readonly stage: string;
  readonly plan: RunPlan;
  /** The workflow to signal with progress (the stage workflow). */
  readonly progressWorkflowId?: string;
  /** Run only this shard of the stage (else the whole stage: remaining shards, then the merge). */
  readonly shard?: string;
}

/** What is left of a sharded stage: nothing (current), or these shards, then the merge. */
export type StagePlanSummary =
  | { readonly kind: 'plan'; readonly stage: string; readonly current: StageSummary; readonly shards: readonly [] }
  | {
      readonly kind: 'plan';
      readonly stage: string;
      readonly current?: undefined;
      readonly reason: string;
      readonly shards: readonly string[];
      readonly totalShards: number;
    };

export interface ShardSummary {
  readonly kind: 'shard';
  readonly stage: string;
  readonly shard: string;
  readonly skipped: boolean;
  readonly metrics: Readonly<Record<string, number>>;
}

/** What a stage returns through Temporal: paths, hashes and metrics only. */
export interface StageSummary {
  readonly stage: string;
  readonly skipped: boolean;
  readonly runDir: string;
  readonly manifestPath: string;
  readonly outputs: Readonly<Record<string, { path: string; sha256: string; bytes: number }>>;
  readonly metrics: Readonly<Record<string, number>>;
  readonly durationMs: number;
}

export interface PipelineResult {
  readonly runName: string;
  readonly runDir: string;
  readonly stages: readonly StageSummary[];
}

/** Progress as returned by the `progress` query of both workflows. */
export interface ProgressView {
  readonly runName?: string;
  readonly stage?: string;
  readonly phase: string;
  readonly step?: number;
  readonly total?: number;
  readonly metrics?: Readonly<Record<string, number>>;
  readonly message?: string;
  readonly completedStages: readonly string[];
  readonly updatedAt?: string;
  /** A sharded stage's expected finish (ISO), from the pace of the shards it has run so far. */
  readonly finishesAt?: string;
}

/**
 * When a sharded stage should finish, from its own pace: shards run side by side, so the pace is
 * the shards this execution ran (not those found already done on disk, which say nothing about
 * it) over the time since it queued the first. Undefined until `minRan` shards ran: the first
 * finishes of parallel shards come together, and one alone would read as half the pace.
 */
export function shardedStageFinish(o: { startedAtMs: number; ran: number; left: number; nowMs: number }, minRan = 2): number | undefined {
  if (o.ran < Math.max(1, minRan) || o.left <= 0 || o.nowMs <= o.startedAtMs) return undefined;
  return o.nowMs + (o.left * (o.nowMs - o.startedAtMs)) / o.ran;
}

export interface ProgressSignal {
  readonly stage: string;
  /** Set when the progress comes from one shard of the stage. */
  readonly shard?: string;
  readonly phase: string;
  readonly step?: number;
  readonly total?: number;
  readonly metrics?: Readonly<Record<string, number>>;
  readonly message?: string;
}

/** Deterministic id of a pipeline's child workflow for one stage. */
export function stageWorkflowId(pipelineWorkflowId: string, stage: string): string {
  return `${pipelineWorkflowId}--${stage}`;
}

/**
 * Input of the `experiment` workflow (Web UI: {"name": "demo-table1"}): every row of
 * `experiments/<name>.json` × every seed as its own child `pipeline` run.
 */
export interface ExperimentInput {
  /** Experiment file `experiments/<name>.json`. */
  readonly name: string;
  /** Run only these of the file's seeds now (results of the others are kept; default: all). */
  readonly seeds?: readonly number[];
  /** Run only these of the file's rows now (results of the others are kept; default: all). */
  readonly rows?: readonly string[];
  /** At most this many rows run at once (default 1: each stage takes both cores of a small machine). */
  readonly maxParallelRows?: number;
  /** Re-run every row's stages even if current. */
  readonly force?: boolean;
  readonly timing?: StageTiming;
}

/**
 * The runs an execution starts: the plan's, in its order, narrowed to the input's seeds and rows,
 * less those adopted from the recorded results (shared by the CLI and the workflow).
 */
export function runsToStart(
  plan: Pick<ExperimentPlan, 'runs' | 'adopted'>,
  input: Pick<ExperimentInput, 'seeds' | 'rows'>,
): ExperimentRun[] {
  return plan.runs.filter(
    (r) =>
      (!input.seeds || input.seeds.includes(r.seed)) && (!input.rows || input.rows.includes(r.row)) && !plan.adopted?.includes(r.runName),
  );
}

/**
 * Run `fn` over the items in their order with at most `limit` in flight, never two that
 * `conflict` at once: each lane takes the first waiting item that conflicts with none in flight,
 * and when every waiting item does, waits (`waitUntil`: the workflow's `condition`) until one of
 * those finishes. Once `stop()` says so, no more start (those in flight finish). Without
 * conflicts it is a plain limited loop that starts items synchronously, as before conflicts
 * existed (so replayed executions issue the same commands). Deterministic: no clocks, no I/O.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
  options: {
    readonly conflict?: (a: T, b: T) => boolean;
    readonly waitUntil?: (ready: () => boolean) => Promise<void>;
    readonly stop?: () => boolean;
  } = {},
): Promise<void> {
  const waiting = [...items];
  const inFlight: T[] = [];
  const free = (item: T): boolean => !inFlight.some((other) => options.conflict?.(item, other) ?? false);
  const lane = async (): Promise<void> => {
    while (waiting.length && !options.stop?.()) {
      const i = waiting.findIndex(free);
      if (i < 0) {
        if (!options.waitUntil) throw new Error('forEachLimited: items that conflict need a waitUntil');
        await options.waitUntil(() => !waiting.length || waiting.some(free));
        continue;
      }
      const [item] = waiting.splice(i, 1);
      inFlight.push(item);
      try {
        await fn(item);
      } finally {
        inFlight.splice(inFlight.indexOf(item), 1);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
}

/**
 * Why a child run failed, for a person: the innermost cause's message (a child's failure wraps the
 * stage's own). A cancellation has no message of its own, so it is named.
 */
export function rootMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown; name?: string } | undefined;
  while (e?.cause) e = e.cause as typeof e;
  if (e?.message) return e.message;
  return e?.name === 'CancelledFailure' ? 'cancelled (in the Web UI or with temporal workflow cancel)' : String(err);
}

/** One child run of an experiment: a row at one seed. */
export interface ExperimentRun {
  readonly row: string;
  readonly seed: number;
  /** `<experiment>-<row>-s<seed>`. */
  readonly runName: string;
  readonly input: PipelineInput;
  /** Hash of the row's whole pipeline config (what results.json records it under). */
  readonly configHash: string;
  /** Another row of the same seed this row is also compared with. */
  readonly compareTo?: string;
  /**
   * Hash of what the run trains on: the stages it runs before `fr-train`, with their versions and
   * config sections. Runs with the same one make the same data (a row's seeds, where the row pins
   * its sampling to one seed), so they never run side by side: the second would remake what the
   * first is making instead of reusing it. Absent in plans made before it existed.
   */
  readonly dataKey?: string;
}

/** What the experiment's plan activity validated: every run of the file in order (baseline row first, row by row). */
export interface ExperimentPlan {
  readonly name: string;
  readonly baseline: string;
  /** The eval benchmark the table reports (same pairs in every row). */
  readonly benchmark: string;
  readonly runs: readonly ExperimentRun[];
  /** Rows kept in the file but not run, and why. */
  readonly pending: readonly { readonly row: string; readonly why: string }[];
  /**
   * Every row of the file in file order, with its expectation written before running. The
   * optional fields here are absent in plans made before they existed (a resumed workflow).
   */
  readonly rows?: readonly { readonly row: string; readonly expected?: string }[];
  /** Repository-relative folder the results are mirrored into after each run (the file's `publish`). */
  readonly publish?: string;
  /** The experiment file's text as planned (recorded as experiment.json next to the results). */
  readonly source?: string;
  /**
   * Runs not to run: their results stand recorded (config unchanged, per-pair outcomes kept beside
   * results.json) but their run directories are gone — a fresh checkout of the repository with
   * the published folder. Absent in plans made before it existed.
   */
  readonly adopted?: readonly string[];
}

/** What reusing finished sibling stages did for one run before its pipeline started. */
export interface ReuseSummary {
  readonly runName: string;
  /** Stage → the sibling run its finished directory was taken from. */
  readonly reused: Readonly<Record<string, string>>;
}

export interface ExperimentResult {
  readonly name: string;
  /** `<experiment>/results.json` and `report.md`, relative to the runs directory. */
  readonly resultsPath: string;
  readonly reportPath: string;
  readonly runs: readonly {
    readonly runName: string;
    readonly row: string;
    readonly seed: number;
    readonly skippedStages: number;
    readonly stages: number;
  }[];
  readonly pending: ExperimentPlan['pending'];
}

/** Deterministic id of an experiment's child pipeline for one row and seed. */
export function experimentRunWorkflowId(experimentWorkflowId: string, row: string, seed: number): string {
  return `${experimentWorkflowId}--${row}-s${seed}`;
}
