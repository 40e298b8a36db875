/**
 * Unfinished work of an experiment carried in its publish folder. A Table-1 row samples for
 * about two hours before its recognizer trains; where the runs directory does not outlive a
 * session (a fresh checkout, a new machine), only committed files do. So the shards of the
 * stages listed in CARRIED_STAGES — finished and partial alike — are packed into
 * `<publish>/progress/<row>/<stage>-<config hash>/<shard>.tar.gz.NN` (one gzipped tar per shard, in parts
 * under the repository's 512 KB limit for files outside models/,
 * rewritten only when it has grown or was redone under other inputs), and an experiment that
 * starts unpacks them into the first run of each row it will run, where that run has no copy of
 * the shard yet. The stages keep their own resume rules: a restored shard whose work key still
 * matches is skipped, a partial one resumes from its finished items, and work done under other
 * inputs is redone, never trusted. Carrying is a speed-up only: a shard that cannot be unpacked
 * is reported and sampled again, it never stops the experiment.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { SHARD_ID, hashJson, readJsonFile, writeFileAtomic, writeJsonAtomic } from '@id3/core';
import { runsToStart, type ExperimentInput, type ExperimentPlan, type ExperimentRun } from './contracts';
import { runsDir } from './paths';
import { buildPipelineConfig, validateStageSection } from './pipeline-config';
import { stageRegistry } from './stages';

/**
 * A sharded stage whose shards travel with the results, and how to read a shard's progress:
 * its finished items are the JSON records in `items/`, each carrying the key of the config and
 * inputs it was made under (`sample`: `identities/<name>.json` with `key`). Hours of work, about
 * a megabyte per shard.
 */
export interface CarriedStage {
  readonly stage: string;
  readonly items: string;
}

export const CARRIED_STAGES: readonly CarriedStage[] = [{ stage: 'sample', items: 'identities' }];

const INDEX_FORMAT = 'id3-experiment-progress/1';
/** What a running stage leaves beside its files for an instant (atomic writes, write probes). */
const TRANSIENT = ['*.tmp-*', '.write-probe-*'];

/** One carried shard as the index records it. */
export interface CarriedShard {
  /** Finished items in it (their records). */
  readonly items: number;
  /** The key its newest record was made under (undefined: no record yet). */
  readonly key?: string;
  /** The shard had finished (its completion record was packed with it). */
  readonly done: boolean;
  /** The run it was packed from, and the sha256 of the upstream outputs that run's stage read. */
  readonly from: string;
  readonly inputs: Readonly<Record<string, string>>;
  readonly savedAt: string;
}

interface ProgressIndex {
  readonly format: typeof INDEX_FORMAT;
  readonly row: string;
  readonly stage: string;
  readonly configHash: string;
  shards: Record<string, CarriedShard>;
}

/** What a save or restore did to one shard. */
export interface ProgressMove {
  readonly row: string;
  readonly stage: string;
  readonly shard: string;
  readonly run: string;
  readonly items: number;
  readonly done: boolean;
}

const stageConfigHash = (run: ExperimentRun, stage: string): string | undefined => {
  const config = buildPipelineConfig(run.input);
  const stages = run.input.stages ?? config.stages;
  return stages.includes(stage) ? hashJson({ stage, config: validateStageSection(config, stage) }) : undefined;
};

/** Where a row's shards of one stage config are carried (the hash keeps differently configured stages apart). */
export function progressFolder(published: string, row: string, stage: string, configHash: string): string {
  return join(published, 'progress', row, `${stage}-${configHash.slice(0, 16)}`);
}

const shardsRoot = (runName: string, stage: string): string => join(runsDir(), runName, stage, 'shards');

/** A shard's finished items and the key of the newest one (what the stage would resume from). */
function shardProgress(dir: string, items: string): { items: number; key?: string; done: boolean } {
  const folder = join(dir, items);
  const records = (existsSync(folder) ? readdirSync(folder).filter((f) => f.endsWith('.json')) : []).map((f) => ({
    key: (readJsonFile(join(folder, f)) as { key?: unknown }).key,
    mtime: statSync(join(folder, f)).mtimeMs,
  }));
  const keyed = records.filter((r): r is { key: string; mtime: number } => typeof r.key === 'string');
  const key = keyed.reduce<{ key: string; mtime: number } | undefined>((a, r) => (!a || r.mtime >= a.mtime ? r : a), undefined)?.key;
  // Records of another key are redone by the stage: they are not progress under the newest one.
  const current = keyed.filter((r) => r.key === key).length;
  return { items: current, ...(key === undefined ? {} : { key }), done: existsSync(join(dir, 'done.json')) };
}

