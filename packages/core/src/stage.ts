import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { parseConfig } from './config';
import { InvalidInputError } from './errors';
import { hashJson } from './hash';
import type { ProgressEvent, ProgressSink } from './progress';
import { writeJsonAtomic, type OutputRecord, type RunStore, type StageManifest } from './run-store';

/** What a stage body reports back: files it wrote (by name) and scalar metrics. */
export interface StageOutputs {
  readonly outputs: Readonly<Record<string, string>>;
  readonly metrics: Readonly<Record<string, number>>;
}

/** A finished shard, as the merge step sees it. */
export interface CompletedShard {
  readonly id: string;
  /** The shard's own directory (its outputs live here). */
  readonly dir: string;
  readonly metrics: Readonly<Record<string, number>>;
}

export interface StageContext<C> {
  readonly config: C;
  readonly store: RunStore;
  /** This stage's directory inside the run directory. */
  readonly dir: string;
  /**
   * Absolute paths of what the stage reads: upstream outputs by their output name (resolved
   * through the upstream manifests) and external files by the name `externalInputs` gave them.
   */
  readonly inputs: Readonly<Record<string, string>>;
  /** Report progress; the stage name is filled in. */
  readonly progress: (event: Omit<ProgressEvent, 'stage'>) => void;
  readonly backend: string;
  /** For a sharded stage's merge step: every shard, finished, in plan order. */
  readonly shards: readonly CompletedShard[];
}

export interface ShardContext<C> extends Omit<StageContext<C>, 'shards'> {
  readonly shard: string;
  /** The shard's own directory: write its outputs here (atomically); partial progress may live here too. */
  readonly shardDir: string;
}

/**
 * Work that splits: `plan` names the shards (stable ids, small strings, for a given config and
 * inputs), `run` does one of them — resumably, writing into its own directory — and the stage's
 * `run` merges them once all are done. Any worker may take any shard.
 */
export interface StageShards<C> {
  plan(ctx: Omit<StageContext<C>, 'shards'>): readonly string[] | Promise<readonly string[]>;
  run(ctx: ShardContext<C>): Promise<{ metrics: Readonly<Record<string, number>> }>;
}

/** Validated config sections of the pipeline's other stages, by stage name (for plan-time checks). */
export type PipelineSections = Readonly<Record<string, Readonly<Record<string, unknown>> | undefined>>;

/**
 * A pipeline stage: validated config in, files + metrics out, recorded in a manifest. It says
 * itself what it reads from which upstream stage, so the pipeline's order and checks follow from
 * the registration list alone.
 */
export interface StageDefinition<S extends z.ZodTypeAny> {
  readonly name: string;
  /** Bump when the algorithm changes, so earlier outputs stop counting as current. */
  readonly version: number;
  readonly schema: S;
  /** Stages whose outputs this one may read: they run before it in the pipeline. */
  readonly upstream?: readonly string[];
  /** Named outputs of upstream stages this config reads, e.g. {prepare: ['embeddings', 'crops32']}. */
  reads?(config: z.output<S>): Readonly<Record<string, readonly string[]>>;
  /** Files outside the run directory this stage reads (datasets), by name → absolute path. */
  externalInputs?(config: z.output<S>): Record<string, string>;
  /**
   * Plan-time check against other stages' validated sections (present ones only); throws an
   * InvalidInputError naming the field, so an impossible combination fails before anything runs.
   */
  check?(config: z.output<S>, sections: PipelineSections): void;
  readonly shards?: StageShards<z.output<S>>;
  /**
   * What a run of this config needs, known from the config alone (cheap arithmetic): checked at
   * plan time against the machine, so an impossible size is refused before anything runs.
   */
  estimate?(config: z.output<S>, sections: PipelineSections): StageEstimate;
  run(ctx: StageContext<z.output<S>>): Promise<StageOutputs>;
}

export interface StageEstimate {
  /** Peak memory of the stage process, bytes. */
  readonly memoryBytes: number;
  /** The largest single typed array or tensor it allocates, bytes. */
  readonly largestArrayBytes: number;
  /** The config field that drives the size (named in the refusal). */
  readonly field: string;
  /** How the estimate is made, for the message (e.g. 'n × dim × 4 B × 6'). */
  readonly formula: string;
}

export interface MachineLimits {
  readonly memoryBytes: number;
  /** The largest typed array this Node can allocate (buffer.constants.MAX_LENGTH). */
  readonly maxArrayBytes: number;
}

const GIB = 1024 ** 3;
const gib = (bytes: number): string => `${(bytes / GIB).toFixed(bytes < 10 * GIB ? 2 : 1)} GiB`;

