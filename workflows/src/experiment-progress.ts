/**
 * Unfinished work of an experiment carried in its publish folder. A Table-1 row samples for
 * about two hours before its recognizer trains; where the runs directory does not outlive a
 * session (a fresh checkout, a new machine), only committed files do. So the shards of the
 * stages listed in CARRIED_STAGES — finished and partial alike — are packed into
 * `<publish>/progress/<row>/<stage>-<config hash>/<shard>.tar.gz` (one small file per shard,
 * rewritten only when it has grown), and an experiment that starts unpacks them into the first
 * run of each row it will run. The stages keep their own resume rules: a restored shard whose
 * work key still matches is skipped, a partial one resumes from its finished items, and work
 * done under other inputs is redone, never trusted.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { hashJson } from '@id3/core';
import { runsToStart, type ExperimentInput, type ExperimentPlan, type ExperimentRun } from './contracts';
import { runsDir } from './paths';
import { buildPipelineConfig, validateStageSection } from './pipeline-config';
import { stageRegistry } from './stages';

/** Sharded stages whose shards travel with the results: hours of work, about a megabyte per shard. */
export const CARRIED_STAGES: readonly string[] = ['sample'];

const INDEX_FORMAT = 'id3-experiment-progress/1';

/** One carried shard as the index records it. */
export interface CarriedShard {
  /** Files under the shard folder when it was packed (its progress: more files, more finished items). */
  readonly files: number;
  /** The shard had finished (its completion record was packed with it). */
  readonly done: boolean;
  /** The run it was packed from. */
  readonly from: string;
  readonly savedAt: string;
}

interface ProgressIndex {
  readonly format: typeof INDEX_FORMAT;
  readonly row: string;
  readonly stage: string;
  readonly configHash: string;
  /**
   * The sha256 of each upstream output the stage read where the shards were made (`prepare/crops32`):
   * when a later machine's upstream outputs differ, its stage redoes the carried work, and this says why.
   */
  inputs?: Record<string, string>;
  shards: Record<string, CarriedShard>;
}

/** What a save or restore did to one shard. */
export interface ProgressMove {
  readonly row: string;
  readonly stage: string;
  readonly shard: string;
  readonly run: string;
  readonly files: number;
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

/** The upstream outputs a run's stage reads, by `upstream/name`, with their sha256 from the run's manifests (those present). */
function upstreamHashes(run: ExperimentRun, stage: string): Record<string, string> {
  const def = stageRegistry().get(stage);
  const config = buildPipelineConfig(run.input);
  const hashes: Record<string, string> = {};
  for (const [upstream, names] of Object.entries(def?.reads?.(validateStageSection(config, stage)) ?? {})) {
    const path = join(runsDir(), run.runName, upstream, 'manifest.json');
    if (!existsSync(path)) continue;
    const outputs = (JSON.parse(readFileSync(path, 'utf8')) as { outputs?: Record<string, { sha256?: string }> }).outputs ?? {};
    for (const name of names) if (outputs[name]?.sha256) hashes[`${upstream}/${name}`] = outputs[name].sha256 ?? '';
  }
  return hashes;
}

/** Files under a folder, recursively (a shard's measure of progress). */
function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(join(dir, e.name)) : 1;
  return n;
}

const isDone = (shardDir: string): boolean => existsSync(join(shardDir, 'done.json'));

function readIndex(folder: string, row: string, stage: string, configHash: string): ProgressIndex {
  const path = join(folder, 'index.json');
  if (!existsSync(path)) return { format: INDEX_FORMAT, row, stage, configHash, shards: {} };
  const index = JSON.parse(readFileSync(path, 'utf8')) as ProgressIndex;
  if (index.format !== INDEX_FORMAT || index.configHash !== configHash)
    throw new Error(`${path}: not a progress index of ${stage} config ${configHash.slice(0, 16)} (format ${String(index.format)})`);
  return index;
}

function writeAtomic(path: string, data: string | Buffer): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** A shard folder as a gzipped tar that is the same bytes for the same files (sorted, no times or owners). */
function packShard(root: string, shard: string): Buffer {
  const tar = spawnSync(
    'tar',
    ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--format=gnu', '-cf', '-', '-C', root, shard],
    { maxBuffer: 1 << 30 },
  );
  // Status 1: a file changed while read (a shard still running); the archive holds a consistent older copy of it.
  if (tar.error || (tar.status !== 0 && tar.status !== 1))
    throw new Error(`packing ${join(root, shard)}: ${tar.error?.message ?? tar.stderr.toString().trim()}`);
  return gzipSync(tar.stdout, { level: 9 });
}