/** The upstream outputs a run's stage reads, by `upstream/name`, with their sha256 from the run's manifests (those present). */
function upstreamHashes(run: ExperimentRun, stage: string): Record<string, string> {
  const def = stageRegistry().get(stage);
  const config = buildPipelineConfig(run.input);
  const hashes: Record<string, string> = {};
  for (const [upstream, names] of Object.entries(def?.reads?.(validateStageSection(config, stage)) ?? {})) {
    const path = join(runsDir(), run.runName, upstream, 'manifest.json');
    if (!existsSync(path)) continue;
    const outputs = (readJsonFile(path) as { outputs?: Record<string, { sha256?: string }> }).outputs ?? {};
    for (const name of names) if (outputs[name]?.sha256) hashes[`${upstream}/${name}`] = outputs[name].sha256 ?? '';
  }
  return hashes;
}

function readIndex(folder: string, row: string, stage: string, configHash: string): ProgressIndex {
  const path = join(folder, 'index.json');
  if (!existsSync(path)) return { format: INDEX_FORMAT, row, stage, configHash, shards: {} };
  const index = readJsonFile(path) as ProgressIndex;
  if (index.format !== INDEX_FORMAT || index.configHash !== configHash || typeof index.shards !== 'object')
    throw new Error(`${path}: not a progress index of ${stage} config ${configHash.slice(0, 16)} (format ${String(index.format)})`);
  const bad = Object.keys(index.shards).find((id) => !SHARD_ID.test(id));
  if (bad !== undefined) throw new Error(`${path}: field 'shards': '${bad}' is not a shard id`);
  return index;
}

/** A shard folder as a gzipped tar, sorted and without times or owners (the same files give the same bytes here). */
function packShard(root: string, shard: string): Buffer {
  const tar = spawnSync(
    'tar',
    [
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--format=gnu',
      ...TRANSIENT.map((t) => `--exclude=${t}`),
      '-cf',
      '-',
      '-C',
      root,
      '--',
      shard,
    ],
    { maxBuffer: 1 << 30 },
  );
  // Status 1: a file changed while read (a shard still running); every file the stage writes is
  // renamed into place whole, so what was read is a consistent, older copy of it.
  if (tar.error || (tar.status !== 0 && tar.status !== 1))
    throw new Error(`packing ${join(root, shard)}: ${tar.error?.message ?? tar.stderr.toString().trim()}`);
  return gzipSync(tar.stdout, { level: 9 });
}

/** Largest part of an archive: files outside models/ stay under the repository's 512 KB limit. */
const PART_BYTES = 448 * 1024;
const partsOf = (archive: string): string[] => {
  const dir = dirname(archive);
  const prefix = `${basename(archive)}.`;
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.startsWith(prefix) && /^\d{2}$/.test(f.slice(prefix.length)))
        .sort()
        .map((f) => join(dir, f))
    : [];
};

/** An archive as `<archive>.00`, `.01`, … (the old parts removed first). */
function writeParts(archive: string, data: Buffer): void {
  for (const part of partsOf(archive)) rmSync(part);
  for (let i = 0; i * PART_BYTES < data.length || i === 0; i++)
    writeFileAtomic(`${archive}.${String(i).padStart(2, '0')}`, data.subarray(i * PART_BYTES, (i + 1) * PART_BYTES));
}

function unpackShard(archive: string, root: string, shard: string): void {
  mkdirSync(root, { recursive: true });
  // Only the shard's own folder comes out of the archive, whatever else it holds.
  let data: Buffer;
  try {
    const parts = partsOf(archive);
    if (parts.length === 0) throw new Error('no parts');
    data = gunzipSync(Buffer.concat(parts.map((p) => readFileSync(p))));
  } catch (err) {
    throw new Error(`unpacking ${archive}: ${(err as Error).message}`);
  }
  const tar = spawnSync('tar', ['-xf', '-', '-C', root, '--', shard], { input: data, maxBuffer: 1 << 30 });
  if (tar.error || tar.status !== 0) throw new Error(`unpacking ${archive}: ${tar.error?.message ?? tar.stderr.toString().trim()}`);
}

/** Rows every planned run of which stands recorded in the publish folder's results.json. */
function finishedRows(plan: ExperimentPlan, published: string): string[] {
  const path = join(published, 'results.json');
  if (!existsSync(path)) return [];
  const recorded = new Set(
    ((readJsonFile(path) as { results?: { row?: string; seed?: number }[] }).results ?? []).map((r) => `${r.row}/${r.seed}`),
  );
  const rows = [...new Set(plan.runs.map((r) => r.row))];
  return rows.filter((row) => plan.runs.filter((r) => r.row === row).every((r) => recorded.has(`${r.row}/${r.seed}`)));
}