/**
 * Refuse an estimate the machine cannot hold: more than 80% of its memory (the rest is Node,
 * tfjs and the OS), or one array past what a typed array can address. Throws InvalidInputError
 * naming the field, the estimate and the limit.
 */
export function checkResources(stage: string, e: StageEstimate, machine: MachineLimits): void {
  const usable = 0.8 * machine.memoryBytes;
  if (e.memoryBytes > usable) {
    throw new InvalidInputError(
      `field '${e.field}': stage '${stage}' needs about ${gib(e.memoryBytes)} (${e.formula}), more than this machine can give it (${gib(usable)} of ${gib(machine.memoryBytes)})`,
      { field: e.field },
    );
  }
  if (e.largestArrayBytes > machine.maxArrayBytes) {
    throw new InvalidInputError(
      `field '${e.field}': stage '${stage}' would allocate one array of ${gib(e.largestArrayBytes)}, past the ${gib(machine.maxArrayBytes)} a typed array can hold`,
      { field: e.field },
    );
  }
}

/** The registry's view of any stage definition (a list holds definitions of different schemas). */
export type AnyStageDefinition = StageDefinition<z.ZodTypeAny>;

export interface StageRunOptions {
  readonly store: RunStore;
  readonly progress: ProgressSink;
  readonly backend: string;
  /** Re-run even if the manifest says the outputs are current. */
  readonly force?: boolean;
  /** Where the config came from, for error messages. */
  readonly configSource?: string;
  /** Prefix for field names in config errors (the config section, e.g. 'anchors'). */
  readonly fieldPrefix?: string;
}

export interface StageRunResult {
  readonly stage: string;
  readonly skipped: boolean;
  readonly manifest: StageManifest;
}

/** What `prepareStageRun` found: the stage is current, or here is its work (and its shards). */
export type StagePlan =
  | { readonly current: true; readonly result: StageRunResult }
  | { readonly current: false; readonly reason: string; readonly shards: readonly { readonly id: string; readonly done: boolean }[] };

interface Resolved<C> {
  readonly config: C;
  readonly configHash: string;
  readonly inputPaths: Record<string, string>;
  readonly inputs: Record<string, OutputRecord>;
  /** Identifies this stage's work: a shard finished under another key is stale. */
  readonly workKey: string;
  readonly emit: (event: Omit<ProgressEvent, 'stage'>) => void;
}

/** Absolute paths of the upstream outputs a stage reads, looked up in the upstream manifests. */
export function resolveUpstreamInputs(
  stage: string,
  reads: Readonly<Record<string, readonly string[]>>,
  store: RunStore,
): Record<string, string> {
  const paths: Record<string, string> = {};
  for (const [upstream, names] of Object.entries(reads)) {
    const manifest = store.readManifest(upstream);
    if (!manifest) {
      throw new InvalidInputError(
        `stage '${stage}' reads the outputs of stage '${upstream}', which has not completed in ${store.root}: run '${upstream}' first`,
        { file: store.manifestPath(upstream) },
      );
    }
    for (const name of names) {
      const out = manifest.outputs[name];
      if (!out) {
        throw new InvalidInputError(
          `stage '${stage}' reads output '${name}' of stage '${upstream}', which has none by that name (it has: ${Object.keys(manifest.outputs).join(', ')})`,
          { file: store.manifestPath(upstream) },
        );
      }
      if (name in paths) throw new Error(`stage '${stage}': output name '${name}' is read from two upstream stages`);
      paths[name] = store.abs(out.path);
    }
  }
  return paths;
}

async function resolve<S extends z.ZodTypeAny>(
  def: StageDefinition<S>,
  rawConfig: unknown,
  options: StageRunOptions,
): Promise<Resolved<z.output<S>>> {
  const config = parseConfig(def.schema, rawConfig, options.configSource ?? `${def.name} config`, options.fieldPrefix) as z.output<S>;
  const { store } = options;
  const configHash = hashJson({ stage: def.name, config });
  const inputPaths = { ...resolveUpstreamInputs(def.name, def.reads?.(config) ?? {}, store), ...(def.externalInputs?.(config) ?? {}) };
  const inputs: Record<string, OutputRecord> = {};
  for (const [name, path] of Object.entries(inputPaths)) {
    if (!existsSync(path)) throw new InvalidInputError(`stage '${def.name}': input '${name}' not found: ${path}`, { file: path });
    inputs[name] = await store.describeFile(path);
  }
  const workKey = hashJson({
    version: def.version,
    configHash,
    inputs: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.sha256])),
  });
  const emit = (event: Omit<ProgressEvent, 'stage'>): void => options.progress({ stage: def.name, ...event });
  return { config, configHash, inputPaths, inputs, workKey, emit };
}

