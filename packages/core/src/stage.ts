import type { z } from 'zod';
import { parseConfig } from './config';
import { hashJson } from './hash';
import type { ProgressEvent, ProgressSink } from './progress';
import type { OutputRecord, RunStore, StageManifest } from './run-store';

/** What a stage body reports back: files it wrote (by name) and scalar metrics. */
export interface StageOutputs {
  readonly outputs: Readonly<Record<string, string>>;
  readonly metrics: Readonly<Record<string, number>>;
}

export interface StageContext<C> {
  readonly config: C;
  readonly store: RunStore;
  /** This stage's directory inside the run directory. */
  readonly dir: string;
  /** Absolute paths of the declared inputs. */
  readonly inputs: Readonly<Record<string, string>>;
  /** Report progress; the stage name is filled in. */
  readonly progress: (event: Omit<ProgressEvent, 'stage'>) => void;
  readonly backend: string;
}

/** A pipeline stage: validated config in, files + metrics out, recorded in a manifest. */
export interface StageDefinition<S extends z.ZodTypeAny> {
  readonly name: string;
  /** Bump when the algorithm changes, so earlier outputs stop counting as current. */
  readonly version: number;
  readonly schema: S;
  /** Files this stage reads, by name (absolute or run-relative paths). */
  inputs(config: z.output<S>, store: RunStore): Record<string, string>;
  run(ctx: StageContext<z.output<S>>): Promise<StageOutputs>;
}

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

/**
 * Validate the config, skip if the recorded outputs are complete and current, otherwise run
 * the stage and write its manifest last (so a crash never leaves a manifest for partial work).
 */
export async function executeStage<S extends z.ZodTypeAny>(
  def: StageDefinition<S>, rawConfig: unknown, options: StageRunOptions,
): Promise<StageRunResult> {
  const config = parseConfig(def.schema, rawConfig, options.configSource ?? `${def.name} config`, options.fieldPrefix) as z.output<S>;
  const { store } = options;
  const configHash = hashJson({ stage: def.name, config });
  const inputPaths = Object.fromEntries(Object.entries(def.inputs(config, store)).map(([k, p]) => [k, store.abs(p)]));
  const inputs: Record<string, OutputRecord> = {};
  for (const [name, path] of Object.entries(inputPaths)) inputs[name] = await store.describeFile(path);

  const emit = (event: Omit<ProgressEvent, 'stage'>): void => options.progress({ stage: def.name, ...event });
  if (!options.force) {
    const status = await store.stageStatus(def.name, { stageVersion: def.version, configHash, inputs });
    if (status.current) {
      store.logEvent(def.name, 'skip');
      emit({ phase: 'skipped', message: 'outputs complete and current', metrics: status.manifest.metrics });
      return { stage: def.name, skipped: true, manifest: status.manifest };
    }
    emit({ phase: 'start', message: status.reason });
  }

  const startedAt = new Date();
  store.logEvent(def.name, 'start');
  let result: StageOutputs;
  try {
    result = await def.run({ config, store, dir: store.stageDir(def.name), inputs: inputPaths, progress: emit, backend: options.backend });
  } catch (err) {
    store.logEvent(def.name, 'fail', { error: (err as Error).message });
    throw err;
  }
  const outputs: Record<string, OutputRecord> = {};
  for (const [name, path] of Object.entries(result.outputs)) outputs[name] = await store.describeFile(path);
  // JSON has no NaN/Infinity (they become null): an undefined metric is left out, not recorded.
  const metrics = Object.fromEntries(Object.entries(result.metrics).filter(([, v]) => Number.isFinite(v)));
  const finishedAt = new Date();
  const manifest: StageManifest = {
    format: 'id3-stage-manifest/1',
    stage: def.name,
    stageVersion: def.version,
    configHash,
    config,
    inputs,
    outputs,
    metrics,
    backend: options.backend,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - startedAt.getTime(),
  };
  store.writeManifest(manifest);
  store.logEvent(def.name, 'complete', { durationMs: manifest.durationMs });
  emit({ phase: 'done', metrics });
  return { stage: def.name, skipped: false, manifest };
}