function unpackShard(archive: string, root: string): void {
  mkdirSync(root, { recursive: true });
  const tar = spawnSync('tar', ['-xf', '-', '-C', root], { input: gunzipSync(readFileSync(archive)), maxBuffer: 1 << 30 });
  if (tar.error || tar.status !== 0) throw new Error(`unpacking ${archive}: ${tar.error?.message ?? tar.stderr.toString().trim()}`);
}

/** Rows every planned run of which stands recorded in the publish folder's results.json. */
function finishedRows(plan: ExperimentPlan, published: string): string[] {
  const path = join(published, 'results.json');
  if (!existsSync(path)) return [];
  const results = (JSON.parse(readFileSync(path, 'utf8')) as { results?: { row?: string; seed?: number }[] }).results ?? [];
  const recorded = new Set(results.map((r) => `${r.row}/${r.seed}`));
  const rows = [...new Set(plan.runs.map((r) => r.row))];
  return rows.filter((row) => plan.runs.filter((r) => r.row === row).every((r) => recorded.has(`${r.row}/${r.seed}`)));
}

/**
 * Pack every run's shards of the carried stages that grew since they were last packed into the
 * publish folder (`published`, absolute). Per row and stage config the furthest copy wins (runs
 * of one row at several seeds share a pinned sampling stage). A row whose every run is recorded
 * in results.json needs its shards no more: its carried folder is removed. Returns what it packed
 * and the rows it cleared.
 */
export function saveExperimentProgress(plan: ExperimentPlan, published: string): { packed: ProgressMove[]; cleared: string[] } {
  const cleared = finishedRows(plan, published).filter((row) => existsSync(join(published, 'progress', row)));
  for (const row of cleared) rmSync(join(published, 'progress', row), { recursive: true, force: true });
  const packed: ProgressMove[] = [];
  for (const run of plan.runs.filter((r) => !cleared.includes(r.row))) {
    for (const stage of CARRIED_STAGES) {
      const root = shardsRoot(run.runName, stage);
      const configHash = existsSync(root) ? stageConfigHash(run, stage) : undefined;
      if (!configHash) continue;
      const folder = progressFolder(published, run.row, stage, configHash);
      const index = readIndex(folder, run.row, stage, configHash);
      let changed = false;
      for (const shard of readdirSync(root).sort()) {
        const dir = join(root, shard);
        if (!statSync(dir).isDirectory()) continue;
        const files = countFiles(dir);
        const done = isDone(dir);
        const before = index.shards[shard];
        if (files === 0 || (before && (before.done || (!done && before.files >= files)))) continue;
        mkdirSync(folder, { recursive: true });
        writeAtomic(join(folder, `${shard}.tar.gz`), packShard(root, shard));
        index.shards[shard] = { files, done, from: run.runName, savedAt: new Date().toISOString() };
        packed.push({ row: run.row, stage, shard, run: run.runName, files, done });
        changed = true;
      }
      if (changed) {
        index.inputs = upstreamHashes(run, stage);
        writeAtomic(join(folder, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
      }
    }
  }
  return { packed, cleared };
}

/**
 * Before an experiment runs: unpack the carried shards into the first run of each row it will
 * start, where that run's own copy of a shard is missing or behind (a finished local shard is
 * never replaced). Returns what it unpacked.
 */
export function restoreExperimentProgress(
  plan: ExperimentPlan,
  input: Pick<ExperimentInput, 'seeds' | 'rows'>,
  published: string,
): ProgressMove[] {
  const moved: ProgressMove[] = [];
  const firstOfRow = new Map<string, ExperimentRun>();
  for (const run of runsToStart(plan, input)) if (!firstOfRow.has(run.row)) firstOfRow.set(run.row, run);
  for (const run of firstOfRow.values()) {
    for (const stage of CARRIED_STAGES) {
      const configHash = stageConfigHash(run, stage);
      const folder = configHash && progressFolder(published, run.row, stage, configHash);
      if (!configHash || !folder || !existsSync(join(folder, 'index.json'))) continue;
      const index = readIndex(folder, run.row, stage, configHash);
      const root = shardsRoot(run.runName, stage);
      for (const [shard, carried] of Object.entries(index.shards).sort(([a], [b]) => a.localeCompare(b))) {
        const dir = join(root, shard);
        if (isDone(dir) || countFiles(dir) >= carried.files) continue;
        rmSync(dir, { recursive: true, force: true });
        unpackShard(join(folder, `${shard}.tar.gz`), resolve(root));
        moved.push({ row: run.row, stage, shard, run: run.runName, files: carried.files, done: carried.done });
      }
    }
  }
  return moved;
}
