/**
 * Experiments: `experiments/<name>.json` names a profile, seeds and rows (each a set of config
 * overrides); every row × seed is one pipeline run `<experiment>-<row>-s<seed>`. This module
 * validates the file, plans the runs, seeds a run with its siblings' finished stages, and keeps
 * the experiment's results.json + report.md up to date as rows finish.
 */
import {
  copyFileSync,
  cpSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  hashJson,
  isInvalidInput,
  mergeConfig,
  parseConfig,
  readJsonFile,
  writeFileAtomic,
  writeJsonAtomic,
  type StageManifest,
} from '@id3/core';
import {
  PAPER_BENCHMARKS,
  cochranQ,
  largestPoseDifference,
  mcnemar,
  mcnemarScaledP,
  seedNoiseDispersion,
  type McNemarResult,
  type PairResults,
  type PaperBenchmark,
} from '@id3/eval';
import type { ExperimentInput, ExperimentPlan, ExperimentRun, PipelineResult, ReuseSummary } from './contracts';
import { REPO_ROOT, runsDir } from './paths';
import { buildPipelineConfig, planRun, validateStageSection, type PipelineConfig } from './pipeline-config';
import { stageRegistry } from './stages';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$/;

const rowSchema = z
  .object({
    name: z.string().regex(NAME, 'a row name is 1-48 letters, digits, ".", "_" or "-"'),
    description: z.string().optional(),
    /** Deep-merged over the experiment's shared overrides (then the seed over both). */
    overrides: z.record(z.unknown()).default({}),
    /** Stages this row runs (default: the config's `stages`). */
    stages: z.array(z.string()).nonempty().optional(),
    /**
     * This row's training seeds, when not the experiment's: more seeds where a difference is close
     * to call (the baseline's seeds must cover every other row's, so each seed has its comparison).
     */
    seeds: z.array(z.number().int().nonnegative()).nonempty().optional(),
    /** Kept in the file but not run (a knob that does not exist yet): why. */
    pending: z.string().min(1).optional(),
    /** Also compare this row with another row of the same seed (e.g. the crowded pair). */
    compareTo: z.string().optional(),
    /** Pre-registered: the expected direction against the baseline and why, written before running. */
    expected: z.string().min(1).optional(),
  })
  .strict();

export const experimentSchema = z
  .object({
    description: z.string(),
    profile: z.string(),
    seeds: z.array(z.number().int().nonnegative()).nonempty(),
    /** The row every other row is compared with (McNemar per seed). */
    baseline: z.string().default('ID3'),
    /** Eval benchmark the table reports (default: the first whose name starts with "LFW"). */
    benchmark: z.string().optional(),
    /** Shared by every row (under the row's own overrides). */
    overrides: z.record(z.unknown()).default({}),
    rows: z.array(rowSchema).nonempty(),
    /** Repository-relative folder results.json, report.md, configs and figures are mirrored into after each run. */
    publish: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((e, ctx) => {
    const names = e.rows.map((r) => r.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['rows', i, 'name'], message: `row '${n}' is named twice` });
    });
    const listedOnce = (seeds: readonly number[], path: (string | number)[]): void =>
      seeds.forEach((s, i) => {
        if (seeds.indexOf(s) !== i) ctx.addIssue({ code: 'custom', path: [...path, i], message: `seed ${s} is listed twice` });
      });
    listedOnce(e.seeds, ['seeds']);
    e.rows.forEach((r, i) => r.seeds && listedOnce(r.seeds, ['rows', i, 'seeds']));
    const base = e.rows.find((r) => r.name === e.baseline);
    if (!base) ctx.addIssue({ code: 'custom', path: ['baseline'], message: `no row is named '${e.baseline}' (rows: ${names.join(', ')})` });
    else if (base.pending) ctx.addIssue({ code: 'custom', path: ['baseline'], message: `the baseline row '${e.baseline}' is pending` });
    else
      e.rows.forEach((r, i) => {
        const baseSeeds = base.seeds ?? e.seeds;
        // A row without seeds of its own runs the experiment's: those too need the baseline.
        (r.seeds ?? e.seeds).forEach((s, j) => {
          if (!baseSeeds.includes(s))
            ctx.addIssue({
              code: 'custom',
              path: r.seeds ? ['rows', i, 'seeds', j] : ['seeds', j],
              message: `the baseline '${e.baseline}' does not run seed ${s} (its seeds: ${baseSeeds.join(', ')}), so that seed${r.seeds ? '' : ` of row '${r.name}'`} would have nothing to be compared with`,
            });
        });
      });
    e.rows.forEach((r, i) => {
      if (r.compareTo === undefined) return;
      const other = e.rows.find((o) => o.name === r.compareTo);
      const issue = (message: string): void => ctx.addIssue({ code: 'custom', path: ['rows', i, 'compareTo'], message });
      if (!other || other.pending) issue(`no runnable row is named '${r.compareTo}'`);
      else if (other === r) issue('a row cannot be compared with itself');
      else if (other.name === e.baseline) issue(`every row is already compared with the baseline '${e.baseline}'`);
      else {
        const theirs = other.seeds ?? e.seeds;
        const unpaired = (r.seeds ?? e.seeds).filter((s) => !theirs.includes(s));
        if (unpaired.length)
          issue(
            `'${other.name}' does not run seed ${unpaired.join(', ')} (its seeds: ${theirs.join(', ')}), so that seed would have nothing to be compared with`,
          );
      }
    });
  });
export type Experiment = z.output<typeof experimentSchema>;

/** The seeds a row runs at: its own, else the experiment's. */
const seedsOfRow = (e: Experiment, row: Experiment['rows'][number]): readonly number[] => row.seeds ?? e.seeds;

/** The folder of experiment files (`<repo>/experiments`; ID3_EXPERIMENTS_DIR overrides). */
export function experimentsDir(): string {
  return resolve(process.env.ID3_EXPERIMENTS_DIR ?? join(REPO_ROOT, 'experiments'));
}

/** Read and validate `experiments/<name>.json`; errors name the file and the field. */
export function loadExperiment(name: string): { path: string; experiment: Experiment } {
  if (typeof name !== 'string' || !NAME.test(name))
    throw new InvalidInputError(`field 'name': experiment name '${String(name)}' is not a plain name`, { field: 'name' });
  const path = join(experimentsDir(), `${name}.json`);
  if (!existsSync(path)) {
    const known = existsSync(experimentsDir())
      ? readdirSync(experimentsDir())
          .filter((f) => f.endsWith('.json'))
          .map((f) => f.slice(0, -5))
      : [];
    throw new InvalidInputError(`unknown experiment '${name}': no ${path} (known: ${known.join(', ') || 'none'})`, {
      field: 'name',
      file: path,
    });
  }
  const experiment = parseConfig(experimentSchema, readJsonFile(path), path) as Experiment;
  if (experiment.publish !== undefined) publishFolder(experiment.publish, path);
  return { path, experiment };
}

/** The root a `publish` folder must stay inside: the repository (ID3_REPO_ROOT overrides it, for tests). */
function publishRoot(): string {
  return resolve(process.env.ID3_REPO_ROOT ?? REPO_ROOT);
}

/** A plan's publish folder, absolute (undefined when it publishes nowhere). */
export function publishedFolderOf(plan: Pick<ExperimentPlan, 'name' | 'publish'>): string | undefined {
  return plan.publish === undefined ? undefined : publishFolder(plan.publish, join(experimentsDir(), `${plan.name}.json`));
}

/** An experiment's `publish` folder as an absolute path; refused unless relative and inside the repository. */
export function publishFolder(publish: string, file: string): string {
  const root = publishRoot();
  const folder = resolve(root, publish);
  const inside = relative(root, folder);
  if (isAbsolute(publish) || inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside))
    throw new InvalidInputError(
      `${file}: field 'publish': '${publish}' is not a folder inside the repository ${root} (give a repository-relative path such as "docs/table1")`,
      { file, field: 'publish' },
    );
  return folder;
}

const benchmarkKey = (name: string): string => name.replace(/[^A-Za-z0-9]/g, '');

/** The eval benchmark a config reports on, by the experiment's name or the first LFW one. */
function benchmarkOf(config: PipelineConfig, wanted: string | undefined): { name: string; spec: unknown } | undefined {
  const benches = ((config.eval as { benchmarks?: { name?: string }[] } | undefined)?.benchmarks ?? []).filter((b) => b.name);
  const b = benches.find((x) => (wanted ? x.name === wanted : x.name?.startsWith('LFW')));
  return b?.name ? { name: b.name, spec: b } : undefined;
}

/**
 * Validate an experiment and every run it makes (each row's config exactly as its pipeline will
 * plan it), in the order they run: the baseline row first, so its finished stages are there to
 * reuse, then row by row: a row's seeds follow each other, so the second finds the first's pinned
 * sample on this machine and the row's result is whole hours sooner. Each run's `dataKey` names
 * the data it trains on, so that rows run side by side never start two runs making the same set.
 */
export function planExperiment(input: ExperimentInput): ExperimentPlan {
  const { path, experiment: e } = loadExperiment(input?.name);
  const anySeed = [...new Set(e.rows.filter((r) => !r.pending).flatMap((r) => seedsOfRow(e, r)))].sort((a, b) => a - b);
  for (const [i, seed] of (input.seeds ?? []).entries()) {
    if (!anySeed.includes(seed))
      throw new InvalidInputError(`field 'seeds[${i}]': seed ${seed} is not one of ${path}'s seeds (${anySeed.join(', ')})`, {
        field: `seeds[${i}]`,
      });
  }
  for (const field of ['seeds', 'rows'] as const)
    if (input[field]?.length === 0)
      throw new InvalidInputError(`field '${field}': empty; name at least one, or leave it out for all of ${path}'s ${field}`, { field });
  for (const [i, name] of (input.rows ?? []).entries()) {
    const row = e.rows.find((r) => r.name === name);
    if (!row || row.pending)
      throw new InvalidInputError(
        `field 'rows[${i}]': ${row ? `row '${name}' is pending in ${path} (${row.pending})` : `no row '${name}' in ${path}`}; its rows that run: ${e.rows
          .filter((r) => !r.pending)
          .map((r) => r.name)
          .join(', ')}`,
        { field: `rows[${i}]` },
      );
  }
  const rows = [...e.rows.filter((r) => r.name === e.baseline), ...e.rows.filter((r) => r.name !== e.baseline)];
  const runs: ExperimentRun[] = [];
  let benchmark: { name: string; spec: unknown; row: string } | undefined;
  const order = rows.filter((r) => !r.pending).flatMap((row) => seedsOfRow(e, row).map((seed) => ({ row, seed })));
  for (const { row, seed } of order) {
    const i = e.rows.indexOf(row);
    const runName = `${input.name}-${row.name}-s${seed}`;
    const pipelineInput = {
      profile: e.profile,
      overrides: mergeConfig(mergeConfig(e.overrides, row.overrides), { seed }) as Record<string, unknown>,
      runName,
      ...(row.stages ? { stages: row.stages } : {}),
      ...(input.force ? { force: true } : {}),
      ...(input.timing ? { timing: input.timing } : {}),
    };
    const where = `${path}: field 'rows[${i}]' (row '${row.name}', seed ${seed})`;
    let config: PipelineConfig;
    let stages: readonly string[];
    try {
      config = buildPipelineConfig(pipelineInput);
      stages = planRun(pipelineInput).stages;
    } catch (err) {
      if (isInvalidInput(err)) throw new InvalidInputError(`${where}: ${(err as Error).message}`, { file: path, field: `rows[${i}]` });
      throw err;
    }
    if (!stages.includes('eval') || !stages.includes('fr-train'))
      throw new InvalidInputError(
        `${where}: a row must train a recognizer and score it (stages 'fr-train' and 'eval'); it runs ${stages.join(', ')}`,
        {
          file: path,
          field: `rows[${i}].stages`,
        },
      );
    const bench = benchmarkOf(config, e.benchmark);
    if (!bench)
      throw new InvalidInputError(
        `${where}: eval has no benchmark ${e.benchmark ? `named '${e.benchmark}'` : 'whose name starts with "LFW"'}`,
        {
          file: path,
          field: 'benchmark',
        },
      );
    // McNemar pairs two models on the same pairs: every row must score the same benchmark.
    if (benchmark && hashJson(benchmark.spec) !== hashJson(bench.spec))
      throw new InvalidInputError(
        `${where}: eval benchmark '${bench.name}' differs from row '${benchmark.row}' (${JSON.stringify(bench.spec)})`,
        {
          file: path,
          field: `rows[${i}].overrides.eval`,
        },
      );
    benchmark ??= { ...bench, row: row.name };
    runs.push({
      row: row.name,
      seed,
      runName,
      input: pipelineInput,
      configHash: resultsConfigHash(config),
      ...(row.compareTo ? { compareTo: row.compareTo } : {}),
      dataKey: dataKeyOf(config, stages),
    });
  }
  return {
    name: input.name,
    baseline: e.baseline,
    benchmark: benchmark?.name ?? '',
    runs,
    pending: e.rows.filter((r) => r.pending).map((r) => ({ row: r.name, why: r.pending ?? '' })),
    rows: e.rows.map((r) => ({ row: r.name, ...(r.expected ? { expected: r.expected } : {}) })),
    ...(e.publish ? { publish: e.publish } : {}),
    source: readFileSync(path, 'utf8'),
    ...adoptedField(
      input.force ? [] : adoptRecordedRuns(input.name, e.publish === undefined ? undefined : publishFolder(e.publish, path), runs),
    ),
  };
}