function baseContext<C>(def: AnyStageDefinition, r: Resolved<C>, options: StageRunOptions): Omit<StageContext<C>, 'shards'> {
  return {
    config: r.config,
    store: options.store,
    dir: options.store.stageDir(def.name),
    inputs: r.inputPaths,
    progress: r.emit,
    backend: options.backend,
  };
}

// ── shards ────────────────────────────────────────────────────────────────────────────────────

/** A shard id: a plain name, never a path. */
export const SHARD_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const shardsRoot = (store: RunStore, stage: string): string => join(store.stageDir(stage), 'shards');
const shardDirOf = (store: RunStore, stage: string, id: string): string => join(shardsRoot(store, stage), id);
const shardDonePath = (store: RunStore, stage: string, id: string): string => join(shardDirOf(store, stage, id), 'done.json');

interface ShardRecord {
  readonly format: 'id3-shard/1';
  readonly stage: string;
  readonly shard: string;
  readonly workKey: string;
  readonly metrics: Readonly<Record<string, number>>;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly pid: number;
}

function readShardRecord(store: RunStore, stage: string, id: string, workKey: string): ShardRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(shardDonePath(store, stage, id), 'utf8')) as ShardRecord;
    return record.format === 'id3-shard/1' && record.workKey === workKey ? record : undefined;
  } catch {
    return undefined;
  }
}

async function planShardIds<C>(def: StageDefinition<z.ZodTypeAny>, ctx: Omit<StageContext<C>, 'shards'>): Promise<string[]> {
  if (!def.shards) return [];
  const ids = [...(await def.shards.plan(ctx))];
  const seen = new Set<string>();
  for (const id of ids) {
    if (!SHARD_ID.test(id) || seen.has(id)) throw new Error(`stage '${def.name}': shard id '${id}' is not a unique plain name`);
    seen.add(id);
  }
  return ids;
}

/** Drop shard directories the plan no longer names (another config's work): never merged by mistake. */
function pruneForeignShards(store: RunStore, stage: string, ids: readonly string[]): void {
  const root = shardsRoot(store, stage);
  if (!existsSync(root)) return;
  const keep = new Set(ids);
  for (const name of readdirSync(root)) if (!keep.has(name)) rmSync(join(root, name), { recursive: true, force: true });
}

/**
 * Validate, resolve inputs and decide: current (skip, with the manifest) or not (with the shards
 * still to do). A stage without shards has an empty shard list.
 */
export async function prepareStageRun<S extends z.ZodTypeAny>(
  def: StageDefinition<S>,
  rawConfig: unknown,
  options: StageRunOptions,
): Promise<StagePlan> {
  return planResolved(def, await resolve(def, rawConfig, options), options);
}

async function planResolved<C>(def: StageDefinition<z.ZodTypeAny>, r: Resolved<C>, options: StageRunOptions): Promise<StagePlan> {
  const { store } = options;
  let reason = 'forced';
  if (!options.force) {
    const status = await store.stageStatus(def.name, { stageVersion: def.version, configHash: r.configHash, inputs: r.inputs });
    if (status.current) return { current: true, result: { stage: def.name, skipped: true, manifest: status.manifest } };
    reason = status.reason;
  }
  const ids = await planShardIds(def, baseContext(def, r, options));
  pruneForeignShards(store, def.name, ids);
  return { current: false, reason, shards: ids.map((id) => ({ id, done: readShardRecord(store, def.name, id, r.workKey) !== undefined })) };
}

/**
 * Run one shard of a sharded stage unless it is already done under the same work key. Its
 * completion record is written last, so a killed shard is redone (resuming from whatever
 * partial progress it keeps in its directory) and a finished one never is.
 */