/**
 * Pack every run's shards of the carried stages into the publish folder (`published`, absolute),
 * each when it is new there, has more finished items than the carried copy, finished since, or
 * was made under another key than the carried copy (this machine's inputs differ: its work is
 * what will resume here). Runs of one row at several seeds share a pinned sampling stage: the
 * furthest copy wins. A row whose every run is recorded in results.json needs its shards no
 * more: its carried folder is removed and nothing is packed for it. All rows and seeds of the plan.
 */
export function saveExperimentProgress(plan: ExperimentPlan, published: string): { packed: ProgressMove[]; cleared: string[] } {
  const finished = finishedRows(plan, published);
  const cleared = finished.filter((row) => existsSync(join(published, 'progress', row)));
  for (const row of cleared) rmSync(join(published, 'progress', row), { recursive: true, force: true });
  const packed: ProgressMove[] = [];
  for (const run of plan.runs.filter((r) => !finished.includes(r.row))) {
    for (const { stage, items } of CARRIED_STAGES) {
      const root = shardsRoot(run.runName, stage);
      const configHash = existsSync(root) ? stageConfigHash(run, stage) : undefined;
      if (!configHash) continue;
      const folder = progressFolder(published, run.row, stage, configHash);
      const index = readIndex(folder, run.row, stage, configHash);
      const inputs = upstreamHashes(run, stage);
      let changed = false;
      for (const shard of readdirSync(root).sort()) {
        const dir = join(root, shard);
        if (!SHARD_ID.test(shard) || !statSync(dir).isDirectory()) continue;
        const local = shardProgress(dir, items);
        const carried = index.shards[shard];
        const newer =
          local.items > 0 &&
          (carried === undefined ||
            carried.key !== local.key ||
            local.items > carried.items ||
            (local.done && !carried.done && local.items >= carried.items));
        if (!newer) continue;
        mkdirSync(folder, { recursive: true });
        writeParts(join(folder, `${shard}.tar.gz`), packShard(root, shard));
        index.shards[shard] = { ...local, from: run.runName, inputs, savedAt: new Date().toISOString() };
        packed.push({ row: run.row, stage, shard, run: run.runName, items: local.items, done: local.done });
        changed = true;
      }
      if (changed) writeJsonAtomic(join(folder, 'index.json'), index);
    }
  }
  return { packed, cleared };
}

/**
 * Before an experiment runs: unpack the carried shards into the first run of each row it will
 * start, each where that run has no folder for the shard (a fresh checkout; a local shard, even
 * a partial one, is this machine's own and may be running). A shard that cannot be unpacked is
 * listed in `failed` and left to be sampled again. Returns what it unpacked.
 */
export function restoreExperimentProgress(
  plan: ExperimentPlan,
  input: Pick<ExperimentInput, 'seeds' | 'rows'>,
  published: string,
): { restored: ProgressMove[]; failed: string[] } {
  const restored: ProgressMove[] = [];
  const failed: string[] = [];
  const firstOfRow = new Map<string, ExperimentRun>();
  for (const run of runsToStart(plan, input)) if (!firstOfRow.has(run.row)) firstOfRow.set(run.row, run);
  for (const run of firstOfRow.values()) {
    for (const { stage } of CARRIED_STAGES) {
      const configHash = stageConfigHash(run, stage);
      const folder = configHash && progressFolder(published, run.row, stage, configHash);
      if (!configHash || !folder || !existsSync(join(folder, 'index.json'))) continue;
      let index: ProgressIndex;
      try {
        index = readIndex(folder, run.row, stage, configHash);
      } catch (err) {
        failed.push((err as Error).message);
        continue;
      }
      const root = shardsRoot(run.runName, stage);
      for (const [shard, carried] of Object.entries(index.shards).sort(([a], [b]) => a.localeCompare(b))) {
        if (existsSync(join(root, shard))) continue;
        try {
          unpackShard(join(folder, `${shard}.tar.gz`), root, shard);
          restored.push({ row: run.row, stage, shard, run: run.runName, items: carried.items, done: carried.done });
        } catch (err) {
          rmSync(join(root, shard), { recursive: true, force: true }); // half unpacked: sampled again instead
          failed.push((err as Error).message);
        }
      }
    }
  }
  return { restored, failed };
}