/**
 * What a run trains on, as a hash: the stages it runs before `fr-train`, each with its version and
 * validated config section — the same stages with the same configs and versions make the same
 * outputs (what reusing a sibling's stages rests on too).
 */
function dataKeyOf(config: PipelineConfig, stages: readonly string[]): string {
  const registry = stageRegistry();
  const upstream = registry.names.slice(0, registry.names.indexOf('fr-train')).filter((s) => stages.includes(s));
  return hashJson(upstream.map((stage) => ({ stage, version: registry.get(stage)?.version, config: validateStageSection(config, stage) })));
}

/**
 * results.json lists runs seed by seed (the baseline first within each), whatever order they ran
 * in (row by row now, seed by seed in plans made before), so the file reads the same either way.
 */
export function resultsOrder<T extends Pick<ExperimentRun, 'seed'>>(runs: readonly T[]): T[] {
  const seeds = [...new Set(runs.map((r) => r.seed))];
  // Array.prototype.sort is stable: within a seed, the plan's row order stays.
  return [...runs].sort((a, b) => seeds.indexOf(a.seed) - seeds.indexOf(b.seed));
}

/**
 * What a recorded entry's config must equal to stand: the resolved pipeline config without its
 * prose (a profile's description is edited for readers, and that changes no result).
 */
export function resultsConfigHash(config: PipelineConfig): string {
  const rest: Record<string, unknown> = { ...(config as Record<string, unknown>) };
  delete rest.description;
  return hashJson(rest);
}

const adoptedField = (adopted: readonly string[]): { adopted?: readonly string[] } => (adopted.length ? { adopted } : {});

/**
 * Whether the entry's own eval is in its run directory on this machine: an eval manifest whose
 * pairs file is the recorded one (an older or newer eval there is another result; entries
 * recorded before the hash was kept take any finished eval).
 */
function entryIsHere(r: ExperimentRowResult): boolean {
  const m = readManifestAt(resolve(runsDir(), r.runName), 'eval');
  const pairs = m?.outputs[`pairs_${benchmarkKey(r.benchmark)}`];
  return pairs !== undefined && (r.pairsSha256 == null || pairs.sha256 === r.pairsSha256);
}

/** Whether any stage of the run finished in its run directory on this machine. */
function runHasStages(runName: string): boolean {
  const dir = resolve(runsDir(), runName);
  return stageRegistry().names.some((stage) => readManifestAt(dir, stage) !== undefined);
}

/** A copy beside results.json as recorded in a committed file: a plain file in its folder, nothing else. */
const plainCopy = (path: unknown, folder: string): path is string =>
  typeof path === 'string' && new RegExp(`^${folder}/[A-Za-z0-9._-]+$`).test(path) && !path.includes('..');

/** The versions of the run's stages now (what a recorded entry's stageVersions must equal to stand). */
function currentStageVersions(stages: readonly string[]): Record<string, number> {
  const registry = stageRegistry();
  return Object.fromEntries(
    stages.flatMap((stage) => {
      const version = registry.get(stage)?.version;
      return version === undefined ? [] : [[stage, version]];
    }),
  );
}

/**
 * The runs whose results stand recorded while their run directories are gone: a fresh checkout
 * of the repository, where the published folder is committed and the runs directory is scratch.
 * With no results here yet, the published folder (`published`, absolute) is first copied in
 * (results.json last, so an interrupted copy is redone), and the table resumes from what was
 * committed instead of recomputing days of rows. A run is adopted when its entry has the planned
 * config, was made by the stage versions of today's code, has its per-pair outcomes beside
 * results.json (later rows are tested against them), and no stage of the run is on this machine;
 * a run with stages here reruns as before, finding its current stages and skipping them.
 */
export function adoptRecordedRuns(name: string, published: string | undefined, runs: readonly ExperimentRun[]): string[] {
  const dir = join(runsDir(), name);
  const paths = experimentResultsPaths(name);
  if (published !== undefined && !existsSync(paths.results) && existsSync(join(published, 'results.json'))) {
    const results = join(published, 'results.json');
    // Carried unfinished work stays in the publish folder (it is unpacked into the runs that need it).
    const progress = join(published, 'progress');
    cpSync(published, dir, { recursive: true, filter: (src) => src !== results && src !== progress });
    copyFileSync(results, paths.results);
  }
  const recorded = readRecordedResults(paths.results);
  return runs
    .filter((run) => {
      const entry = recorded.find((r) => r.row === run.row && r.seed === run.seed);
      const versions = entry?.stageVersions;
      return (
        entry?.configHash === run.configHash &&
        versions != null &&
        Object.keys(versions).length > 0 &&
        hashJson(versions) === hashJson(currentStageVersions(Object.keys(versions))) &&
        plainCopy(entry.pairs, 'pairs') &&
        existsSync(join(dir, entry.pairs)) &&
        !runHasStages(run.runName)
      );
    })
    .map((run) => run.runName);
}

/** The entries of a results.json (none when it is missing or of another format). */
function readRecordedResults(path: string): ExperimentRowResult[] {
  if (!existsSync(path)) return [];
  const old = readJsonFile(path) as Partial<ExperimentResults>;
  return old.format === 'id3-experiment-results/1' && Array.isArray(old.results) ? old.results : [];
}

// ── reusing finished stages ──────────────────────────────────────────────────────────────────