export async function executeShard<S extends z.ZodTypeAny>(
  def: StageDefinition<S>,
  rawConfig: unknown,
  shard: string,
  options: StageRunOptions,
): Promise<{ shard: string; skipped: boolean; metrics: Readonly<Record<string, number>> }> {
  if (!def.shards) throw new InvalidInputError(`stage '${def.name}' has no shards`, { field: 'shard' });
  const r = await resolve(def, rawConfig, options);
  const { store } = options;
  const ids = await planShardIds(def as AnyStageDefinition, baseContext(def as AnyStageDefinition, r, options));
  if (!ids.includes(shard))
    throw new InvalidInputError(
      `stage '${def.name}' has no shard '${shard}' for this config (it has ${ids.length}: ${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', …' : ''})`,
      { field: 'shard' },
    );
  const done = readShardRecord(store, def.name, shard, r.workKey);
  if (done && !options.force) {
    r.emit({ phase: 'shard skipped', message: `shard ${shard} already done` });
    return { shard, skipped: true, metrics: done.metrics };
  }
  const shardDir = shardDirOf(store, def.name, shard);
  rmSync(shardDonePath(store, def.name, shard), { force: true });
  const startedAt = new Date().toISOString();
  store.logEvent(def.name, 'shard-start', { shard, ...workerTag() });
  let result: { metrics: Readonly<Record<string, number>> };
  try {
    result = await def.shards.run({
      ...baseContext(def as AnyStageDefinition, r, options),
      shard,
      shardDir: ensureDir(shardDir),
    } as ShardContext<z.output<S>>);
  } catch (err) {
    store.logEvent(def.name, 'shard-fail', { shard, error: (err as Error).message, ...workerTag() });
    throw err;
  }
  const metrics = finiteMetrics(result.metrics);
  const record: ShardRecord = {
    format: 'id3-shard/1',
    stage: def.name,
    shard,
    workKey: r.workKey,
    metrics,
    startedAt,
    finishedAt: new Date().toISOString(),
    pid: process.pid,
  };
  writeJsonAtomic(shardDonePath(store, def.name, shard), record);
  store.logEvent(def.name, 'shard-complete', { shard, ...workerTag() });
  return { shard, skipped: false, metrics };
}

function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Which worker ran a piece of work (set by the Temporal activity for the stage process). */
function workerTag(): Record<string, string> {
  return process.env.ID3_WORKER_IDENTITY ? { worker: process.env.ID3_WORKER_IDENTITY } : {};
}

// JSON has no NaN/Infinity (they become null): an undefined metric is left out, not recorded.
function finiteMetrics(metrics: Readonly<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).filter(([, v]) => Number.isFinite(v)));
}

/**
 * Validate the config, skip if the recorded outputs are complete and current, otherwise run
 * the stage — first any shards not yet done, here, one after another (under Temporal the stage
 * workflow fans them out to workers instead) — and write its manifest last (so a crash never
 * leaves a manifest for partial work).
 */
export async function executeStage<S extends z.ZodTypeAny>(
  def: StageDefinition<S>,
  rawConfig: unknown,
  options: StageRunOptions,
): Promise<StageRunResult> {
  const r = await resolve(def, rawConfig, options);
  const plan = await planResolved(def as AnyStageDefinition, r, options);
  const { store } = options;
  if (plan.current) {
    store.logEvent(def.name, 'skip');
    r.emit({ phase: 'skipped', message: 'outputs complete and current', metrics: plan.result.manifest.metrics });
    return plan.result;
  }
  r.emit({ phase: 'start', message: plan.reason });

  let startedAt = new Date();
  store.logEvent(def.name, 'start');
  let result: StageOutputs;
  const shards: CompletedShard[] = [];
  try {
    for (const [i, shard] of plan.shards.entries()) {
      if (!shard.done) {
        r.emit({ phase: 'shards', step: i, total: plan.shards.length, message: `shard ${shard.id}` });
        await executeShard(def, rawConfig, shard.id, { ...options, force: false });
      }
      const record = readShardRecord(store, def.name, shard.id, r.workKey);
      if (!record) throw new Error(`stage '${def.name}': shard '${shard.id}' has no completion record after running`);
      shards.push({ id: shard.id, dir: shardDirOf(store, def.name, shard.id), metrics: record.metrics });
      // A sharded stage started with its first shard (under Temporal, in other processes).
      if (record.startedAt && Date.parse(record.startedAt) < startedAt.getTime()) startedAt = new Date(record.startedAt);
    }
    result = await def.run({ ...baseContext(def as AnyStageDefinition, r, options), shards } as StageContext<z.output<S>>);
  } catch (err) {
    store.logEvent(def.name, 'fail', { error: (err as Error).message });
    throw err;
  }
  const outputs: Record<string, OutputRecord> = {};
  for (const [name, path] of Object.entries(result.outputs)) outputs[name] = await store.describeFile(path);
  const metrics = finiteMetrics(result.metrics);
  const finishedAt = new Date();
  const manifest: StageManifest = {
    format: 'id3-stage-manifest/1',
    stage: def.name,
    stageVersion: def.version,
    configHash: r.configHash,
    config: r.config,
    inputs: r.inputs,
    outputs,
    metrics,
    backend: options.backend,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - startedAt.getTime(),
  };
  store.writeManifest(manifest);
  store.logEvent(def.name, 'complete', { durationMs: manifest.durationMs });
  r.emit({ phase: 'done', metrics });
  return { stage: def.name, skipped: false, manifest };
}