function readManifestAt(runDir: string, stage: string): StageManifest | undefined {
  const path = join(runDir, stage, 'manifest.json');
  if (!existsSync(path)) return undefined;
  try {
    const m = JSON.parse(readFileSync(path, 'utf8')) as StageManifest;
    return m.format === 'id3-stage-manifest/1' ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Mirror a finished stage folder: hard links (no extra disk; a stage that later reruns here is
 * unshared first, see unshareStage), or a copy with the same mtimes where links are impossible
 * (another filesystem). Built beside the target and renamed into place, so a half-made copy is
 * never taken for a stage folder.
 */
function mirrorStage(from: string, to: string, copy = false): void {
  const tmp = `${to}.reuse-${process.pid}-${randomBytes(4).toString('hex')}`;
  const walk = (src: string, dst: string): void => {
    mkdirSync(dst, { recursive: true });
    for (const entry of readdirSync(src, { withFileTypes: true })) {
      if (/\.tmp-\d+-[0-9a-f]+$/.test(entry.name)) continue; // someone's write in flight
      const s = join(src, entry.name);
      const d = join(dst, entry.name);
      if (entry.isDirectory()) walk(s, d);
      else if (entry.isFile()) {
        try {
          if (copy) throw new Error('copy');
          linkSync(s, d);
        } catch {
          copyFileSync(s, d);
          const st = statSync(s);
          utimesSync(d, st.atime, st.mtime); // folder inputs are hashed by listing, mtimes included
        }
      }
    }
  };
  try {
    walk(from, tmp);
    rmSync(to, { recursive: true, force: true });
    renameSync(tmp, to);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Give a stage folder that is about to be rewritten its own copy of every file it shares with
 * another run by hard link: most writes are temp + rename (which only replaces this run's link),
 * but a few write in place (the sampler's card), and those must not reach the sibling's files.
 */
function unshareStage(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) unshareStage(path);
    else if (entry.isFile() && statSync(path).nlink > 1) {
      const tmp = `${path}.unshare-${process.pid}-${randomBytes(4).toString('hex')}`;
      copyFileSync(path, tmp);
      const st = statSync(path);
      utimesSync(tmp, st.atime, st.mtime);
      renameSync(tmp, path);
    }
  }
}

/**
 * Before a run's pipeline starts, walk its stages in order. A stage whose own manifest still
 * matches (stage version, config hash, and input hashes = its upstream outputs in this run) is
 * left alone. Any other is taken from a sibling run whose manifest has this run's stage version,
 * config hash and input hashes (the upstream outputs as they are in this run, after earlier
 * stages were taken): the pipeline's stage then finds its outputs current and skips. A stage
 * that will run here (no match, an upstream that will run, or `force`) gets its folder unshared
 * first. Anything that does not match after all (a changed external folder, a touched file) is
 * simply recomputed by its stage.
 *
 * After the siblings, any other run on this machine is searched the same way (e.g. the sampling
 * run a profile made before the experiment started: hours of work with the same config and
 * inputs). Those stages are copied, not linked: a run outside the experiment may rerun a stage in
 * place later, and nothing unshares it first.
 */
export function reuseFinishedStages(run: ExperimentRun, siblings: readonly string[]): ReuseSummary {
  const reused: Record<string, string> = {};
  const registry = stageRegistry();
  const config = buildPipelineConfig(run.input);
  const wanted = run.input.stages ?? config.stages;
  const runDir = resolve(runsDir(), run.runName);
  const willRun = new Set<string>();
  let otherRuns: string[] | undefined;
  const others = (): string[] =>
    (otherRuns ??= existsSync(runsDir())
      ? readdirSync(runsDir(), { withFileTypes: true })
          .filter((e) => e.isDirectory() && e.name !== run.runName && !siblings.includes(e.name) && !e.name.includes('.reuse-'))
          .map((e) => e.name)
          .sort()
      : []);
  for (const stage of registry.names.filter((s) => wanted.includes(s))) {
    const def = registry.get(stage);
    if (!def) continue;
    const section = validateStageSection(config, stage);
    const configHash = hashJson({ stage, config: section });
    const reads = Object.entries(def.reads?.(section) ?? {});
    // What the stage would read here: its upstream outputs' hashes in this run (unknown while an upstream will rerun).
    const inputs: Record<string, string> = {};
    let known = !run.input.force && reads.every(([upstream]) => !willRun.has(upstream));
    for (const [upstream, names] of reads) {
      const m = readManifestAt(runDir, upstream);
      for (const name of names) {
        const hash = m?.outputs[name]?.sha256;
        if (hash) inputs[name] = hash;
        else known = false;
      }
    }
    const matches = (m: StageManifest | undefined): boolean =>
      known &&
      m !== undefined &&
      m.stageVersion === def.version &&
      m.configHash === configHash &&
      Object.entries(inputs).every(([name, hash]) => m.inputs[name]?.sha256 === hash);
    if (matches(readManifestAt(runDir, stage))) continue;
    const sibling = siblings.find((s) => matches(readManifestAt(resolve(runsDir(), s), stage)));
    const outsider = sibling ? undefined : others().find((s) => matches(readManifestAt(resolve(runsDir(), s), stage)));
    if (sibling || outsider) {
      const from = (sibling ?? outsider) as string;
      mirrorStage(join(runsDir(), from, stage), join(runDir, stage), outsider !== undefined);
      reused[stage] = from;
      writeFileAtomic(join(runDir, 'reused.json'), `${JSON.stringify({ ...readReused(runDir), [stage]: from }, null, 2)}\n`);
    } else {
      willRun.add(stage);
      unshareStage(join(runDir, stage));
      // It runs here now: a record of having taken it from another run would misname its source.
      const { [stage]: stale, ...rest } = readReused(runDir);
      if (stale !== undefined) writeFileAtomic(join(runDir, 'reused.json'), `${JSON.stringify(rest, null, 2)}\n`);
    }
  }
  return { runName: run.runName, reused };
}

/** Stage → sibling run it was taken from, as recorded in `<run>/reused.json`. */
export function readReused(runDir: string): Record<string, string> {
  const path = join(runDir, 'reused.json');
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>) : {};
}

// ── results ──────────────────────────────────────────────────────────────────────────────────

/** Accuracy per column of the paper's Table 1 (LFW, CFP-FP, CPLFW, AgeDB-30, CALFW). */
export type PaperAccuracies = Readonly<Partial<Record<PaperBenchmark, number>>>;

/** A run's figures shown beside the report, by name: where each lies in the run directory. */
const RUN_FIGURES = {
  'training-curve': 'fr-train/training-curve.png',
  grid: 'sample/card/grid.png',
  similarity: 'sample/card/similarity.png',
} as const;
type RunFigure = keyof typeof RUN_FIGURES;

/** Discordant pairs of a McNemar test: b = the reference row right, this row wrong; c = the reverse. */
interface Discordant {
  readonly b: number;
  readonly c: number;
  readonly pChi2: number;
}

/**
 * One row's recognizers at two of its seeds tested against each other on the same pairs: b = the
 * earlier seed right and the later wrong, c = the reverse, p exact. How much the training seed
 * alone moves the row: the yardstick its same-seed tests against the baseline are read against.
 */
export interface SeedToSeedTest {
  readonly seeds: readonly [number, number];
  readonly b: number;
  readonly c: number;
  readonly p: number;
}

/**
 * One row's recognizers at all its finished seeds tested together on the same pairs: Cochran's Q
 * (for two seeds, the seed-to-seed test's (c − b)² / (b + c)) on seeds − 1 degrees of freedom. One
 * statistic per row, since tests 0→1 and 1→2 share a model: what the pooled seed noise sums.
 */
export interface SeedNoiseTest {
  readonly seeds: readonly number[];
  readonly q: number;
  readonly df: number;
  readonly p: number;
}

/** A sampled set's dataset card, in numbers (the sample stage's metrics). */
export interface TrainingSetCard {
  readonly identities: number;
  /** Images kept, of those generated; the rest rejected as off-identity (teacher) or as no face (landmark check). */
  readonly images: number;
  readonly generated: number;
  readonly rejectedSimilarity: number;
  readonly rejectedFace: number;
  /** Verification of the set's own same- vs different-identity pairs: by the teacher, and by the card's independent embedder. */
  readonly teacherVerificationAccuracy: number | null;
  readonly checkVerificationAccuracy: number | null;
  /** Requested attribute against the attribute read back from the images (Pearson r). */
  readonly yawCorrelation: number | null;
  readonly ageCorrelation: number | null;
}

/** One row at one seed in results.json. */
export interface ExperimentRowResult {
  readonly row: string;
  readonly seed: number;
  readonly runName: string;
  readonly configHash: string;
  readonly benchmark: string;
  /** Mean accuracy over the benchmark's folds, and its std over folds (insightface protocol). */
  readonly lfwAccuracy: number;
  readonly lfwStd: number;
  /** TAR at FAR = 1e-3 on the benchmark (eval's `<key>_tarAtFar1e3`); null in entries recorded before it was. */
  readonly tarAtFar1e3: number | null;
  /** Accuracy on each of the paper's benchmarks the eval scored; null in entries recorded before it was. */
  readonly benchmarks: PaperAccuracies | null;
  /** The training set the recognizer saw (after fr-train's selection). */
  readonly identities: number;
  readonly imagesPerIdentity: number;
  readonly trainImages: number;
  /**
   * The recognizer on its own training set (fr-train's metrics): accuracy on its last batches, and
   * on held-out images of the training identities (one each, nearest class centre). A wide gap
   * between them says new images of a training identity are not recognised as it: the set's
   * identities are not consistent. Null in entries recorded before these were, when their run is gone.
   */
  readonly frTrainBatchAccuracy?: number | null;
  readonly frTrainValidationAccuracy?: number | null;
  /**
   * The synthetic set the recognizer trained on, as its sample stage's dataset card measured it;
   * null for a row without a sample stage, and for entries recorded before this was whose run is gone.
   */
  readonly trainingSetCard?: TrainingSetCard | null;
  /** Exact McNemar p against the baseline row of the same seed (null for the baseline itself or before it finished). */
  readonly mcnemarPVsID3: number | null;
  /** Discordant pairs: b = baseline right, this row wrong; c = the reverse. */
  readonly mcnemarVsID3: Discordant | null;
  readonly compareTo?: string;
  readonly mcnemarPVsCompareTo?: number | null;
  /** As mcnemarVsID3, against the compareTo row (b = that row right, this row wrong). */
  readonly mcnemarVsCompareTo?: Discordant | null;
  /**
   * Accuracy on the benchmark's pairs with the largest head-pose difference (the top quartile of
   * |yaw_a − yaw_b|, eval's `<key>_poseTopQuartileAccuracy`), and how many pairs that is; null
   * when the eval recorded none (no yaw, or an entry from before it did).
   */
  readonly lfwLargePoseAccuracy: number | null;
  readonly lfwLargePosePairs: number | null;
  /** Exact McNemar p against the baseline on the baseline's top-quartile pairs (null as mcnemarPVsID3, or without yaw). */
  readonly mcnemarPLargePoseVsID3: number | null;
  /**
   * Its discordant pairs and how many pairs that quarter holds: (c − b) / pairs is this row's
   * accuracy minus the baseline's on those pairs (absent in entries recorded before it was).
   */
  readonly mcnemarLargePoseVsID3?: (Discordant & { readonly pairs: number }) | null;
  /** Pairs file of the eval stage, relative to the runs directory. */
  readonly pairsFile: string;
  /**
   * That file as copied beside results.json (`pairs/<run>-<file>`): what McNemar reads once the run
   * directory is gone (a fresh checkout adopts the run); absent in entries recorded before it was.
   */
  readonly pairs?: string | null;
  /** The pairs file's sha256 in the eval manifest: which eval this entry is (absent in older entries). */
  readonly pairsSha256?: string | null;
  /** Each stage the run ran or found current, at the version of the code that recorded it (absent in older entries). */
  readonly stageVersions?: Readonly<Record<string, number>> | null;
  /** Stages taken from a sibling run, and stages the pipeline found current. */
  readonly reusedStages: Readonly<Record<string, string>>;
  readonly skippedStages: readonly string[];
  readonly finishedAt: string;
  /** The run's resolved pipeline config and figures as copied beside results.json (relative paths; null / absent: none). */
  readonly config: string | null;
  readonly figures: Readonly<Partial<Record<RunFigure, string>>>;
}

/** A row of the experiment file as the results see it. */
export interface ExperimentPlannedRow {
  readonly row: string;
  /** The seeds it runs at (none for a pending row). */
  readonly seeds: readonly number[];
  readonly compareTo?: string;
  /** The expectation written before running. */
  readonly expected?: string;
}

export interface ExperimentResults {
  readonly format: 'id3-experiment-results/1';
  readonly experiment: string;
  readonly baseline: string;
  readonly benchmark: string;
  readonly updatedAt: string;
  /** Every row of the file in file order. */
  readonly rows: readonly ExperimentPlannedRow[];
  /** The experiment file as planned, copied beside results.json (null for a plan made before it was). */
  readonly experimentFile: string | null;
  readonly results: readonly ExperimentRowResult[];
  /** Per row over the seeds it finished: mean and sample std (n − 1) of the accuracy. */
  readonly summary: readonly {
    readonly row: string;
    readonly seeds: readonly number[];
    readonly lfwAccuracyMean: number;
    readonly lfwAccuracyStdOverSeeds: number;
    readonly lfwFoldStdMean: number;
    /** Over the seeds that have it; null when none does. */
    readonly lfwLargePoseAccuracyMean: number | null;
    readonly lfwLargePoseAccuracyStdOverSeeds: number | null;
    /** Each paper column's mean over the seeds that scored it; `averageAccuracy` is the mean of those columns. */
    readonly benchmarks: PaperAccuracies;
    readonly averageAccuracy: number | null;
    readonly tarAtFar1e3Mean: number | null;
    readonly identities: number;
    readonly imagesPerIdentity: number;
    readonly mcnemarPVsID3: readonly (number | null)[];
    readonly mcnemarPLargePoseVsID3: readonly (number | null)[];
    /** Each consecutive pair of the seeds it finished (absent in summaries written before it was, until rebuilt). */
    readonly seedToSeed?: readonly SeedToSeedTest[];
    /** All its finished seeds together (null: fewer than two, or they agree on every pair; absent as seedToSeed). */
    readonly seedNoise?: SeedNoiseTest | null;
  }[];
  readonly pending: ExperimentPlan['pending'];
  readonly notYetRun: readonly string[];
}

export function experimentResultsPaths(name: string): { results: string; report: string } {
  const dir = join(runsDir(), name);
  return { results: join(dir, 'results.json'), report: join(dir, 'report.md') };
}

/**
 * Where a row's per-pair outcomes are: its run directory when its eval is here, else the copy beside
 * the experiment's results (in the runs directory, or in `folder` when given: a publish folder).
 */
function pairsPath(experiment: string, r: ExperimentRowResult, folder = join(runsDir(), experiment)): string | undefined {
  if (entryIsHere(r)) return join(runsDir(), r.pairsFile);
  const copy = plainCopy(r.pairs, 'pairs') ? join(folder, r.pairs) : undefined;
  return copy !== undefined && existsSync(copy) ? copy : undefined;
}

/** A row's per-pair outcomes (see pairsPath). */
function readPairs(experiment: string, r: ExperimentRowResult, folder?: string): PairResults {
  const file = pairsPath(experiment, r, folder);
  if (file === undefined)
    throw new Error(
      `run ${r.runName}: its pairs file is neither in its run directory (${r.pairsFile}) nor beside the results (${r.pairs ?? 'no copy recorded'})`,
    );
  return JSON.parse(readFileSync(file, 'utf8')) as PairResults;
}

/** Paired tests need the same pairs in the same folds: refused otherwise, naming both files. */
function requireSamePairs(a: ExperimentRowResult, pa: PairResults, b: ExperimentRowResult, pb: PairResults): void {
  if (hashJson(pa.issame) !== hashJson(pb.issame) || hashJson(pa.folds) !== hashJson(pb.folds))
    throw new InvalidInputError(`${a.pairsFile} and ${b.pairsFile} are not the same pairs (issame or folds differ): no paired test`, {
      file: b.pairsFile,
    });
}

/**
 * McNemar between two rows' per-pair correctness, refusing pairs that are not the same pairs;
 * `largePose` on `a`'s top quartile of yaw difference alone (null when its file has no yaw). The
 * subset is `a`'s so both rows are tested on one fixed set of pairs; yaw comes from the detector on
 * the same images, not from the model, so every row's subset is normally the same anyway.
 */
function compare(
  experiment: string,
  a: ExperimentRowResult,
  b: ExperimentRowResult,
  folder?: string,
): { all: McNemarResult; largePose: (McNemarResult & { pairs: number }) | null } {
  const pa = readPairs(experiment, a, folder);
  const pb = readPairs(experiment, b, folder);
  requireSamePairs(a, pa, b, pb);
  const yaw = Array.isArray(pa.yawDifference) && pa.yawDifference.length === pa.correct.length ? pa.yawDifference : undefined;
  const top = yaw ? largestPoseDifference(yaw).indices : [];
  return {
    all: mcnemar(pa.correct, pb.correct),
    largePose: top.length
      ? {
          ...mcnemar(
            top.map((i) => pa.correct[i]),
            top.map((i) => pb.correct[i]),
          ),
          pairs: top.length,
        }
      : null,
  };
}

/** The row's consecutive finished seeds tested against each other (entries in seed order; pairs as in pairsPath). */
function seedToSeedTests(experiment: string, entries: readonly ExperimentRowResult[], folder?: string): SeedToSeedTest[] {
  return entries.slice(1).map((later, i) => {
    const { b, c, pExact } = compare(experiment, entries[i], later, folder).all;
    return { seeds: [entries[i].seed, later.seed], b, c, p: pExact };
  });
}

/** The row's finished seeds together (entries in seed order): Cochran's Q; null below two seeds or without a pair they disagree on. */
function seedNoiseTest(experiment: string, entries: readonly ExperimentRowResult[], folder?: string): SeedNoiseTest | null {
  if (entries.length < 2) return null;
  const pairs = entries.map((r) => readPairs(experiment, r, folder));
  entries.slice(1).forEach((r, i) => requireSamePairs(entries[0], pairs[0], r, pairs[i + 1]));
  const q = cochranQ(pairs.map((x) => x.correct));
  return q && { seeds: entries.map((r) => r.seed), ...q };
}

const mean = (v: readonly number[]): number => v.reduce((s, x) => s + x, 0) / v.length;
const sampleStd = (v: readonly number[]): number =>
  v.length < 2 ? 0 : Math.sqrt(v.reduce((s, x) => s + (x - mean(v)) ** 2, 0) / (v.length - 1));
const present = (v: readonly (number | null | undefined)[]): number[] => v.filter((x): x is number => typeof x === 'number');

/**
 * The paper's columns among the benchmarks the eval scored. Eval keys a benchmark's metrics by its
 * name without non-alphanumerics (`AgeDB-30` → `AgeDB30_accuracy`); the match ignores case, so an
 * insightface file named `agedb_30` fills AgeDB-30, while `LFW (40-pair sample)` fills no column.
 */
export function paperBenchmarkAccuracies(metrics: Readonly<Record<string, number>>): PaperAccuracies {
  const out: Partial<Record<PaperBenchmark, number>> = {};
  for (const column of PAPER_BENCHMARKS) {
    const wanted = `${benchmarkKey(column)}_accuracy`.toLowerCase();
    const key = Object.keys(metrics).find((k) => k.toLowerCase() === wanted);
    if (key !== undefined) out[column] = metrics[key];
  }
  return out;
}

/**
 * The run's config, figures and pairs file that exist, each as the path beside results.json it is
 * copied to; an entry whose eval is not here (adopted) keeps the copies recorded with it that are
 * still beside results.json.
 */
function runCopies(experiment: string, r: ExperimentRowResult, here: boolean): Pick<ExperimentRowResult, 'config' | 'figures' | 'pairs'> {
  if (!here) {
    const kept = (path: string | null | undefined, folder: string): string | null =>
      plainCopy(path, folder) && existsSync(join(runsDir(), experiment, path)) ? path : null;
    const figures = Object.fromEntries(Object.entries(r.figures ?? {}).filter(([, path]) => kept(path, 'figures') !== null)) as Partial<
      Record<RunFigure, string>
    >;
    return { config: kept(r.config, 'configs'), figures, pairs: kept(r.pairs, 'pairs') };
  }
  const runDir = join(runsDir(), r.runName);
  const figures: Partial<Record<RunFigure, string>> = {};
  for (const [name, path] of Object.entries(RUN_FIGURES) as [RunFigure, string][])
    if (existsSync(join(runDir, path))) figures[name] = `figures/${r.runName}-${name}.png`;
  return {
    config: existsSync(join(runDir, 'config.json')) ? `configs/${r.runName}.json` : null,
    figures,
    pairs: existsSync(join(runsDir(), r.pairsFile)) ? `pairs/${r.runName}-${basename(r.pairsFile)}` : null,
  };
}

/** An entry's fr-train accuracies: as recorded, else (a new entry, or one recorded before they were) read from its run when its eval is here. */
function recognizerAccuracies(
  r: ExperimentRowResult,
  here: boolean,
): Pick<ExperimentRowResult, 'frTrainBatchAccuracy' | 'frTrainValidationAccuracy'> {
  if (r.frTrainBatchAccuracy != null || r.frTrainValidationAccuracy != null)
    return { frTrainBatchAccuracy: r.frTrainBatchAccuracy ?? null, frTrainValidationAccuracy: r.frTrainValidationAccuracy ?? null };
  const metrics = here ? readManifestAt(resolve(runsDir(), r.runName), 'fr-train')?.metrics : undefined;
  return { frTrainBatchAccuracy: metrics?.finalBatchAccuracy ?? null, frTrainValidationAccuracy: metrics?.validationAccuracy ?? null };
}

/** An entry's training-set card: as recorded, else read from its run's sample stage when its eval is here. */
function trainingSetCard(r: ExperimentRowResult, here: boolean): Pick<ExperimentRowResult, 'trainingSetCard'> {
  if (r.trainingSetCard) return { trainingSetCard: r.trainingSetCard };
  const m = here ? readManifestAt(resolve(runsDir(), r.runName), 'sample')?.metrics : undefined;
  const counts = m && [m.identities, m.images, m.generated, m.rejectedSimilarity, m.rejectedFace];
  if (!m || !counts?.every((v) => typeof v === 'number')) return { trainingSetCard: null };
  const [identities, images, generated, rejectedSimilarity, rejectedFace] = counts as number[];
  return {
    trainingSetCard: {
      identities,
      images,
      generated,
      rejectedSimilarity,
      rejectedFace,
      teacherVerificationAccuracy: m.teacherVerificationAccuracy ?? null,
      checkVerificationAccuracy: m.checkVerificationAccuracy ?? null,
      yawCorrelation: m.yawCorrelation ?? null,
      ageCorrelation: m.ageCorrelation ?? null,
    },
  };
}

/** Entry fields that can be filled in later from the run (recorded before they existed): one list for recording and --report-only. */
const fieldsFromRun = (r: ExperimentRowResult, here: boolean): Partial<ExperimentRowResult> => ({
  ...recognizerAccuracies(r, here),
  ...trainingSetCard(r, here),
});

/** Every file copied beside results.json from a run directory on this machine: its path there → the file it is copied from. */
function copiedFiles(results: readonly ExperimentRowResult[]): { to: string; from: string }[] {
  return results
    .filter((r) => entryIsHere(r))
    .flatMap((r) => [
      ...(r.config ? [{ to: r.config, from: join(runsDir(), r.runName, 'config.json') }] : []),
      ...(Object.entries(r.figures) as [RunFigure, string][]).map(([name, to]) => ({
        to,
        from: join(runsDir(), r.runName, RUN_FIGURES[name]),
      })),
      ...(r.pairs ? [{ to: r.pairs, from: join(runsDir(), r.pairsFile) }] : []),
    ]);
}

/** Every file beside results.json an entry links (copied now or restored with an adopted run). */
function entryFiles(results: readonly ExperimentRowResult[]): string[] {
  return results.flatMap((r) => [...(r.config ? [r.config] : []), ...Object.values(r.figures), ...(r.pairs ? [r.pairs] : [])]);
}

/** Atomic write, skipped when the file already holds these bytes (figures and configs are copied on every record). */
function writeIfChanged(path: string, bytes: Buffer): void {
  if (existsSync(path) && readFileSync(path).equals(bytes)) return;
  writeFileAtomic(path, bytes);
}

/** The file's rows for the results; a plan made before `rows` existed gives its runs' rows and pending rows. */
function plannedRows(plan: ExperimentPlan): ExperimentPlannedRow[] {
  const rows = plan.rows ?? [...new Set([...plan.runs.map((r) => r.row), ...plan.pending.map((p) => p.row)])].map((row) => ({ row }));
  return rows.map((r) => {
    const runs = plan.runs.filter((x) => x.row === r.row);
    const compareTo = runs[0]?.compareTo;
    return {
      row: r.row,
      seeds: runs.map((x) => x.seed),
      ...(compareTo ? { compareTo } : {}),
      ...('expected' in r && r.expected ? { expected: r.expected } : {}),
    };
  });
}

/**
 * Record one finished run and rebuild results.json + report.md: entries of earlier executions
 * are kept while their config is still the planned one, so an interrupted experiment's table
 * stays whole while it resumes; McNemar is recomputed for every entry. Each finished run's config
 * and figures are copied beside them, with the experiment file; with `publish`, the whole folder
 * is then mirrored into the repository.
 */
export function recordExperimentRun(
  plan: ExperimentPlan,
  run: ExperimentRun,
  result: Pick<PipelineResult, 'stages'>,
  reuse: ReuseSummary,
): ExperimentResults {
  const paths = experimentResultsPaths(plan.name);
  const planned = new Map(plan.runs.map((r) => [`${r.row}/${r.seed}`, r]));
  // Kept: entries of the planned config whose per-pair outcomes can still be read (an entry
  // restored without them cannot be tested against; its run reruns and records it again).
  const previous = readRecordedResults(paths.results).filter(
    (r) => planned.get(`${r.row}/${r.seed}`)?.configHash === r.configHash && pairsPath(plan.name, r) !== undefined,
  );
  const runDir = resolve(runsDir(), run.runName);
  const evalManifest = readManifestAt(runDir, 'eval');
  const frManifest = readManifestAt(runDir, 'fr-train');
  if (!evalManifest || !frManifest) throw new Error(`run ${run.runName} finished without eval and fr-train manifests in ${runDir}`);
  const key = benchmarkKey(plan.benchmark);
  const pairs = evalManifest.outputs[`pairs_${key}`];
  const accuracy = evalManifest.metrics[`${key}_accuracy`];
  if (!pairs || accuracy === undefined) throw new Error(`${runDir}/eval/manifest.json: no results for benchmark '${plan.benchmark}'`);
  const card = readJsonFile(join(runDir, frManifest.outputs.card.path)) as {
    dataset: { identities: number; trainImages: number; validationImages: number };
  };
  const images = card.dataset.trainImages + card.dataset.validationImages;
  // A rerun that computed nothing (every stage current, e.g. a row restarted for its other seed)
  // keeps the record of the run that made the result: its skipped and reused stages and its time
  // say how the result was made, and the result is the same one (same pairs file).
  const earlier = previous.find((r) => r.row === run.row && r.seed === run.seed);
  const nothingRan = result.stages.length > 0 && result.stages.every((s) => s.skipped);
  const made =
    earlier && nothingRan && earlier.pairsSha256 === pairs.sha256
      ? { reusedStages: earlier.reusedStages, skippedStages: earlier.skippedStages, finishedAt: earlier.finishedAt }
      : {
          reusedStages: { ...readReused(runDir), ...reuse.reused },
          skippedStages: result.stages.filter((s) => s.skipped).map((s) => s.stage),
          finishedAt: new Date().toISOString(),
        };
  const entry: ExperimentRowResult = {
    row: run.row,
    seed: run.seed,
    runName: run.runName,
    configHash: run.configHash,
    benchmark: plan.benchmark,
    lfwAccuracy: accuracy,
    lfwStd: evalManifest.metrics[`${key}_accuracyStd`] ?? Number.NaN,
    tarAtFar1e3: evalManifest.metrics[`${key}_tarAtFar1e3`] ?? null,
    benchmarks: paperBenchmarkAccuracies(evalManifest.metrics),
    identities: card.dataset.identities,
    imagesPerIdentity: card.dataset.identities ? images / card.dataset.identities : 0,
    trainImages: card.dataset.trainImages,
    mcnemarPVsID3: null,
    mcnemarVsID3: null,
    lfwLargePoseAccuracy: evalManifest.metrics[`${key}_poseTopQuartileAccuracy`] ?? null,
    lfwLargePosePairs: evalManifest.metrics[`${key}_poseTopQuartilePairs`] ?? null,
    mcnemarPLargePoseVsID3: null,
    pairsFile: join(run.runName, pairs.path),
    ...made,
    config: null,
    figures: {},
    pairs: null,
    pairsSha256: pairs.sha256,
    stageVersions: currentStageVersions(result.stages.map((s) => s.stage)),
  };
  const order = resultsOrder(plan.runs).map((r) => `${r.row}/${r.seed}`);
  const byKey = new Map(previous.map((r) => [`${r.row}/${r.seed}`, r]));
  byKey.set(`${entry.row}/${entry.seed}`, entry);
  const compareTo = new Map(plan.runs.filter((r) => r.compareTo).map((r) => [r.row, r.compareTo as string]));
  const results = order
    .map((k) => byKey.get(k))
    .filter((r): r is ExperimentRowResult => r !== undefined)
    // Entries recorded before a field existed read it as null.
    .map(entryDefaults)
    .map((r): ExperimentRowResult => {
      const here = entryIsHere(r);
      const base = r.row === plan.baseline ? undefined : byKey.get(`${plan.baseline}/${r.seed}`);
      const m = base ? compare(plan.name, base, r) : undefined;
      const otherRow = compareTo.get(r.row);
      const other = otherRow ? byKey.get(`${otherRow}/${r.seed}`) : undefined;
      const mo = other ? compare(plan.name, other, r).all : undefined;
      return {
        ...r,
        mcnemarPVsID3: m ? m.all.pExact : null,
        mcnemarVsID3: m ? { b: m.all.b, c: m.all.c, pChi2: m.all.pChi2 } : null,
        mcnemarPLargePoseVsID3: m?.largePose ? m.largePose.pExact : null,
        mcnemarLargePoseVsID3: m?.largePose
          ? { b: m.largePose.b, c: m.largePose.c, pChi2: m.largePose.pChi2, pairs: m.largePose.pairs }
          : null,
        ...(otherRow
          ? {
              compareTo: otherRow,
              mcnemarPVsCompareTo: mo ? mo.pExact : null,
              mcnemarVsCompareTo: mo ? { b: mo.b, c: mo.c, pChi2: mo.pChi2 } : null,
            }
          : {}),
        ...fieldsFromRun(r, here),
        // What is there now: a figure can appear later (a run's card rewritten), a config is rewritten by each plan.
        ...runCopies(plan.name, r, here),
      };
    });
  const rows = [...new Set(plan.runs.map((r) => r.row))];
  const summary = rows
    .map((rowName) => results.filter((r) => r.row === rowName))
    .filter((rs) => rs.length > 0)
    .map((rs) => {
      const large = present(rs.map((r) => r.lfwLargePoseAccuracy));
      const tar = present(rs.map((r) => r.tarAtFar1e3));
      const paper = Object.fromEntries(
        PAPER_BENCHMARKS.flatMap((column) => {
          const v = present(rs.map((r) => r.benchmarks?.[column]));
          return v.length ? [[column, mean(v)]] : [];
        }),
      ) as PaperAccuracies;
      const columns = Object.values(paper);
      return {
        row: rs[0].row,
        seeds: rs.map((r) => r.seed),
        lfwAccuracyMean: mean(rs.map((r) => r.lfwAccuracy)),
        lfwAccuracyStdOverSeeds: sampleStd(rs.map((r) => r.lfwAccuracy)),
        lfwFoldStdMean: mean(rs.map((r) => r.lfwStd)),
        lfwLargePoseAccuracyMean: large.length ? mean(large) : null,
        lfwLargePoseAccuracyStdOverSeeds: large.length ? sampleStd(large) : null,
        benchmarks: paper,
        averageAccuracy: columns.length ? mean(columns) : null,
        tarAtFar1e3Mean: tar.length ? mean(tar) : null,
        identities: mean(rs.map((r) => r.identities)),
        imagesPerIdentity: mean(rs.map((r) => r.imagesPerIdentity)),
        mcnemarPVsID3: rs.map((r) => r.mcnemarPVsID3),
        mcnemarPLargePoseVsID3: rs.map((r) => r.mcnemarPLargePoseVsID3),
        seedToSeed: seedToSeedTests(plan.name, rs),
        seedNoise: seedNoiseTest(plan.name, rs),
      };
    });
  const out: ExperimentResults = {
    format: 'id3-experiment-results/1',
    experiment: plan.name,
    baseline: plan.baseline,
    benchmark: plan.benchmark,
    updatedAt: new Date().toISOString(),
    rows: plannedRows(plan),
    experimentFile: plan.source === undefined ? null : 'experiment.json',
    results,
    summary,
    pending: plan.pending,
    notYetRun: order.filter((k) => !byKey.has(k)).map((k) => planned.get(k)?.runName ?? k),
  };
  writeExperimentFolder(plan, out);
  return out;
}

/**
 * Write the experiment's folder in the runs directory (copies first, results.json and report.md
 * last, so the report never links a file that is not there yet), then mirror it into the
 * repository's `publish` folder the same way: the report's relative links hold in both.
 */
function writeExperimentFolder(plan: ExperimentPlan, out: ExperimentResults): void {
  const paths = experimentResultsPaths(plan.name);
  const dir = join(runsDir(), plan.name);
  const target = publishedFolderOf(plan);
  const copies = copiedFiles(out.results);
  for (const c of copies) writeIfChanged(join(dir, c.to), readFileSync(c.from));
  if (plan.source !== undefined && out.experimentFile) writeIfChanged(join(dir, out.experimentFile), Buffer.from(plan.source, 'utf8'));
  writeJsonAtomic(paths.results, out);
  const reading = readHandReading(target ?? dir);
  writeFileAtomic(paths.report, reportMarkdown(out, readingIn(dir, reading, target)));
  if (target === undefined) return;
  const files = [
    ...entryFiles(out.results).filter((f) => existsSync(join(dir, f))),
    ...(out.experimentFile ? [out.experimentFile] : []),
    'results.json',
  ];
  for (const f of files) writeIfChanged(join(target, f), readFileSync(join(dir, f)));
  writeFileAtomic(join(target, 'report.md'), reportMarkdown(out, reading?.text));
}

/** The hand-written reading of an experiment's results, kept beside them and embedded in every rebuilt report. */
export const READING_FILE = 'reading.md';

/** `reading.md` of a folder (the publish folder when there is one), or undefined when none is written. */
function readHandReading(folder: string): { text: string; bytes: Buffer } | undefined {
  const path = join(folder, READING_FILE);
  if (!existsSync(path)) return undefined;
  const bytes = readFileSync(path);
  const text = bytes.toString('utf8').trim();
  return text === '' ? undefined : { text, bytes };
}

/** What the experiment itself writes beside results.json (never copied for a reading's link). */
const EXPERIMENT_FILES = ['results.json', 'report.md', 'experiment.json', READING_FILE];
const EXPERIMENT_FOLDERS = ['configs', 'figures', 'pairs'];

/** A markdown link's or image's target: `](target)`. */
const MARKDOWN_LINK = /\]\(([^)\s]+)\)/g;

/**
 * The publish folder's reading as embedded in the runs directory's copy of the report: reading.md
 * and the files it links inside the publish folder (its figures) are copied beside that report,
 * and links that leave the publish folder (`../other/report.md`) are rewritten to resolve from
 * there — so every link of either report resolves.
 */
function readingFrom(reading: { text: string; bytes: Buffer }, published: string, local: string): string {
  writeIfChanged(join(local, READING_FILE), reading.bytes);
  return reading.text.replace(MARKDOWN_LINK, (whole, link: string) => {
    if (/^([a-z][a-z0-9+.-]*:|#|\/)/i.test(link)) return whole; // a URL, an anchor or an absolute path
    const hash = link.indexOf('#');
    const [path, anchor] = hash < 0 ? [link, ''] : [link.slice(0, hash), link.slice(hash)];
    const target = resolve(published, path);
    const inside = relative(published, target);
    if (inside !== '' && !inside.startsWith('..') && !isAbsolute(inside)) {
      // The experiment's own files are already in both folders, each copy its own (the published
      // results.json may be a record behind the local one here): only the reading's files are copied.
      const own = EXPERIMENT_FILES.includes(inside) || EXPERIMENT_FOLDERS.some((f) => inside.startsWith(`${f}${sep}`));
      if (!own && existsSync(target) && statSync(target).isFile()) writeIfChanged(join(local, inside), readFileSync(target));
      return whole;
    }
    return `](${relative(local, target).split(sep).join('/')}${anchor})`;
  });
}

/** The reading as the report in `folder` embeds it: as written in the publish folder (or without one), else via readingFrom. */
function readingIn(
  folder: string,
  reading: { text: string; bytes: Buffer } | undefined,
  published: string | undefined,
): string | undefined {
  return reading && published !== undefined && folder !== published ? readingFrom(reading, published, folder) : reading?.text;
}

/** Entry fields added over time, as null (or empty) in entries recorded before them. */
function entryDefaults(r: ExperimentRowResult): ExperimentRowResult {
  return {
    ...r,
    tarAtFar1e3: r.tarAtFar1e3 ?? null,
    benchmarks: r.benchmarks ?? null,
    lfwLargePoseAccuracy: r.lfwLargePoseAccuracy ?? null,
    lfwLargePosePairs: r.lfwLargePosePairs ?? null,
    mcnemarPLargePoseVsID3: r.mcnemarPLargePoseVsID3 ?? null,
    mcnemarLargePoseVsID3: r.mcnemarLargePoseVsID3 ?? null,
    frTrainBatchAccuracy: r.frTrainBatchAccuracy ?? null,
    frTrainValidationAccuracy: r.frTrainValidationAccuracy ?? null,
    trainingSetCard: r.trainingSetCard ?? null,
    figures: r.figures ?? {},
    config: r.config ?? null,
  };
}

/** The top-level fields report.md reads, each an array; a results.json from before one existed is refused, naming it. */
const REPORTED_ARRAYS = ['rows', 'results', 'summary', 'pending', 'notYetRun'] as const;

/**
 * Rebuild report.md from the recorded results.json (and reading.md) without running anything:
 * after editing the hand-written reading, or after a report-format change. Rebuilds the runs
 * directory's copy and the publish folder's, each from its own results.json (an entry's fields
 * added since it was recorded are filled in there from its run, where that run is on this
 * machine); returns the reports written.
 */
export function rebuildExperimentReport(name: string): string[] {
  const { path, experiment } = loadExperiment(name);
  const local = join(runsDir(), name);
  const published = experiment.publish === undefined ? undefined : publishFolder(experiment.publish, path);
  const folders = [local, ...(published === undefined ? [] : [published])].filter((d) => existsSync(join(d, 'results.json')));
  if (!folders.length)
    throw new InvalidInputError(
      `experiment '${name}': nothing recorded yet (no results.json in ${[local, ...(published ? [published] : [])].join(' or ')})`,
      { field: 'name', file: path },
    );
  const reading = readHandReading(published ?? local);
  return folders.map((dir) => {
    const file = join(dir, 'results.json');
    const original = readFileSync(file, 'utf8');
    const results = readJsonFile(file) as ExperimentResults;
    if (results.format !== 'id3-experiment-results/1')
      throw new InvalidInputError(`${file}: not an id3 experiment results file (format '${String(results.format)}')`, {
        file,
        field: 'format',
      });
    const missing = REPORTED_ARRAYS.find((field) => !Array.isArray(results[field]));
    if (missing)
      throw new InvalidInputError(
        `${file}: field '${missing}' is missing (written by an older id3): record a run (id3 experiment ${name}) to rewrite it`,
        { file, field: missing },
      );
    // Fields added since an entry was recorded are read from its run while that is here (nothing runs).
    const filled = results.results.map(entryDefaults).map((r) => {
      const here = entryIsHere(r);
      return { ...r, ...fieldsFromRun(r, here) };
    });
    // Seed-to-seed tests for summaries written before they were, where every pairs file is readable.
    const summary = results.summary.map((s) => {
      const entries = filled.filter((r) => r.row === s.row);
      if (!entries.every((r) => pairsPath(name, r, dir) !== undefined)) return s;
      return {
        ...s,
        ...(s.seedToSeed === undefined ? { seedToSeed: seedToSeedTests(name, entries, dir) } : {}),
        ...(s.seedNoise === undefined ? { seedNoise: seedNoiseTest(name, entries, dir) } : {}),
      };
    });
    const updated = { ...results, results: filled, summary };
    // Written only when something was filled in, and only over the file as read: a run recorded
    // meanwhile (an experiment in flight) is not overwritten; its own record fills the same fields.
    if (JSON.stringify(updated) !== JSON.stringify(results) && readFileSync(file, 'utf8') === original) writeJsonAtomic(file, updated);
    writeFileAtomic(join(dir, 'report.md'), reportMarkdown(updated, readingIn(dir, reading, published)));
    return join(dir, 'report.md');
  });
}

// ── report.md ────────────────────────────────────────────────────────────────────────────────

const pct = (v: number): string => (100 * v).toFixed(2);
const pctOrDash = (v: number | null | undefined): string => (v === null || v === undefined ? '—' : pct(v));
/**
 * Two significant figures throughout, below 0.001 in exponent form; three where two would round
 * to the threshold itself (0.0496 and 0.0504 both read "0.050", on either side of the verdict).
 */
export const formatPValue = (p: number | null | undefined): string =>
  p === null || p === undefined
    ? '—'
    : p === 0
      ? '< 1e-300' // below what a double holds: the test's p is never exactly 0
      : p < 1e-3
        ? p.toExponential(1)
        : Number(p.toPrecision(2)) === ALPHA && p !== ALPHA
          ? p.toPrecision(3)
          : p.toPrecision(2);
/** Mean ± sample std over seeds; one seed has no spread to show, and says so. */
const overSeeds = (meanValue: number, std: number | null, seeds: number): string =>
  seeds > 1 ? `${pct(meanValue)} ± ${pctOrDash(std)}` : `${pct(meanValue)} (1 seed)`;
const seedsText = (seeds: readonly number[]): string => `${seeds.length === 1 ? 'seed' : 'seeds'} ${seeds.join(', ')}`;
/** Percentage points with their sign (a typographic minus, as elsewhere in the reports). */
const signedPoints = (difference: number): string => `${difference < 0 ? '−' : '+'}${Math.abs(100 * difference).toFixed(2)}`;

/**
 * Why a paper column has no data: what ../shared/data holds (see its README). Only LFW is there;
 * the machines cannot download the others.
 */
const NO_BENCHMARK_DATA: Record<PaperBenchmark, string> = {
  LFW: 'the eval stage scored no benchmark named LFW (../shared/data has its View 2 pairs)',
  'CFP-FP': "../shared/data has only a format sample of CFP's layout built from LFW images, not CFP's photos",
  CPLFW: 'not in ../shared/data (its insightface .bin files are 40-pair format samples cut from LFW) and this machine cannot download',
  'AgeDB-30': 'not in ../shared/data (its insightface .bin files are 40-pair format samples cut from LFW) and this machine cannot download',
  CALFW: 'not in ../shared/data (its insightface .bin files are 40-pair format samples cut from LFW) and this machine cannot download',
};

/** The paper's Table 1 layout: accuracy per benchmark (mean over seeds), average, TAR, large pose, McNemar. */
function paperLayoutTable(r: ExperimentResults): string[] {
  const missing = PAPER_BENCHMARKS.filter((column) => r.summary.every((s) => s.benchmarks[column] === undefined));
  const reasons = new Map<string, PaperBenchmark[]>();
  for (const column of missing) reasons.set(NO_BENCHMARK_DATA[column], [...(reasons.get(NO_BENCHMARK_DATA[column]) ?? []), column]);
  return [
    `| row | seeds | ${PAPER_BENCHMARKS.join(' | ')} | average | TAR@FAR=1e-3 (${r.benchmark}) | large-pose ${r.benchmark} | McNemar p vs ${r.baseline} |`,
    `|---|---|${PAPER_BENCHMARKS.map(() => '---|').join('')}---|---|---|---|`,
    ...r.summary.map(
      (s) =>
        `| ${s.row} | ${s.seeds.join(', ')} | ${PAPER_BENCHMARKS.map((column) => pctOrDash(s.benchmarks[column])).join(' | ')} | ${pctOrDash(s.averageAccuracy)} | ${pctOrDash(s.tarAtFar1e3Mean)} | ${pctOrDash(s.lfwLargePoseAccuracyMean)} | ${s.mcnemarPVsID3.map(formatPValue).join(', ')} |`,
    ),
    ...(missing.length
      ? [
          '',
          `No data (—): ${[...reasons].map(([why, columns]) => `${columns.join(', ')}: ${why}`).join('; ')}. The average is over the columns with data.`,
        ]
      : []),
  ];
}

/** The summary's seed-to-seed tests as a table cell: "612 / 621, p 0.82" per pair of seeds; — for one seed or none recorded. */
const seedToSeedText = (tests: readonly SeedToSeedTest[] | undefined): string =>
  tests?.length
    ? tests.map((t) => `${tests.length > 1 ? `${t.seeds[0]}→${t.seeds[1]}: ` : ''}${t.b} / ${t.c}, p ${formatPValue(t.p)}`).join('; ')
    : '—';

/** The experiment's benchmark in detail: mean ± std over seeds, fold std, training set, large pose, paired rows, seed to seed. */
function detailTable(r: ExperimentResults): string[] {
  const pairedRows = r.rows.some((x) => x.compareTo);
  const entries = (row: string): ExperimentRowResult[] => r.results.filter((x) => x.row === row);
  /** The row's test against its compareTo row, per seed it finished ("not yet run" where that row has not). */
  const versusPair = (row: string): string => {
    const other = r.rows.find((x) => x.row === row)?.compareTo;
    if (!other) return '—';
    const ps = entries(row).map((x) =>
      typeof x.mcnemarPVsCompareTo === 'number' ? formatPValue(x.mcnemarPVsCompareTo) : `— (${other} seed ${x.seed} not yet run)`,
    );
    return `${other}: ${ps.join(', ')}`;
  };
  return [
    `${r.benchmark} accuracy (%) per row: mean ± sample std over seeds; the fold std is the protocol's own, averaged over seeds.`,
    `McNemar: exact two-sided p against \`${r.baseline}\` on the same pairs, per seed.`,
    `Large pose: accuracy on the quarter of the pairs with the largest head-pose difference |yaw_a − yaw_b| (LFW is mostly`,
    `frontal); its McNemar p on the baseline's quarter.`,
    ...(pairedRows ? ["A row compared with another row as well (its `compareTo`): that test's p per seed, in its own column."] : []),
    'Seed to seed: the row against itself at its next seed on the same pairs (b / c: pairs only the earlier / only the later',
    'seed gets right; McNemar p): how many answers the training seed alone changes, and whether it moves the accuracy.',
    '',
    `| row | seeds | accuracy | fold std | identities × images | McNemar p vs ${r.baseline} | large-pose accuracy | large-pose McNemar p |${pairedRows ? ' McNemar p vs its paired row |' : ''} seed to seed |`,
    `|---|---|---|---|---|---|---|---|${pairedRows ? '---|' : ''}---|`,
    ...r.summary.map(
      (s) =>
        `| ${s.row} | ${s.seeds.join(', ')} | ${overSeeds(s.lfwAccuracyMean, s.lfwAccuracyStdOverSeeds, s.seeds.length)} | ${pct(s.lfwFoldStdMean)} | ${Math.round(s.identities)} × ${s.imagesPerIdentity.toFixed(1)} | ${s.mcnemarPVsID3.map(formatPValue).join(', ')} | ${s.lfwLargePoseAccuracyMean === null ? '—' : overSeeds(s.lfwLargePoseAccuracyMean, s.lfwLargePoseAccuracyStdOverSeeds, present(entries(s.row).map((x) => x.lfwLargePoseAccuracy)).length)} | ${s.mcnemarPLargePoseVsID3.map(formatPValue).join(', ')} |${pairedRows ? ` ${versusPair(s.row)} |` : ''} ${seedToSeedText(s.seedToSeed)} |`,
    ),
  ];
}

function expectedSection(r: ExperimentResults): string[] {
  return [
    '## Expected before running',
    '',
    ...(r.rows.some((x) => x.expected)
      ? r.rows.map((x) => `- **${x.row}**: ${x.expected ?? 'none written'}`)
      : ["None written in the experiment file (a row's `expected`)."]),
  ];
}

/** Significance threshold of the per-seed McNemar tests. */
const ALPHA = 0.05;

/** A row against a reference row at one seed both finished. */
interface SeedComparison {
  readonly seed: number;
  /** Accuracy on the benchmark, row − reference. */
  readonly difference: number;
  readonly p: number;
  readonly b: number;
  readonly c: number;
}

/** The row against `reference` (the baseline or its compareTo row), per seed where both finished and were tested. */
function seedComparisons(r: ExperimentResults, row: string, reference: string): SeedComparison[] {
  return r.results
    .filter((x) => x.row === row)
    .flatMap((x) => {
      const ref = r.results.find((y) => y.row === reference && y.seed === x.seed);
      const test =
        reference === r.baseline
          ? x.mcnemarVsID3 && x.mcnemarPVsID3 !== null
            ? { ...x.mcnemarVsID3, p: x.mcnemarPVsID3 }
            : null
          : x.compareTo === reference && x.mcnemarVsCompareTo && typeof x.mcnemarPVsCompareTo === 'number'
            ? { ...x.mcnemarVsCompareTo, p: x.mcnemarPVsCompareTo }
            : null;
      return ref && test ? [{ seed: x.seed, difference: x.lfwAccuracy - ref.lfwAccuracy, p: test.p, b: test.b, c: test.c }] : [];
    });
}

/**
 * The row against the baseline on the baseline's large-pose quarter, per seed both finished: the
 * difference is (c − b) / pairs, this row's accuracy minus the baseline's on exactly the tested pairs.
 */
function largePoseComparisons(r: ExperimentResults, row: string): SeedComparison[] {
  return r.results.flatMap((x) => {
    const d = x.mcnemarLargePoseVsID3;
    return x.row === row && d && d.pairs > 0 && typeof x.mcnemarPLargePoseVsID3 === 'number'
      ? [{ seed: x.seed, difference: (d.c - d.b) / d.pairs, p: x.mcnemarPLargePoseVsID3, b: d.b, c: d.c }]
      : [];
  });
}

/** The same tests read from the reference's side: the difference negated, b and c swapped. */
const fromOtherSide = (cs: readonly SeedComparison[]): SeedComparison[] =>
  cs.map((c) => ({ ...c, difference: -c.difference, b: c.c, c: c.b }));

/** A claim only where every seed's test says so, in the same direction. */
function verdict(cs: readonly SeedComparison[]): 'above' | 'below' | 'opposite' | 'noise' {
  if (cs.some((c) => !(c.p < ALPHA))) return 'noise';
  const directions = new Set(cs.map((c) => (c.c > c.b ? 'above' : 'below')));
  return directions.size === 1 ? [...directions][0] : 'opposite';
}

function comparisonText(reference: string, cs: readonly SeedComparison[]): string {
  const head = `${signedPoints(mean(cs.map((c) => c.difference)))} points vs ${reference} (${seedsText(cs.map((c) => c.seed))})`;
  const ps = `p ${cs.map((c) => formatPValue(c.p)).join(', ')}`;
  const v = verdict(cs);
  if (v === 'noise') return `${head}: within noise (p ≥ 0.05${cs.length > 1 ? ' in at least one seed' : ''}): ${ps}`;
  if (v === 'opposite')
    return `${head}: significant in opposite directions (McNemar p < 0.05 in every seed run, ${cs.map((c) => `${c.c > c.b ? 'above' : 'below'} in seed ${c.seed}`).join(', ')}): ${ps}`;
  return `${head}: significantly ${v} ${reference} (McNemar p < 0.05 in every seed run): ${ps}`;
}

/** Planned seeds a row has not finished. */
const unfinishedSeeds = (r: ExperimentResults, row: ExperimentPlannedRow): number[] =>
  row.seeds.filter((s) => !r.results.some((x) => x.row === row.row && x.seed === s));

/** One sentence per non-baseline row: its difference from the baseline (and its compareTo row), and what the test allows. */
function readingLine(r: ExperimentResults, row: ExperimentPlannedRow): string {
  if (!r.results.some((x) => x.row === row.row)) return `- **${row.row}**: not yet run.`;
  const parts = [r.baseline, ...(row.compareTo ? [row.compareTo] : [])].map((reference) => {
    const cs = seedComparisons(r, row.row, reference);
    if (!cs.length) return `not yet comparable with ${reference} (no seed where both finished)`;
    // A seed this row finished but the reference has not is no test yet: say so, or "every seed" overstates.
    const untested = r.results.filter((x) => x.row === row.row && !cs.some((c) => c.seed === x.seed)).map((x) => x.seed);
    return `${comparisonText(reference, cs)}${untested.length ? `; ${seedsText(untested)} not yet tested (${reference} not yet run there)` : ''}`;
  });
  const large = largePoseComparisons(r, row.row);
  const largeText = large.length ? ` On the large-pose quarter: ${comparisonText(r.baseline, large)}.` : '';
  const missing = unfinishedSeeds(r, row);
  return `- **${row.row}**: ${parts.join('; ')}.${largeText}${missing.length ? ` Not yet run at ${seedsText(missing)}.` : ''}`;
}

/** The issue's targets for Table 1, by the rows table1.json names. */
const REAL_ROW = 'real';
const REAL_RATIO_TARGET = 0.9;
const ROWS_TO_BEAT = ['no-guidance', 'no-identity-loss'];

function targetLines(r: ExperimentResults): string[] {
  const base = r.baseline;
  const planned = (row: string): ExperimentPlannedRow | undefined => r.rows.find((x) => x.row === row && x.seeds.length > 0);
  // A target pairs two rows seed by seed: only a seed both run and one has not finished is still to come.
  const soFar = (a: ExperimentPlannedRow, b: ExperimentPlannedRow): string => {
    const missing = [...new Set([...unfinishedSeeds(r, a), ...unfinishedSeeds(r, b)])]
      .filter((s) => a.seeds.includes(s) && b.seeds.includes(s))
      .sort((x, y) => x - y);
    return missing.length ? ` so far (${seedsText(missing)} not yet run)` : '';
  };
  const ratio = (): string => {
    const label = `\`${base}\` ≥ ${100 * REAL_RATIO_TARGET}% of \`${REAL_ROW}\`'s ${r.benchmark} accuracy`;
    const real = planned(REAL_ROW);
    const baseRow = planned(base);
    if (!real || !baseRow) return `- ${label}: not measurable here (no row '${REAL_ROW}' in this experiment)`;
    const accuracy = (row: string, seed: number): number | undefined =>
      r.results.find((x) => x.row === row && x.seed === seed)?.lfwAccuracy;
    const seeds = baseRow.seeds.filter((s) => accuracy(base, s) !== undefined && accuracy(REAL_ROW, s) !== undefined);
    if (!seeds.length) return `- ${label}: not yet measurable (no seed where both finished)`;
    const meanOf = (row: string): number => mean(seeds.map((s) => accuracy(row, s) as number));
    const realZero = seeds.filter((s) => !((accuracy(REAL_ROW, s) as number) > 0));
    if (realZero.length) return `- ${label}: not measurable (\`${REAL_ROW}\` scored 0 at ${seedsText(realZero)})`;
    const ratioAt = (s: number): number => (accuracy(base, s) as number) / (accuracy(REAL_ROW, s) as number);
    const metAt = seeds.filter((s) => ratioAt(s) >= REAL_RATIO_TARGET);
    const missedAt = seeds.filter((s) => ratioAt(s) < REAL_RATIO_TARGET);
    // Met only where every seed meets it, as the significance targets ask of every seed.
    const status = !missedAt.length ? 'met' : !metAt.length ? 'missed' : `met at ${seedsText(metAt)}, missed at ${seedsText(missedAt)}`;
    const q = meanOf(base) / meanOf(REAL_ROW);
    const perSeed = seeds.length > 1 ? `; per seed ${seeds.map((s) => `${(100 * ratioAt(s)).toFixed(1)}%`).join(', ')}` : '';
    const needed = REAL_RATIO_TARGET * meanOf(REAL_ROW);
    const short = meanOf(base) < needed ? `; ${(100 * (needed - meanOf(base))).toFixed(2)} points short of ${pct(needed)}` : '';
    return `- ${label}: ${status}${soFar(real, baseRow)}: ${pct(meanOf(base))} / ${pct(meanOf(REAL_ROW))} = ${(100 * q).toFixed(1)}% (${seedsText(seeds)}${perSeed})${short}`;
  };
  const beats = (other: string): string => {
    const label = `\`${base}\` significantly above \`${other}\``;
    const row = planned(other);
    const baseRow = planned(base);
    if (!row || !baseRow) return `- ${label}: not measurable here (no row '${other}' in this experiment)`;
    const cs = seedComparisons(r, other, base);
    if (!cs.length) return `- ${label}: not yet measurable (no seed where both finished)`;
    return `- ${label}: ${verdict(cs) === 'below' ? 'met' : 'missed'}${soFar(row, baseRow)}: ${base} ${comparisonText(other, fromOtherSide(cs))}`;
  };
  return [ratio(), ...ROWS_TO_BEAT.map(beats)];
}

const VERDICT_WORDS: Record<ReturnType<typeof verdict>, (reference: string) => string> = {
  noise: () => 'within noise',
  above: (reference) => `significantly above ${reference}`,
  below: (reference) => `significantly below ${reference}`,
  opposite: () => 'significant in opposite directions',
};

/**
 * A summary's seed-noise test: its Cochran's Q over every finished seed; a summary written before
 * that was kept falls back on its single seed-to-seed test (the same statistic for two seeds).
 * 'unread': the row has several seeds but neither test (written before both, its pairs files gone).
 */
function rowSeedNoise(s: ExperimentResults['summary'][number]): { q: number; df: number } | null | 'unread' {
  if (s.seedNoise !== undefined) return s.seedNoise;
  const only = s.seedToSeed?.length === 1 ? s.seedToSeed[0] : undefined;
  if (only) return only.b + only.c > 0 ? { q: (only.c - only.b) ** 2 / (only.b + only.c), df: 1 } : null;
  return s.seeds.length > 1 ? 'unread' : null;
}

/**
 * How much the recognizer's training seed alone moves a row (each row's Cochran's Q over its seeds,
 * pooled), and the per-seed tests against the baseline and compareTo rows again with McNemar's width
 * widened by it: a claim that does not survive that is one the training seed could have made.
 */
function seedNoiseSection(r: ExperimentResults): string[] {
  const tests = r.summary.map((s) => ({ s, t: rowSeedNoise(s) }));
  const measured = tests.flatMap(({ s, t }) => (t && t !== 'unread' ? [{ row: s.row, ...t }] : []));
  // A row that cannot be read is named, never silently left out of the pool.
  const unread = tests.filter(({ t }) => t === 'unread').map(({ s }) => s.row);
  const unreadLine = unread.length
    ? [
        `Left out: ${unread.join(', ')} (several seeds, but recorded before the pooled seed test was and its pairs files are not here: restore them and run \`id3 experiment ${r.experiment} --report-only\`).`,
      ]
    : [];
  const noise = seedNoiseDispersion(measured);
  const head = ['### Training-seed noise', ''];
  if (!noise)
    return [
      ...head,
      'Not yet measurable: no row has two finished seeds that disagree on a pair (the seed-to-seed tests measure it).',
      ...unreadLine,
    ];
  const k = noise.df;
  const degrees = `${k} degree${k > 1 ? 's' : ''} of freedom`;
  const share = (t: (typeof measured)[number]): string => `${t.row} ${t.q.toFixed(2)}${t.df > 1 ? ` on ${t.df}` : ''}`;
  const lines = [
    ...head,
    "McNemar treats each recognizer's answers as fixed, so its only noise is which pairs were drawn; retraining with another seed changes",
    `the answers too. Each row's own seeds measure by how much: Cochran's Q over its seeds (for two, its seed-to-seed (c − b)² / (b + c)), summed over ${measured.length} row${measured.length > 1 ? 's' : ''}, is ${noise.chi2.toFixed(2)} (${measured.map(share).join(', ')}),`,
    `χ² p ${formatPValue(noise.p)} on ${degrees} (a row's seeds less one, summed): the net change between a row's own seeds is ${Math.sqrt(noise.dispersion).toFixed(2)}× as wide as McNemar's null`,
    `assumes (dispersion ${noise.chi2.toFixed(2)} / ${k} = ${noise.dispersion.toFixed(2)}, an estimate on ${degrees}).`,
    ...unreadLine,
  ];
  if (noise.dispersion <= 1) return [...lines, 'That is no wider than McNemar assumes: the per-seed tests above stand as they are.'];
  const text = (reference: string, cs: readonly SeedComparison[]): string => {
    const widened = cs.map((c) => ({ ...c, p: mcnemarScaledP(c.b, c.c, noise.dispersion, k) }));
    const before = verdict(cs);
    const after = verdict(widened);
    return `p ${widened.map((c) => formatPValue(c.p)).join(', ')} (McNemar ${cs.map((c) => formatPValue(c.p)).join(', ')}): ${VERDICT_WORDS[after](reference)}${after === before ? '' : ` (was ${VERDICT_WORDS[before](reference)})`}`;
  };
  const rowLines = r.rows
    .filter((x) => x.row !== r.baseline && x.seeds.length > 0)
    .flatMap((x) => {
      const parts = [r.baseline, ...(x.compareTo ? [x.compareTo] : [])].flatMap((reference) => {
        const cs = seedComparisons(r, x.row, reference);
        return cs.length ? [`vs ${reference} ${text(reference, cs)}`] : [];
      });
      const large = largePoseComparisons(r, x.row);
      if (large.length) parts.push(`large-pose quarter vs ${r.baseline} ${text(r.baseline, large)}`);
      return parts.length ? [`- **${x.row}**: ${parts.join('; ')}.`] : [];
    });
  return [
    ...lines,
    noise.p < ALPHA
      ? 'That is significantly wider than McNemar assumes: read the widened tests below.'
      : 'That is not significantly wider than McNemar assumes, so the widened tests below are a conservative check, not a correction the data demand.',
    `Widened (the continuity-corrected statistic over the dispersion, against F(1, ${k}) because the dispersion is itself estimated: the`,
    "quasi-binomial test; never below the exact p). It covers the recognizer's training seed, not the draw of a row's synthetic images,",
    "and it assumes the seed noise grows with the discordant pairs as McNemar's does. By the same rule (a direction only where p < 0.05 at every seed):",
    '',
    ...(rowLines.length ? rowLines : ['No row has been tested against another yet.']),
  ];
}

function readingSection(r: ExperimentResults, handReading: string | undefined): string[] {
  return [
    ...(handReading === undefined
      ? []
      : [
          '## Reading',
          '',
          `Written by hand in [${READING_FILE}](${READING_FILE}) (the report embeds it on every rebuild).`,
          '',
          handReading,
          '',
        ]),
    '## Reading (generated)',
    '',
    `Per row: the mean ${r.benchmark} accuracy difference against \`${r.baseline}\` over the seeds both finished, in points;`,
    `a direction is claimed only where McNemar p < ${ALPHA} in every seed run. What the numbers mean is read by hand in \`${READING_FILE}\` beside this report`,
    '(embedded above when written; `id3 experiment NAME --report-only` rebuilds the report after editing it).',
    '',
    ...r.rows.filter((x) => x.row !== r.baseline && x.seeds.length > 0).map((x) => readingLine(r, x)),
    '',
    ...seedNoiseSection(r),
    '',
    '### Targets',
    '',
    ...targetLines(r),
  ];
}

function runsTable(r: ExperimentResults): string[] {
  return [
    '## Runs',
    '',
    'Recognizer, on its own training set: accuracy (%) on its last batches / on held-out images of its training identities',
    '(one each, nearest class centre). A wide gap: new images of a training identity are not recognised as it.',
    '',
    '| row | seed | run | accuracy | b / c | large-pose accuracy (pairs) | recognizer: batch / held-out | stages taken from other runs | skipped (current) | config |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...r.results.map(
      (x) =>
        `| ${x.row} | ${x.seed} | \`${x.runName}\` | ${pct(x.lfwAccuracy)} ± ${pct(x.lfwStd)} | ${x.mcnemarVsID3 ? `${x.mcnemarVsID3.b} / ${x.mcnemarVsID3.c}` : '—'} | ${x.lfwLargePoseAccuracy === null ? '—' : `${pct(x.lfwLargePoseAccuracy)} (${x.lfwLargePosePairs ?? '?'})`} | ${pctOrDash(x.frTrainBatchAccuracy)} / ${pctOrDash(x.frTrainValidationAccuracy)} | ${
          Object.entries(x.reusedStages)
            .map(([stage, from]) => `${stage} (${from})`)
            .join(', ') || '—'
        } | ${x.skippedStages.join(', ') || '—'} | ${x.config ? `[config](${x.config})` : '—'} |`,
    ),
    ...(r.results.some((x) => x.compareTo)
      ? [
          '',
          'Rows compared with another row as well (b = that row right, this one wrong; c = the reverse):',
          '',
          ...r.results
            .filter((x) => x.compareTo)
            .map((x) =>
              x.mcnemarVsCompareTo && typeof x.mcnemarPVsCompareTo === 'number'
                ? `- ${x.row} (seed ${x.seed}) vs ${x.compareTo}: b / c ${x.mcnemarVsCompareTo.b} / ${x.mcnemarVsCompareTo.c}, McNemar p ${formatPValue(x.mcnemarPVsCompareTo)}`
                : `- ${x.row} (seed ${x.seed}) vs ${x.compareTo}: not yet tested (${x.compareTo} seed ${x.seed} not yet run)`,
            ),
        ]
      : []),
  ];
}

/**
 * The run whose sample stage made an entry's synthetic set: its own, or (followed through the
 * experiment's entries) the run it was taken from. Seeds of a row with one source trained on one set.
 */
function sampleSource(r: ExperimentResults, x: ExperimentRowResult): string {
  let source = x.runName;
  let from: string | undefined = x.reusedStages.sample;
  const seen = new Set([source]);
  while (from !== undefined && !seen.has(from)) {
    source = from;
    seen.add(source);
    from = r.results.find((y) => y.runName === source)?.reusedStages.sample;
  }
  return source;
}

/** Entries grouped by the synthetic set they trained on (one group per sample source), in the tables' order. */
function bySampleSource(r: ExperimentResults, entries: readonly ExperimentRowResult[]): ExperimentRowResult[][] {
  const groups = new Map<string, ExperimentRowResult[]>();
  for (const x of entries) {
    const source = sampleSource(r, x);
    groups.set(source, [...(groups.get(source) ?? []), x]);
  }
  return [...groups.values()];
}

/** Each synthetic set's dataset card in numbers, once per set (seeds that trained on one set share a line). */
function trainingSetsTable(r: ExperimentResults): string[] {
  const sets = bySampleSource(
    r,
    r.results.filter((x) => x.stageVersions?.sample !== undefined),
  );
  if (!sets.length) return [];
  const carded = sets.filter((xs) => xs.some((x) => x.trainingSetCard));
  const missing = sets.filter((xs) => !xs.some((x) => x.trainingSetCard));
  const ratio = (v: number, of: number): string => (of ? pct(v / of) : '—');
  const r2 = (v: number | null): string => (v === null ? '—' : v.toFixed(2));
  return [
    '## The synthetic training sets (dataset cards)',
    '',
    "Each sampled set as its dataset card measured it, once per set: images kept of those generated (the rest rejected as off-identity by the teacher's",
    "filter, or as no face by the landmark check); verification accuracy (%) of the set's own same- vs different-identity pairs by the teacher",
    "and by the card's independent embedder; the requested yaw and age against those read back from the images (Pearson r).",
    '',
    '| row | seeds | identities | images / generated (kept %) | rejected: off-identity / no face | verification: teacher / independent | yaw r | age r |',
    '|---|---|---|---|---|---|---|---|',
    ...carded.map((xs) => {
      const c = xs.find((x) => x.trainingSetCard)?.trainingSetCard as TrainingSetCard;
      return `| ${xs[0].row} | ${xs.map((x) => x.seed).join(', ')} | ${c.identities} | ${c.images} / ${c.generated} (${ratio(c.images, c.generated)}) | ${c.rejectedSimilarity} / ${c.rejectedFace} | ${pctOrDash(c.teacherVerificationAccuracy)} / ${pctOrDash(c.checkVerificationAccuracy)} | ${r2(c.yawCorrelation)} | ${r2(c.ageCorrelation)} |`;
    }),
    ...(missing.length
      ? [
          '',
          `Not listed: ${missing.map((xs) => `${xs[0].row} (${seedsText(xs.map((x) => x.seed))})`).join(', ')} — no card recorded with the entry (recorded before cards were), and none to read from a run on this machine (its figures below still show the set).`,
        ]
      : []),
  ];
}

function figuresTable(r: ExperimentResults): string[] {
  const seeds = [...new Set(r.rows.flatMap((x) => x.seeds))].sort((a, b) => a - b);
  // In the tables' order (the summary's: the experiment's run order), rows with a finished run.
  const rows = r.summary.flatMap((s) => r.rows.filter((x) => x.row === s.row));
  const curve = (row: string, seed: number): string => {
    const x = r.results.find((y) => y.row === row && y.seed === seed);
    const file = x?.figures['training-curve'];
    return file ? `![${row} seed ${seed}: training curve](${file})` : x ? '—' : 'not yet run';
  };
  /** One figure per synthetic set the row's seeds trained on (one, when they share the sample). */
  const card = (row: string, name: RunFigure, what: string): string => {
    const images = bySampleSource(
      r,
      r.results.filter((y) => y.row === row && y.figures[name]),
    ).map((xs) => `![${row} ${seedsText(xs.map((x) => x.seed))}: ${what}](${xs[0].figures[name] as string})`);
    return images.length ? images.join(' ') : '—';
  };
  return [
    '## Training curves and dataset cards',
    '',
    "Per row: fr-train's training curve at each seed and the dataset card's sample grid and similarity plot (copies under",
    '`figures/`), shown once for seeds that trained on the same synthetic set (its sample stage taken from the same run).',
    '',
    `| row | ${seeds.map((s) => `training curve, seed ${s}`).join(' | ')} | sample grid | similarity |`,
    `|---|${seeds.map(() => '---|').join('')}---|---|`,
    ...rows.map(
      (x) =>
        `| ${x.row} | ${seeds.map((s) => (x.seeds.includes(s) ? curve(x.row, s) : '—')).join(' | ')} | ${card(x.row, 'grid', 'sample grid')} | ${card(x.row, 'similarity', 'similarity')} |`,
    ),
  ];
}

const withBlankLine = (lines: string[]): string[] => (lines.length ? [...lines, ''] : []);

function reportMarkdown(r: ExperimentResults, handReading?: string): string {
  return [
    `# Experiment \`${r.experiment}\``,
    '',
    `Rebuilt after each finished run (updated ${r.updatedAt}); every number is in [results.json](results.json)${r.experimentFile ? `, the experiment file as planned in [${r.experimentFile}](${r.experimentFile})` : ''}.`,
    '',
    '## Table 1',
    '',
    `Accuracy (%) per benchmark, mean over the seeds each row finished (the Reading compares two rows on the seeds both finished);`,
    `TAR (%) at FAR = 1e-3 and large-pose accuracy (%) on ${r.benchmark}; McNemar p per seed.`,
    '',
    ...paperLayoutTable(r),
    '',
    `## ${r.benchmark} in detail`,
    '',
    ...detailTable(r),
    '',
    ...expectedSection(r),
    '',
    ...readingSection(r, handReading),
    '',
    ...runsTable(r),
    '',
    ...withBlankLine(trainingSetsTable(r)),
    ...figuresTable(r),
    ...(r.notYetRun.length ? ['', `Not finished yet: ${r.notYetRun.map((n) => `\`${n}\``).join(', ')}.`] : []),
    ...(r.pending.length ? ['', '## Pending rows (not run)', '', ...r.pending.map((p) => `- **${p.row}**: ${p.why}`)] : []),
    '',
  ].join('\n');
}
