import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { hashJson, mergeConfig, type StageManifest } from '@id3/core';
import { poseBinnedAccuracy } from '@id3/eval';
import {
  buildPipelineConfig,
  experimentSchema,
  loadExperiment,
  planExperiment,
  rebuildExperimentReport,
  recordExperimentRun,
  resultsConfigHash,
  rootMessage,
  runsToStart,
  reuseFinishedStages,
  stageRegistry,
  validateStageSection,
  type ExperimentPlan,
  type ExperimentResults,
  type ExperimentRun,
} from '../index';
import { formatPValue, resultsOrder } from '../experiment';
import type { StageSummary } from '../contracts';
import { ApplicationFailure, CancelledFailure, ChildWorkflowFailure, RetryState } from '@temporalio/common';

function writeExperiment(dir: string, name: string, value: unknown): void {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(value));
}

const demoRows = { description: 'x', profile: 'demo', seeds: [0], rows: [{ name: 'ID3', overrides: {} }] };

describe('experiment files', () => {
  let experiments: string;
  beforeAll(() => {
    process.env.ID3_RUNS_DIR = mkdtempSync(join(tmpdir(), 'id3-exp-runs-'));
    experiments = mkdtempSync(join(tmpdir(), 'id3-exp-files-'));
  });
  afterEach(() => delete process.env.ID3_EXPERIMENTS_DIR);

  it('the repository experiments are valid: table1 has every row at 2 seeds (ID3 and no-identity-loss at 3), the baseline row first, row by row', () => {
    const table1 = planExperiment({ name: 'table1' });
    expect(table1.benchmark).toBe('LFW');
    expect(table1.runs).toHaveLength(20);
    expect(table1.runs.slice(0, 4).map((r) => r.runName)).toEqual(['table1-ID3-s0', 'table1-ID3-s1', 'table1-ID3-s2', 'table1-real-s0']);
    expect(table1.runs.filter((r) => r.row === 'no-identity-loss').map((r) => r.seed)).toEqual([0, 1, 2]);
    expect(table1.runs.find((r) => r.row === 'real')?.input.stages).toEqual(['prepare', 'fr-train', 'eval']);
    expect(table1.runs.find((r) => r.row === 'crowded-random')?.compareTo).toBe('crowded-tammes');
    const demo = planExperiment({ name: 'demo-table1' });
    expect(demo.runs.map((r) => [r.row, r.seed, r.input.overrides?.seed])).toEqual([
      ['ID3', 0, 0],
      ['ID3', 1, 1],
      ['no-guidance', 0, 0],
      ['no-guidance', 1, 1],
    ]);
    // Rows side by side plan the same order: the workflow keeps runs with one dataKey apart.
    expect(planExperiment({ name: 'demo-table1', maxParallelRows: 2 }).runs).toEqual(demo.runs);
    // results.json lists them seed by seed.
    expect(resultsOrder(demo.runs).map((r) => r.runName)).toEqual([
      'demo-table1-ID3-s0',
      'demo-table1-no-guidance-s0',
      'demo-table1-ID3-s1',
      'demo-table1-no-guidance-s1',
    ]);
  });

  it("a run's dataKey names the data it trains on: shared by a row's seeds where the row pins its sampling, and only then", () => {
    const key = (plan: ReturnType<typeof planExperiment>, runName: string): string | undefined =>
      plan.runs.find((r) => r.runName === runName)?.dataKey;
    const table1 = planExperiment({ name: 'table1' });
    const rows = [...new Set(table1.runs.map((r) => r.row))];
    // table1 pins prepare … sample to seed 0: both seeds of a row train on one set.
    for (const row of rows) expect(key(table1, `table1-${row}-s1`)).toBe(key(table1, `table1-${row}-s0`));
    // Every row changes something upstream of training (real runs no sampling stages at all).
    expect(new Set(rows.map((row) => key(table1, `table1-${row}-s0`))).size).toBe(rows.length);
    // demo-table1 samples with each run's own seed: its seeds make different sets.
    const demo = planExperiment({ name: 'demo-table1' });
    expect(key(demo, 'demo-table1-ID3-s1')).not.toBe(key(demo, 'demo-table1-ID3-s0'));
    // Training settings are not part of it.
    const source = JSON.parse(readFileSync(join(__dirname, '../../../experiments/table1.json'), 'utf8')) as {
      publish?: string;
      rows: { name: string; overrides: Record<string, unknown> }[];
    };
    delete source.publish;
    source.rows = [
      ...source.rows.filter((r) => r.name === 'ID3'),
      { name: 'longer', overrides: { 'fr-train': { trainer: { steps: 3000 } } } },
    ];
    writeExperiment(experiments, 'keys', source);
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    const plan = planExperiment({ name: 'keys' });
    expect(key(plan, 'keys-longer-s0')).toBe(key(plan, 'keys-ID3-s0'));
    expect(key(plan, 'keys-ID3-s0')).toBe(key(table1, 'table1-ID3-s0'));
  });

  it.each([
    [{ ...demoRows, seeds: [] }, /bad\.json.*field 'seeds': Array must contain at least 1/],
    [{ ...demoRows, baseline: 'nope' }, /field 'baseline': no row is named 'nope'/],
    [{ ...demoRows, rows: [...demoRows.rows, { name: 'ID3', overrides: {} }] }, /field 'rows\[1\]\.name': row 'ID3' is named twice/],
    [{ ...demoRows, rows: [{ name: 'ID3', overrides: {}, colour: 1 }] }, /field 'rows\[0\]\.colour': Unrecognized key/],
    [
      { ...demoRows, rows: [...demoRows.rows, { name: 'b', overrides: { anchors: { n: 'many' } } }] },
      /bad\.json: field 'rows\[1\]' \(row 'b', seed 0\): .*field 'anchors\.n': Expected number/,
    ],
    [
      {
        ...demoRows,
        rows: [...demoRows.rows, { name: 'b', overrides: { eval: { benchmarks: [{ kind: 'lfw', name: 'LFW', folds: 2 }] } } }],
      },
      /row 'b', seed 0\): eval benchmark 'LFW'/,
    ],
  ])('a bad experiment file is refused naming the file and field (%#)', (value, message) => {
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    writeExperiment(experiments, 'bad', value);
    expect(() => planExperiment({ name: 'bad' })).toThrow(message);
  });

  it('table1 writes its expectation on every row before running, and publishes to docs/table1', () => {
    const { experiment } = loadExperiment('table1');
    expect(experiment.publish).toBe('docs/table1');
    for (const row of experiment.rows) expect(row.expected).toEqual(expect.stringMatching(/\S/));
    expect(experiment.rows.map((r) => r.name)).toEqual([
      'real',
      'ID3',
      'no-guidance',
      'no-identity-loss',
      'random-anchors',
      'fixed-attributes',
      'band-0.5-0.7',
      'crowded-tammes',
      'crowded-random',
    ]);
    // The plan carries them to the results, with the file's text as planned.
    const plan = planExperiment({ name: 'table1' });
    expect(plan.rows?.find((r) => r.row === 'crowded-random')?.expected).toMatch(/below crowded-tammes/);
    expect(plan.publish).toBe('docs/table1');
    expect(JSON.parse(plan.source ?? '{}')).toMatchObject({ publish: 'docs/table1' });
    // demo-table1 publishes nowhere (its tests must not write into docs/).
    expect(planExperiment({ name: 'demo-table1' }).publish).toBeUndefined();
  });

  it('the schema accepts a row expectation, and refuses an empty one', () => {
    const withExpected = { ...demoRows, rows: [{ name: 'ID3', overrides: {}, expected: 'the baseline' }] };
    expect(experimentSchema.parse(withExpected).rows[0].expected).toBe('the baseline');
    expect(experimentSchema.safeParse({ ...demoRows, rows: [{ name: 'ID3', expected: '' }] }).success).toBe(false);
  });

  it.each(['../x', 'docs/../../x', '.', '/elsewhere/table1'])(
    "a publish folder outside the repository ('%s') is refused naming the field",
    (publish) => {
      process.env.ID3_EXPERIMENTS_DIR = experiments;
      process.env.ID3_REPO_ROOT = mkdtempSync(join(tmpdir(), 'id3-exp-repo-'));
      try {
        writeExperiment(experiments, 'bad-publish', { ...demoRows, publish });
        expect(() => planExperiment({ name: 'bad-publish' })).toThrow(
          /bad-publish\.json: field 'publish': .* is not a folder inside the repository/,
        );
        writeExperiment(experiments, 'good-publish', { ...demoRows, publish: 'docs/x' });
        expect(planExperiment({ name: 'good-publish' }).publish).toBe('docs/x');
      } finally {
        delete process.env.ID3_REPO_ROOT;
      }
    },
  );

  it('a seed subset must be seeds of the file', () => {
    expect(() => planExperiment({ name: 'demo-table1', seeds: [5] })).toThrow(
      /field 'seeds\[0\]': seed 5 is not one of .*demo-table1\.json's seeds \(0, 1\)/,
    );
  });

  it('a row subset must be rows of the file that run, and narrows what starts', () => {
    expect(() => planExperiment({ name: 'demo-table1', rows: ['ID3', 'nope'] })).toThrow(
      /field 'rows\[1\]': no row 'nope' in .*demo-table1\.json; its rows that run: ID3, no-guidance/,
    );
    const plan = planExperiment({ name: 'demo-table1', rows: ['no-guidance'] });
    expect(runsToStart(plan, { rows: ['no-guidance'] }).map((r) => r.runName)).toEqual([
      'demo-table1-no-guidance-s0',
      'demo-table1-no-guidance-s1',
    ]);
    expect(runsToStart(plan, { rows: ['no-guidance'], seeds: [1] }).map((r) => r.runName)).toEqual(['demo-table1-no-guidance-s1']);
    expect(runsToStart({ ...plan, adopted: ['demo-table1-no-guidance-s0'] }, { rows: ['no-guidance'] }).map((r) => r.runName)).toEqual([
      'demo-table1-no-guidance-s1',
    ]);
    expect(runsToStart(plan, {}).map((r) => r.runName)).toEqual(plan.runs.map((r) => r.runName));
    expect(() => planExperiment({ name: 'demo-table1', rows: [] })).toThrow(/field 'rows': empty; name at least one, or leave it out/);
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    writeExperiment(experiments, 'subset-pending', {
      ...demoRows,
      rows: [...demoRows.rows, { name: 'later', overrides: {}, pending: 'no knob yet' }],
    });
    expect(() => planExperiment({ name: 'subset-pending', rows: ['later'] })).toThrow(
      /field 'rows\[0\]': row 'later' is pending in .*subset-pending\.json \(no knob yet\); its rows that run: ID3$/,
    );
  });

  it("a failed run is reported by its innermost cause's message, a cancelled one as cancelled", () => {
    const stage = ApplicationFailure.create({ message: 'field x: bad', type: 'InvalidInput' });
    const child = (cause: Error): ChildWorkflowFailure =>
      new ChildWorkflowFailure('default', { workflowId: 'w', runId: 'r' }, 'pipeline', RetryState.NON_RETRYABLE_FAILURE, cause);
    expect(rootMessage(child(child(stage)))).toBe('field x: bad');
    expect(rootMessage(child(new CancelledFailure('')))).toMatch(/^cancelled/);
    expect(rootMessage('plain')).toBe('plain');
  });

  it('a pending row stays in the file but is not run, with its reason', () => {
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    writeExperiment(experiments, 'with-pending', {
      ...demoRows,
      rows: [...demoRows.rows, { name: 'later', overrides: {}, pending: 'its knob does not exist yet' }],
    });
    const plan = planExperiment({ name: 'with-pending' });
    expect(plan.runs.map((r) => r.row)).toEqual(['ID3']);
    expect(plan.pending).toEqual([{ row: 'later', why: 'its knob does not exist yet' }]);
  });
});

/** A fake finished stage: its manifest (config hash as the stage computes it) and one output file. */
function finishStage(runsDir: string, run: ExperimentRun, stage: string, inputs: Record<string, string>, outputs: readonly string[]): void {
  const section = validateStageSection(buildPipelineConfig(run.input), stage);
  const dir = join(runsDir, run.runName, stage);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'data.bin'), `${run.runName}/${stage}`);
  const manifest: Partial<StageManifest> = {
    format: 'id3-stage-manifest/1',
    stage,
    stageVersion: stageRegistry().get(stage)?.version ?? 0,
    configHash: hashJson({ stage, config: section }),
    inputs: Object.fromEntries(Object.entries(inputs).map(([k, sha256]) => [k, { path: 'x', sha256, bytes: 1 }])),
    outputs: Object.fromEntries(outputs.map((k) => [k, { path: `${stage}/data.bin`, sha256: `h-${stage}-${k}`, bytes: 1 }])),
    metrics: {},
  };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
}

describe('reusing finished stages of sibling runs', () => {
  let runsDir: string;
  let plan: ExperimentPlan;
  beforeEach(() => {
    runsDir = mkdtempSync(join(tmpdir(), 'id3-exp-reuse-'));
    process.env.ID3_RUNS_DIR = runsDir;
    plan = planExperiment({ name: 'demo-table1' });
  });

  it('mirrors stages whose config and inputs equal, by hard links, and stops where they differ', () => {
    const [id3, noGuidance, , noGuidanceS1] = resultsOrder(plan.runs);
    const reads = (stage: string) => {
      const def = stageRegistry().get(stage);
      return def?.reads?.(validateStageSection(buildPipelineConfig(id3.input), stage)) ?? {};
    };
    const prepareOutputs = reads('train-diffusion').prepare ?? [];
    finishStage(runsDir, id3, 'prepare', {}, prepareOutputs);
    finishStage(runsDir, id3, 'train-diffusion', Object.fromEntries(prepareOutputs.map((k) => [k, `h-prepare-${k}`])), ['ema']);
    finishStage(runsDir, id3, 'anchors', {}, ['anchors']);
    // Same config as no-guidance's, but made from other anchors: not its input, not reused.
    finishStage(runsDir, id3, 'identities', { anchors: 'other' }, ['embeddings']);
    finishStage(runsDir, id3, 'sample', {}, ['crops']); // guidance differs: another config

    const reuse = reuseFinishedStages(noGuidance, [id3.runName]);
    expect(reuse.reused).toEqual({ prepare: id3.runName, 'train-diffusion': id3.runName, anchors: id3.runName });
    const file = (run: string, stage: string) => join(runsDir, run, stage, 'data.bin');
    expect(statSync(file(noGuidance.runName, 'train-diffusion')).ino).toBe(statSync(file(id3.runName, 'train-diffusion')).ino);
    expect(JSON.parse(readFileSync(join(runsDir, noGuidance.runName, 'reused.json'), 'utf8'))).toEqual(reuse.reused);
    // A stage the run has finished itself is never replaced.
    expect(reuseFinishedStages(noGuidance, [id3.runName]).reused).toEqual({});
    expect(reuseFinishedStages({ ...noGuidanceS1, input: { ...noGuidanceS1.input, force: true } }, [id3.runName]).reused).toEqual({});

    // A reused stage whose config then changes will rerun here: it gets its own copy of the
    // shared files first (a stage that writes in place must not reach the sibling's).
    const changed = {
      ...noGuidance,
      input: {
        ...noGuidance.input,
        overrides: mergeConfig(noGuidance.input.overrides, { anchors: { iterations: 30 } }) as Record<string, unknown>,
      },
    };
    expect(reuseFinishedStages(changed, [id3.runName]).reused).toEqual({});
    expect(statSync(file(noGuidance.runName, 'anchors')).ino).not.toBe(statSync(file(id3.runName, 'anchors')).ino);
    expect(readFileSync(file(noGuidance.runName, 'anchors'), 'utf8')).toBe(`${id3.runName}/anchors`);
    expect(statSync(file(noGuidance.runName, 'prepare')).ino).toBe(statSync(file(id3.runName, 'prepare')).ino); // unchanged: still shared
    // …and it is no longer recorded as taken from the sibling (reports name where a stage came from).
    expect(JSON.parse(readFileSync(join(runsDir, noGuidance.runName, 'reused.json'), 'utf8'))).toEqual({
      prepare: id3.runName,
      'train-diffusion': id3.runName,
    });
  });

  it('takes a stage from a run outside the experiment by copy, after the siblings', () => {
    const [id3, noGuidance] = resultsOrder(plan.runs);
    // A profile run made before the experiment, same config and inputs for prepare only.
    const outside = { ...id3, runName: 'profile-run' };
    finishStage(runsDir, outside, 'prepare', {}, ['crops']);
    const reuse = reuseFinishedStages(noGuidance, [id3.runName]);
    expect(reuse.reused).toEqual({ prepare: 'profile-run' });
    const file = (run: string) => join(runsDir, run, 'prepare', 'data.bin');
    expect(readFileSync(file(noGuidance.runName), 'utf8')).toBe(readFileSync(file('profile-run'), 'utf8'));
    // Copied: the outside run may rewrite its files in place later, and nothing unshares it.
    expect(statSync(file(noGuidance.runName)).ino).not.toBe(statSync(file('profile-run')).ino);
    // A sibling with the same stage wins over the outsider (it links).
    finishStage(runsDir, id3, 'prepare', {}, ['crops']);
    const next = resultsOrder(plan.runs)[2];
    expect(reuseFinishedStages(next, [id3.runName, noGuidance.runName]).reused).toEqual({ prepare: id3.runName });
  });
});

describe('experiment results', () => {
  let runsDir: string;
  let plan: ExperimentPlan;
  beforeEach(() => {
    runsDir = mkdtempSync(join(tmpdir(), 'id3-exp-results-'));
    process.env.ID3_RUNS_DIR = runsDir;
    plan = planExperiment({ name: 'demo-table1' });
  });

  /**
   * A fake finished row: eval and fr-train manifests, the model card and a pairs file. Yaw
   * differences: pairs 0-2 at 30°, 25°, 20°, the rest 0°, 1°, …: the top quartile of 10 pairs is
   * ceil(2.5) = 3 pairs, 0-2. `yaw: null` writes what an eval before yaw wrote.
   */
  function finishRow(
    run: ExperimentRun,
    correct: boolean[],
    issame = correct.map((_, i) => i % 2 === 0),
    yaw: (number | null)[] | null = correct.map((_, i) => [30, 25, 20][i] ?? i - 3),
    /** Further eval metrics (other benchmarks), fr-train's metrics, and whether the run has its figures. */
    extra: { metrics?: Record<string, number>; frMetrics?: Record<string, number>; figures?: boolean } = {},
  ): void {
    const dir = join(runsDir, run.runName);
    const put = (rel: string, value: unknown) => {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), JSON.stringify(value));
    };
    const accuracy = correct.filter(Boolean).length / correct.length;
    const folds = correct.map((_, i) => i % 2);
    const pairsFile = {
      benchmark: plan.benchmark,
      pairs: correct.length,
      folds,
      issame,
      correct,
      ...(yaw ? { yawDifference: yaw } : {}),
    };
    put('eval/pairs-LFW40pairsample.json', pairsFile);
    // The eval stage's own metrics of the binning (checked against known values in the tests).
    const pose = yaw ? poseBinnedAccuracy(yaw, correct) : undefined;
    put('eval/manifest.json', {
      format: 'id3-stage-manifest/1',
      stage: 'eval',
      outputs: {
        pairs_LFW40pairsample: {
          path: 'eval/pairs-LFW40pairsample.json',
          sha256: createHash('sha256').update(JSON.stringify(pairsFile)).digest('hex'),
          bytes: 1,
        },
      },
      metrics: {
        LFW40pairsample_accuracy: accuracy,
        LFW40pairsample_accuracyStd: 0.05,
        LFW40pairsample_tarAtFar1e3: accuracy / 2,
        ...extra.metrics,
        ...(pose
          ? { LFW40pairsample_poseTopQuartileAccuracy: pose.top.accuracy, LFW40pairsample_poseTopQuartilePairs: pose.top.pairs }
          : {}),
      },
    });
    put('fr-train/model/card.json', { dataset: { identities: 3, trainImages: 6, validationImages: 3 } });
    put('fr-train/manifest.json', {
      format: 'id3-stage-manifest/1',
      stage: 'fr-train',
      outputs: { card: { path: 'fr-train/model/card.json', sha256: 'x', bytes: 1 } },
      metrics: extra.frMetrics ?? {},
    });
    if (extra.figures)
      for (const f of ['fr-train/training-curve.png', 'sample/card/grid.png', 'sample/card/similarity.png']) {
        mkdirSync(dirname(join(dir, f)), { recursive: true });
        writeFileSync(join(dir, f), `png of ${run.runName}/${f}`);
      }
  }
  const done = { stages: [] };
  const none = (run: ExperimentRun) => ({ runName: run.runName, reused: {} });
  const read = () => JSON.parse(readFileSync(join(runsDir, 'demo-table1', 'results.json'), 'utf8')) as ExperimentResults;

  it('records rows as they finish, McNemar against the baseline of the same seed, mean ± std over seeds', () => {
    const [id3s0, ngs0, id3s1, ngs1] = resultsOrder(plan.runs);
    const all = Array.from({ length: 10 }, () => true);
    // no-guidance first: no baseline yet, so no p; it appears once ID3 of that seed is recorded.
    finishRow(ngs0, [false, false, false, false, false, false, true, true, true, true]);
    recordExperimentRun(plan, ngs0, done, none(ngs0));
    expect(read().results[0]).toMatchObject({ row: 'no-guidance', mcnemarPVsID3: null, mcnemarPLargePoseVsID3: null });
    finishRow(id3s0, all);
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    const r = read();
    expect(r.results.map((x) => x.row)).toEqual(['ID3', 'no-guidance']);
    expect(r.results[1]).toMatchObject({
      lfwAccuracy: 0.4,
      lfwStd: 0.05,
      identities: 3,
      imagesPerIdentity: 3,
      mcnemarVsID3: { b: 6, c: 0 },
      // Its three largest-yaw pairs (0-2) are all wrong; ID3 gets them right: b = 3, c = 0.
      lfwLargePoseAccuracy: 0,
      lfwLargePosePairs: 3,
    });
    expect(r.results[1].mcnemarPVsID3).toBeCloseTo(2 * 0.5 ** 6, 12);
    expect(r.results[1].mcnemarPLargePoseVsID3).toBeCloseTo(2 * 0.5 ** 3, 12);
    expect(r.results[0]).toMatchObject({ row: 'ID3', lfwLargePoseAccuracy: 1, lfwLargePosePairs: 3, mcnemarPLargePoseVsID3: null });
    expect(r.notYetRun).toEqual([id3s1.runName, ngs1.runName]);

    finishRow(
      id3s1,
      all.map((_, i) => i !== 0),
    );
    recordExperimentRun(plan, id3s1, done, none(id3s1));
    const s = read().summary.find((x) => x.row === 'ID3');
    expect(s?.seeds).toEqual([0, 1]);
    expect(s?.lfwAccuracyMean).toBeCloseTo(0.95, 12);
    expect(s?.lfwAccuracyStdOverSeeds).toBeCloseTo(Math.sqrt(0.005), 12); // sample std of 1.0 and 0.9
    // Large pose: seed 1 misses pair 0, one of its three: 1 and 2/3 → mean 5/6, sample std √2/6.
    expect(s?.lfwLargePoseAccuracyMean).toBeCloseTo(5 / 6, 12);
    expect(s?.lfwLargePoseAccuracyStdOverSeeds).toBeCloseTo(Math.SQRT2 / 6, 12);
    expect(s?.mcnemarPLargePoseVsID3).toEqual([null, null]);
    const report = readFileSync(join(runsDir, 'demo-table1', 'report.md'), 'utf8');
    expect(report).toMatch(/\| ID3 \| 0, 1 \| 95\.00 ± 7\.07 \|/);
    expect(report).toMatch(/\| row \| seeds \| .* \| large-pose accuracy \| large-pose McNemar p \|/);
    expect(report).toMatch(/\| ID3 \| 0, 1 \| 95\.00 ± 7\.07 \| .* \| 83\.33 ± 23\.57 \| —, — \|/);
    // Seed to seed: ID3's seeds disagree on pair 0 alone (seed 0 right: b = 1, c = 0); one seed has no such test.
    expect(s?.seedToSeed).toEqual([{ seeds: [0, 1], b: 1, c: 0, p: expect.closeTo(1, 12) }]);
    expect(report).toMatch(/^\| ID3 \| 0, 1 \| 95\.00 ± 7\.07 \| .* \| 1 \/ 0, p 1\.0 \|$/m);
    expect(report).toMatch(/^\| no-guidance \| 0 \| 40\.00 \(1 seed\) \| .* \| — \|$/m);
    // One seed has no spread over seeds: it says so instead of a "± 0.00".
    expect(report).toMatch(/\| no-guidance \| 0 \| 40\.00 \(1 seed\) \| .* \| 0\.00 \(1 seed\) \| 0\.25 \|/);
    // Large pose at seed 0: no-guidance misses all 3 of ID3's quarter (b = 3, c = 0): −100 points, p 0.25 (no claim).
    expect(r.results[1].mcnemarLargePoseVsID3).toMatchObject({ b: 3, c: 0, pairs: 3 });
    expect(report).toContain('On the large-pose quarter: −100.00 points vs ID3 (seed 0): within noise (p ≥ 0.05): p 0.25.');
    expect(report).toMatch(/\| no-guidance \| 0 \| `[^`]+` \| 40\.00 ± 5\.00 \| 6 \/ 0 \| 0\.00 \(3\) \|/);

    // An eval from before yaw was recorded: no large-pose accuracy, no large-pose McNemar.
    finishRow(ngs1, [false, ...all.slice(1)], undefined, null);
    recordExperimentRun(plan, ngs1, done, none(ngs1));
    expect(read().results.find((x) => x.row === 'no-guidance' && x.seed === 1)).toMatchObject({
      lfwLargePoseAccuracy: null,
      lfwLargePosePairs: null,
      mcnemarPLargePoseVsID3: 1, // the baseline's file has yaw: its top 3, where ng s1 misses pair 0 as ID3 s1 does
    });
    const ng = read().summary.find((x) => x.row === 'no-guidance');
    expect([ng?.lfwLargePoseAccuracyMean, ng?.lfwLargePoseAccuracyStdOverSeeds]).toEqual([0, 0]); // over seed 0 only
    // no-guidance's seed 1 gets pairs 1-5 right that its seed 0 missed, and loses none: b = 0, c = 5, p = 2 · 0.5^5.
    expect(ng?.seedToSeed).toEqual([{ seeds: [0, 1], b: 0, c: 5, p: expect.closeTo(0.0625, 12) }]);
    expect(readFileSync(join(runsDir, 'demo-table1', 'report.md'), 'utf8')).toMatch(
      /^\| no-guidance \| 0, 1 \| .* \| 0 \/ 5, p 0\.06[23] \|$/m,
    );
    // A summary written before seed-to-seed tests were gets them from the pairs files on a rebuild (--report-only).
    const recorded = read();
    writeFileSync(
      join(runsDir, 'demo-table1', 'results.json'),
      JSON.stringify({ ...recorded, summary: recorded.summary.map(({ seedToSeed: _, ...older }) => older) }),
    );
    rebuildExperimentReport('demo-table1');
    expect(read().summary.map((x) => x.seedToSeed)).toEqual(recorded.summary.map((x) => x.seedToSeed));

    // Pairs that are not the same pairs are refused, naming both files.
    finishRow(ngs1, all, all);
    expect(() => recordExperimentRun(plan, ngs1, done, none(ngs1))).toThrow(/are not the same pairs/);
  });

  it('a rerun that computed nothing keeps the record of the run that made the result', () => {
    const [id3s0] = resultsOrder(plan.runs);
    const stages = (skipped: readonly string[]) => ({
      stages: ['fr-train', 'eval'].map((stage) => ({ stage, skipped: skipped.includes(stage) }) as StageSummary),
    });
    finishRow(
      id3s0,
      Array.from({ length: 10 }, () => true),
    );
    recordExperimentRun(plan, id3s0, stages([]), none(id3s0));
    const made = read().results[0];
    expect(made.skippedStages).toEqual([]);
    // Restarted (e.g. for its other seed): every stage current, the same pairs file.
    recordExperimentRun(plan, id3s0, stages(['fr-train', 'eval']), none(id3s0));
    expect(read().results[0]).toMatchObject({ skippedStages: [], finishedAt: made.finishedAt });
    // A rerun that made the result again (eval ran) is the record now.
    recordExperimentRun(plan, id3s0, stages(['fr-train']), none(id3s0));
    expect(read().results[0].skippedStages).toEqual(['fr-train']);
    // Every stage skipped but the pairs differ (the run directory is another result): recorded as it is.
    finishRow(id3s0, [false, ...Array.from({ length: 9 }, () => true)]);
    recordExperimentRun(plan, id3s0, stages(['fr-train', 'eval']), none(id3s0));
    expect(read().results[0]).toMatchObject({ skippedStages: ['fr-train', 'eval'], lfwAccuracy: 0.9 });
  });

  it('an entry stands through an edit of the profile prose, not of a setting', () => {
    const config = buildPipelineConfig({ profile: 'demo' });
    const hash = resultsConfigHash(config);
    expect(resultsConfigHash({ ...config, description: 'reworded for readers' } as typeof config)).toBe(hash);
    expect(resultsConfigHash(mergeConfig(config, { 'fr-train': { select: { perIdentity: 3 } } }) as typeof config)).not.toBe(hash);
  });

  it('drops entries recorded under another config of the row', () => {
    const [id3s0, ngs0] = resultsOrder(plan.runs);
    finishRow(id3s0, [true, false]);
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    const changed = { ...plan, runs: plan.runs.map((r) => ({ ...r, configHash: `${r.configHash}-changed` })) };
    const changedNgs0 = { ...ngs0, configHash: `${ngs0.configHash}-changed` };
    finishRow(ngs0, [true, true]);
    recordExperimentRun(changed, changedNgs0, done, none(changedNgs0));
    expect(read().results.map((x) => x.row)).toEqual(['no-guidance']);
  });

  const report = (name = 'demo-table1') => readFileSync(join(runsDir, name, 'report.md'), 'utf8');
  const allRight = Array.from({ length: 10 }, () => true);
  /** Wrong on the first `n` of 10 pairs, where the baseline (all right) is right: b = n, c = 0. */
  const wrongOn = (n: number) => allRight.map((_, i) => i >= n);
  /** 40 pairs, wrong exactly on the given ones; and the pair numbers from `from` up to `to`. */
  const wrongAt = (...wrong: number[]) => Array.from({ length: 40 }, (_, i) => !wrong.includes(i));
  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

  it('the Reading section claims a direction only where McNemar p < 0.05 in every seed', () => {
    const [id3s0, ngs0, id3s1, ngs1] = resultsOrder(plan.runs);
    finishRow(id3s0, allRight);
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    expect(report()).toMatch(/## Expected before running\n\nNone written in the experiment file/);
    expect(report()).toMatch(/## Reading \(generated\)[^#]*- \*\*no-guidance\*\*: not yet run\./);
    expect(report()).toMatch(/`ID3` significantly above `no-guidance`: not yet measurable/);

    // b = 6, c = 0 in both seeds: exact p = 2 · 0.5^6 = 0.03125 each.
    finishRow(ngs0, wrongOn(6));
    recordExperimentRun(plan, ngs0, done, none(ngs0));
    expect(report()).toContain(
      '- **no-guidance**: −60.00 points vs ID3 (seed 0): significantly below ID3 (McNemar p < 0.05 in every seed run): p 0.031. On the large-pose quarter: −100.00 points vs ID3 (seed 0): within noise (p ≥ 0.05): p 0.25. Not yet run at seed 1.',
    );
    // A seed the row finished before the baseline did is no test yet, and the line says so.
    finishRow(ngs1, wrongOn(6));
    recordExperimentRun(plan, ngs1, done, none(ngs1));
    expect(report()).toContain(
      '- **no-guidance**: −60.00 points vs ID3 (seed 0): significantly below ID3 (McNemar p < 0.05 in every seed run): p 0.031; seed 1 not yet tested (ID3 not yet run there). On the large-pose quarter:',
    );
    finishRow(id3s1, allRight);
    recordExperimentRun(plan, id3s1, done, none(id3s1));
    expect(report()).toContain(
      '- **no-guidance**: −60.00 points vs ID3 (seeds 0, 1): significantly below ID3 (McNemar p < 0.05 in every seed run): p 0.031, 0.031.',
    );
    // The target reads from ID3's side.
    expect(report()).toContain(
      '- `ID3` significantly above `no-guidance`: met: ID3 +60.00 points vs no-guidance (seeds 0, 1): significantly above no-guidance (McNemar p < 0.05 in every seed run): p 0.031, 0.031',
    );
    // This experiment has neither 'real' nor 'no-identity-loss': those targets say so.
    expect(report()).toMatch(/- `ID3` ≥ 90% of `real`'s LFW \(40-pair sample\) accuracy: not measurable here \(no row 'real'/);
    expect(report()).toMatch(/- `ID3` significantly above `no-identity-loss`: not measurable here/);

    // Seed 1 now differs in one pair (b = 1, c = 0: p = 1): no claim.
    finishRow(ngs1, wrongOn(1));
    recordExperimentRun(plan, ngs1, done, none(ngs1));
    expect(report()).toContain(
      '- **no-guidance**: −35.00 points vs ID3 (seeds 0, 1): within noise (p ≥ 0.05 in at least one seed): p 0.031, 1.0.',
    );
    expect(report()).toMatch(/- `ID3` significantly above `no-guidance`: missed: ID3 \+35\.00 points vs no-guidance .*: within noise/);
    expect(report()).not.toMatch(/significantly below/);
  });

  it('measures training-seed noise from the seed-to-seed tests and re-reads the claims with McNemar widened by it', () => {
    const [id3s0, ngs0, id3s1, ngs1] = resultsOrder(plan.runs);
    const section = () => report().split('### Training-seed noise')[1].split('### Targets')[0];
    finishRow(id3s0, wrongAt());
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    finishRow(ngs0, wrongAt(...range(0, 10)));
    recordExperimentRun(plan, ngs0, done, none(ngs0));
    expect(section()).toContain('Not yet measurable: no row has two finished seeds');

    // Both rows' seeds disagree only one way: ID3 10 / 0, no-guidance 10 / 0, so Σ = 10 + 10 on 2 df,
    // p = e^-10, dispersion 10 (significantly wider). Against ID3, no-guidance is b = 10, c = 0 at both seeds (exact p
    // 2 · 0.5^10 = 0.0020): significant.
    finishRow(id3s1, wrongAt(...range(30, 40)));
    recordExperimentRun(plan, id3s1, done, none(id3s1));
    finishRow(ngs1, wrongAt(...range(0, 10), ...range(30, 40)));
    recordExperimentRun(plan, ngs1, done, none(ngs1));
    expect(report()).toContain(
      '- **no-guidance**: −25.00 points vs ID3 (seeds 0, 1): significantly below ID3 (McNemar p < 0.05 in every seed run): p 0.0020, 0.0020.',
    );
    expect(section()).toContain(
      "Each row's own seeds measure by how much: Cochran's Q over its seeds (for two, its seed-to-seed (c − b)² / (b + c)), summed over 2 rows, is 20.00 (ID3 10.00, no-guidance 10.00),\nχ² p 4.5e-5 on 2 degrees of freedom (a row's seeds less one, summed)",
    );
    expect(section()).toContain(
      "3.16× as wide as McNemar's null\nassumes (dispersion 20.00 / 2 = 10.00, an estimate on 2 degrees of freedom).\nThat is significantly wider",
    );
    // Widened: (10 − 1)² / 10 / 10 = 0.81 against F(1, 2): 1 − √(0.81 / 2.81) = 0.46.
    expect(section()).toContain(
      '- **no-guidance**: vs ID3 p 0.46, 0.46 (McNemar 0.0020, 0.0020): within noise (was significantly below ID3); large-pose quarter vs ID3 p 1.0, 1.0 (McNemar 1.0, 1.0): within noise.',
    );

    // ID3's seeds now disagree as often each way (5 / 5), no-guidance's not at all (carries nothing): no wider than McNemar.
    finishRow(id3s1, wrongAt(...range(35, 40)));
    recordExperimentRun(plan, id3s1, done, none(id3s1));
    finishRow(id3s0, wrongAt(...range(30, 35)));
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    finishRow(ngs1, wrongAt(...range(0, 10)));
    recordExperimentRun(plan, ngs1, done, none(ngs1));
    expect(section()).toContain('summed over 1 row, is 0.00 (ID3 0.00)');
    expect(section()).toContain(
      '(dispersion 0.00 / 1 = 0.00, an estimate on 1 degree of freedom).\nThat is no wider than McNemar assumes: the per-seed tests above stand as they are.',
    );
  });

  it("rows with a seed of their own: compared with the baseline where both ran it; the seed noise is one Cochran's Q per row", () => {
    inPublishSandbox((experiments) => {
      writeExperiment(experiments, 'third', {
        ...demoRows,
        seeds: [0, 1],
        rows: [
          { name: 'ID3', overrides: {}, seeds: [0, 1, 2] },
          { name: 'close', overrides: {}, seeds: [0, 1, 2] },
          { name: 'other', overrides: {} },
        ],
      });
      const p = planExperiment({ name: 'third' });
      expect(p.runs.map((r) => r.runName)).toEqual([
        'third-ID3-s0',
        'third-ID3-s1',
        'third-ID3-s2',
        'third-close-s0',
        'third-close-s1',
        'third-close-s2',
        'third-other-s0',
        'third-other-s1',
      ]);
      // The third seed alone starts the two rows that run it.
      expect(runsToStart(p, { seeds: [2] }).map((r) => r.runName)).toEqual(['third-ID3-s2', 'third-close-s2']);
      expect(() => planExperiment({ name: 'third', seeds: [3] })).toThrow(
        /field 'seeds\[0\]': seed 3 is not one of .*third\.json's seeds \(0, 1, 2\)/,
      );
      const record = (runName: string, correct: boolean[]): void => {
        const run = p.runs.find((x) => x.runName === runName) as ExperimentRun;
        finishRow(run, correct);
        recordExperimentRun(p, run, done, none(run));
      };
      // ID3: seeds 1 and 2 both miss pairs 30-39. C = 40, 30, 30 right; pairs 30-39 right once, the rest three
      // times (N = 100, Σ R² = 280): Q = 2 · (3 · 3400 − 100²) / (3 · 100 − 280) = 20 on 2 df, p = e^−10. The
      // consecutive tests alone (10 / 0, then 0 / 0) would have read 10 on 1 df.
      record('third-ID3-s0', wrongAt());
      record('third-ID3-s1', wrongAt(...range(30, 40)));
      record('third-ID3-s2', wrongAt(...range(30, 40)));
      // close: its three seeds agree on every pair (no information); other: 5 / 5 between its two (Q = 0 on 1 df).
      for (const seed of [0, 1, 2]) record(`third-close-s${seed}`, wrongAt(...range(0, 10)));
      record('third-other-s0', wrongAt(...range(0, 5)));
      record('third-other-s1', wrongAt(...range(5, 10)));
      const r = JSON.parse(readFileSync(join(runsDir, 'third', 'results.json'), 'utf8')) as ExperimentResults;
      const summary = (row: string) => r.summary.find((x) => x.row === row);
      expect(summary('ID3')?.seedNoise).toEqual({
        seeds: [0, 1, 2],
        q: expect.closeTo(20, 12),
        df: 2,
        p: expect.closeTo(Math.exp(-10), 12),
      });
      expect(summary('ID3')?.seedToSeed?.map((t) => [t.seeds, t.b, t.c])).toEqual([
        [[0, 1], 10, 0],
        [[1, 2], 0, 0],
      ]);
      expect(summary('close')?.seedNoise).toBeNull();
      expect(summary('other')?.seedNoise).toEqual({ seeds: [0, 1], q: 0, df: 1, p: 1 });
      // Each of close's seeds against ID3's same seed (b / c): 10 / 0, 10 / 10, 10 / 10: p 2 · 0.5^10, 1, 1.
      expect(summary('close')?.mcnemarPVsID3).toEqual([expect.closeTo(0.001953125, 12), 1, 1]);
      const text = report('third');
      expect(text).toMatch(/^\| close \| 0, 1, 2 \| /m);
      // Pooled: 20 + 0 on 2 + 1 df (close carries nothing); χ²₃ tail at 20 = 1.7e-4.
      expect(text).toContain('summed over 2 rows, is 20.00 (ID3 20.00 on 2, other 0.00),\nχ² p 1.7e-4 on 3 degrees of freedom');
      expect(text).toContain('(dispersion 20.00 / 3 = 6.67, an estimate on 3 degrees of freedom)');
    });
  });

  it('a row may not run a seed the baseline does not, nor list a seed twice', () => {
    inPublishSandbox((experiments) => {
      writeExperiment(experiments, 'bad-seeds', {
        ...demoRows,
        seeds: [0, 1],
        rows: [
          { name: 'ID3', overrides: {}, seeds: [0, 1, 1] },
          { name: 'b', overrides: {}, seeds: [0, 2] },
        ],
      });
      expect(() => planExperiment({ name: 'bad-seeds' })).toThrow(
        /bad-seeds\.json.*field 'rows\[0\]\.seeds\[2\]': seed 1 is listed twice/s,
      );
      expect(() => planExperiment({ name: 'bad-seeds' })).toThrow(
        /field 'rows\[1\]\.seeds\[1\]': the baseline 'ID3' does not run seed 2 \(its seeds: 0, 1, 1\), so that seed would have nothing to be compared with/,
      );
      // The experiment's own seeds too, for rows that run them; and a compareTo pair needs every seed of the row.
      writeExperiment(experiments, 'bad-pairs', {
        ...demoRows,
        seeds: [0, 1, 2],
        rows: [
          { name: 'ID3', overrides: {}, seeds: [0, 1] },
          { name: 'a', overrides: {}, seeds: [0, 1], compareTo: 'a' },
          { name: 'b', overrides: {}, seeds: [0, 1], compareTo: 'ID3' },
          { name: 'c', overrides: {}, seeds: [0, 1], compareTo: 'e' },
          { name: 'd', overrides: {} },
          { name: 'e', overrides: {}, seeds: [0] },
        ],
      });
      const refusal = (): string => {
        try {
          planExperiment({ name: 'bad-pairs' });
        } catch (err) {
          return String(err);
        }
        throw new Error('bad-pairs.json was accepted');
      };
      expect(refusal()).toMatch(
        /field 'seeds\[2\]': the baseline 'ID3' does not run seed 2 \(its seeds: 0, 1\), so that seed of row 'd' would have nothing to be compared with/,
      );
      expect(refusal()).toContain("field 'rows[1].compareTo': a row cannot be compared with itself");
      expect(refusal()).toContain("field 'rows[2].compareTo': every row is already compared with the baseline 'ID3'");
      expect(refusal()).toContain(
        "field 'rows[3].compareTo': 'e' does not run seed 1 (its seeds: 0), so that seed would have nothing to be compared with",
      );
    });
  });

  it('the 90%-of-real target computes the ratio from the accuracies of the seeds both rows finished', () => {
    const experiments = mkdtempSync(join(tmpdir(), 'id3-exp-files-'));
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    try {
      writeExperiment(experiments, 'with-real', {
        ...demoRows,
        rows: [
          { name: 'ID3', overrides: {}, expected: 'the baseline.' },
          { name: 'real', overrides: {}, expected: 'above ID3: real photos.' },
          { name: 'no-guidance', overrides: {} },
        ],
      });
      const p = planExperiment({ name: 'with-real' });
      const [id3, real] = p.runs;
      finishRow(real, allRight);
      recordExperimentRun(p, real, done, none(real));
      expect(report('with-real')).toMatch(/- `ID3` ≥ 90% of `real`'s .* accuracy: not yet measurable \(no seed where both finished\)/);
      finishRow(id3, wrongOn(2));
      recordExperimentRun(p, id3, done, none(id3));
      expect(report('with-real')).toContain(
        "- `ID3` ≥ 90% of `real`'s LFW (40-pair sample) accuracy: missed: 80.00 / 100.00 = 80.0% (seed 0); 10.00 points short of 90.00",
      );
      finishRow(real, wrongOn(1));
      recordExperimentRun(p, real, done, none(real));
      expect(report('with-real')).toContain(
        "- `ID3` ≥ 90% of `real`'s LFW (40-pair sample) accuracy: missed: 80.00 / 90.00 = 88.9% (seed 0); 1.00 points short of 81.00",
      );
      finishRow(real, wrongOn(2));
      recordExperimentRun(p, real, done, none(real));
      expect(report('with-real')).toContain(
        "- `ID3` ≥ 90% of `real`'s LFW (40-pair sample) accuracy: met: 80.00 / 80.00 = 100.0% (seed 0)",
      );
      // Expectations, in file order; a row without one says so.
      expect(report('with-real')).toMatch(
        /## Expected before running\n\n- \*\*ID3\*\*: the baseline\.\n- \*\*real\*\*: above ID3: real photos\.\n- \*\*no-guidance\*\*: none written\n/,
      );
      expect(report('with-real')).toMatch(/- \*\*real\*\*: \+0\.00 points vs ID3 \(seed 0\): within noise/);
      expect(report('with-real')).toMatch(/- \*\*no-guidance\*\*: not yet run\./);
    } finally {
      delete process.env.ID3_EXPERIMENTS_DIR;
    }
  });

  /**
   * Plan a two-seed experiment of these rows in the sandbox's experiments folder; the returned
   * function finishes one run (with figures) and records it, its stages taken from `reused`.
   */
  function twoSeedExperiment(experiments: string, name: string, rows: readonly object[]) {
    writeExperiment(experiments, name, { ...demoRows, seeds: [0, 1], rows });
    const p = planExperiment({ name });
    return (row: string, seed: number, correct: boolean[], reused: Record<string, string> = {}): void => {
      const run = p.runs.find((x) => x.row === row && x.seed === seed) as ExperimentRun;
      finishRow(run, correct, undefined, undefined, { figures: true });
      recordExperimentRun(p, run, done, { runName: run.runName, reused });
    };
  }

  it("a target waits only for the seeds both of its rows run: the baseline's extra seed keeps no target 'so far'", () => {
    inPublishSandbox((experiments) => {
      const record = twoSeedExperiment(experiments, 'extra-seed', [
        { name: 'ID3', overrides: {}, seeds: [0, 1, 2] },
        { name: 'real', overrides: {} },
        { name: 'no-guidance', overrides: {} },
      ]);
      for (const seed of [0, 1]) {
        record('ID3', seed, wrongOn(2));
        record('real', seed, allRight);
      }
      record('no-guidance', 0, wrongOn(2));
      const targets = () => report('extra-seed').split('### Targets')[1];
      // no-guidance has yet to run seed 1, which both rows run; ID3's seed 2 is no-guidance's concern nowhere.
      expect(targets()).toMatch(/- `ID3` significantly above `no-guidance`: missed so far \(seed 1 not yet run\):/);
      expect(targets()).toMatch(/- `ID3` ≥ 90% of `real`'s .* accuracy: missed: 80\.00 \/ 100\.00 = 80\.0% \(seeds 0, 1;/);
      record('no-guidance', 1, wrongOn(2));
      expect(targets()).not.toContain('so far');
    });
  });

  it('p-values read with two significant figures, three where two would blur the 0.05 threshold', () => {
    expect([0.58, 1, 0.03125, 0.25, 0.0013, 0.00096, 1.0e-151].map(formatPValue)).toEqual([
      '0.58',
      '1.0',
      '0.031',
      '0.25',
      '0.0013',
      '9.6e-4',
      '1.0e-151',
    ]);
    // Either side of the threshold stays on its side; the threshold itself is 0.050.
    expect([0.0496, 0.0504, 0.05, null].map(formatPValue)).toEqual(['0.0496', '0.0504', '0.050', '—']);
    // An underflowed p reads as a bound, not as 0.0e+0.
    expect(formatPValue(0)).toBe('< 1e-300');
  });

  it('the 90%-of-real target is met only where every seed meets it, and says per seed and by how much', () => {
    inPublishSandbox((experiments) => {
      const record = twoSeedExperiment(experiments, 'two-seeds', [
        { name: 'ID3', overrides: {} },
        { name: 'real', overrides: {} },
      ]);
      record('ID3', 0, wrongOn(2));
      record('real', 0, wrongOn(2));
      record('ID3', 1, wrongOn(3));
      record('real', 1, allRight);
      // Seed 0: 80 / 80 = 100%; seed 1: 70 / 100 = 70%. Means 75 / 90 = 83.3%, and 90% of 90 is 81.
      expect(report('two-seeds')).toContain(
        "- `ID3` ≥ 90% of `real`'s LFW (40-pair sample) accuracy: met at seed 0, missed at seed 1: 75.00 / 90.00 = 83.3% (seeds 0, 1; per seed 100.0%, 70.0%); 6.00 points short of 81.00",
      );
    });
  });

  it('a compareTo row is tested against its pair too, in the tables and the reading; seeds that trained on one sampled set show its card once', () => {
    inPublishSandbox((experiments) => {
      const record = twoSeedExperiment(experiments, 'paired', [
        { name: 'ID3', overrides: {} },
        { name: 'crowded-tammes', overrides: {} },
        { name: 'crowded-random', overrides: {}, compareTo: 'crowded-tammes' },
      ]);
      record('ID3', 0, allRight, { sample: 'profile-run' }); // its set sampled by a run outside the experiment
      record('crowded-random', 0, wrongOn(6));
      expect(report('paired')).toContain('- crowded-random (seed 0) vs crowded-tammes: not yet tested (crowded-tammes seed 0 not yet run)');
      expect(report('paired')).toMatch(/\| crowded-random \| 0 \| .* \| crowded-tammes: — \(crowded-tammes seed 0 not yet run\) \|/);
      record('crowded-tammes', 0, allRight);
      // Tammes right on the 6 pairs random misses: b = 6, c = 0, p = 2 · 0.5^6.
      const r = JSON.parse(readFileSync(join(runsDir, 'paired', 'results.json'), 'utf8')) as ExperimentResults;
      expect(r.results.find((x) => x.row === 'crowded-random')).toMatchObject({
        compareTo: 'crowded-tammes',
        mcnemarVsCompareTo: { b: 6, c: 0 },
      });
      const text = report('paired');
      expect(text).toContain('| McNemar p vs its paired row |');
      expect(text).toMatch(/\| crowded-random \| 0 \| .* \| crowded-tammes: 0\.031 \|/);
      expect(text).toMatch(/\| crowded-tammes \| 0 \| .* \| — \|/);
      expect(text).toContain('- crowded-random (seed 0) vs crowded-tammes: b / c 6 / 0, McNemar p 0.031');
      expect(text).toContain(
        '- **crowded-random**: −60.00 points vs ID3 (seed 0): significantly below ID3 (McNemar p < 0.05 in every seed run): p 0.031; −60.00 points vs crowded-tammes (seed 0): significantly below crowded-tammes (McNemar p < 0.05 in every seed run): p 0.031.',
      );

      // ID3 seed 1 took its sample from seed 0's run, which took it from profile-run: one set, one card, two curves.
      record('ID3', 1, allRight, { sample: 'paired-ID3-s0' });
      expect(report('paired')).toContain(
        '| ID3 | ![ID3 seed 0: training curve](figures/paired-ID3-s0-training-curve.png) | ![ID3 seed 1: training curve](figures/paired-ID3-s1-training-curve.png) | ![ID3 seeds 0, 1: sample grid](figures/paired-ID3-s0-grid.png) | ![ID3 seeds 0, 1: similarity](figures/paired-ID3-s0-similarity.png) |',
      );
      // crowded-tammes seed 1 sampled its own set: both cards.
      record('crowded-tammes', 1, allRight);
      expect(report('paired')).toContain(
        '![crowded-tammes seed 0: sample grid](figures/paired-crowded-tammes-s0-grid.png) ![crowded-tammes seed 1: sample grid](figures/paired-crowded-tammes-s1-grid.png)',
      );
    });
  });

  it('records TAR and the paper columns (Table 1 layout), and still loads entries written before them', () => {
    const [id3s0, ngs0] = resultsOrder(plan.runs);
    // Two of the paper's benchmarks scored besides the experiment's own (an insightface name in any case lands in its column).
    finishRow(id3s0, allRight, undefined, undefined, { metrics: { LFW_accuracy: 0.99, agedb30_accuracy: 0.9, LFW_accuracyStd: 0.01 } });
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    expect(read().results[0]).toMatchObject({ tarAtFar1e3: 0.5, benchmarks: { LFW: 0.99, 'AgeDB-30': 0.9 } });
    expect(read().summary[0]).toMatchObject({ tarAtFar1e3Mean: 0.5, benchmarks: { LFW: 0.99, 'AgeDB-30': 0.9 } });
    expect(read().summary[0].averageAccuracy).toBeCloseTo(0.945, 12);
    expect(report()).toContain(
      '| row | seeds | LFW | CFP-FP | CPLFW | AgeDB-30 | CALFW | average | TAR@FAR=1e-3 (LFW (40-pair sample)) | large-pose LFW (40-pair sample) | McNemar p vs ID3 |',
    );
    expect(report()).toContain('| ID3 | 0 | 99.00 | — | — | 90.00 | — | 94.50 | 50.00 | 100.00 | — |');
    expect(report()).toMatch(
      /No data \(—\): CFP-FP: \.\.\/shared\/data has only a format sample[^;]*; CPLFW, CALFW: not in \.\.\/shared\/data/,
    );

    // results.json as written before TAR and the paper columns existed: the entry loads, as null.
    const old = read();
    const newFields = new Set(['tarAtFar1e3', 'benchmarks', 'config', 'figures']);
    const stripped = old.results.map((x) => Object.fromEntries(Object.entries(x).filter(([k]) => !newFields.has(k))));
    writeFileSync(join(runsDir, 'demo-table1', 'results.json'), JSON.stringify({ ...old, results: stripped }));
    finishRow(ngs0, wrongOn(3));
    recordExperimentRun(plan, ngs0, done, none(ngs0));
    expect(read().results[0]).toMatchObject({ row: 'ID3', lfwAccuracy: 1, tarAtFar1e3: null, benchmarks: null });
    expect(read().results[1]).toMatchObject({ row: 'no-guidance', tarAtFar1e3: 0.35, benchmarks: {} });
    expect(report()).toContain('| ID3 | 0 | — | — | — | — | — | — | — | 100.00 | — |');
    expect(report()).toMatch(/No data \(—\): LFW: the eval stage scored no benchmark named LFW/);
  });

  /** Run `body` with its own experiments folder and repository root (where publish folders go), restoring the environment after. */
  function inPublishSandbox(body: (experiments: string, repo: string) => void): void {
    const experiments = mkdtempSync(join(tmpdir(), 'id3-exp-files-'));
    const repo = mkdtempSync(join(tmpdir(), 'id3-exp-repo-'));
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    process.env.ID3_REPO_ROOT = repo;
    try {
      body(experiments, repo);
    } finally {
      delete process.env.ID3_EXPERIMENTS_DIR;
      delete process.env.ID3_REPO_ROOT;
    }
  }

  it('copies figures and configs beside the report, and mirrors the folder into the publish folder', () => {
    inPublishSandbox((experiments, repo) => {
      writeExperiment(experiments, 'pub', {
        ...demoRows,
        publish: 'docs/table1',
        rows: [
          { name: 'ID3', overrides: {}, expected: 'the baseline.' },
          { name: 'no-guidance', overrides: { sample: { guidance: { scale: 0 } } } },
        ],
      });
      const p = planExperiment({ name: 'pub' });
      const [id3, ng] = p.runs;
      finishRow(id3, allRight, undefined, undefined, { figures: true });
      recordExperimentRun(p, id3, done, none(id3));
      finishRow(ng, wrongOn(6)); // a tiny run without figures
      recordExperimentRun(p, ng, done, none(ng));

      const published = join(repo, 'docs', 'table1');
      const local = join(runsDir, 'pub');
      for (const dir of [local, published]) {
        expect(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))).toEqual(
          JSON.parse(readFileSync(join(local, 'results.json'), 'utf8')),
        );
        expect(readFileSync(join(dir, 'report.md'), 'utf8')).toBe(readFileSync(join(local, 'report.md'), 'utf8'));
        expect(readFileSync(join(dir, 'experiment.json'), 'utf8')).toBe(readFileSync(join(experiments, 'pub.json'), 'utf8'));
        for (const run of [id3, ng])
          expect(readFileSync(join(dir, 'configs', `${run.runName}.json`), 'utf8')).toBe(
            readFileSync(join(runsDir, run.runName, 'config.json'), 'utf8'),
          );
        expect(readFileSync(join(dir, 'figures', 'pub-ID3-s0-training-curve.png'), 'utf8')).toBe(
          'png of pub-ID3-s0/fr-train/training-curve.png',
        );
        expect(readFileSync(join(dir, 'figures', 'pub-ID3-s0-grid.png'), 'utf8')).toBe('png of pub-ID3-s0/sample/card/grid.png');
        expect(existsSync(join(dir, 'figures', 'pub-no-guidance-s0-grid.png'))).toBe(false);
        // Every link of the report is relative and resolves in this copy.
        const links = [...readFileSync(join(dir, 'report.md'), 'utf8').matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]);
        expect(links).toEqual(
          expect.arrayContaining([
            'results.json',
            'experiment.json',
            'configs/pub-ID3-s0.json',
            'figures/pub-ID3-s0-training-curve.png',
            'figures/pub-ID3-s0-grid.png',
            'figures/pub-ID3-s0-similarity.png',
          ]),
        );
        for (const link of links) expect(existsSync(join(dir, link))).toBe(true);
      }
      const text = readFileSync(join(published, 'report.md'), 'utf8');
      expect(text).toContain('| row | training curve, seed 0 | sample grid | similarity |');
      expect(text).toContain(
        '| ID3 | ![ID3 seed 0: training curve](figures/pub-ID3-s0-training-curve.png) | ![ID3 seed 0: sample grid](figures/pub-ID3-s0-grid.png) | ![ID3 seed 0: similarity](figures/pub-ID3-s0-similarity.png) |',
      );
      expect(text).toContain('| no-guidance | — | — | — |');
    });
  });

  it("records the recognizer's batch and held-out accuracy, and fills them in for entries recorded before, while their run is here", () => {
    const [id3s0, ngs0] = resultsOrder(plan.runs);
    finishRow(id3s0, allRight, undefined, undefined, { frMetrics: { finalBatchAccuracy: 0.74, validationAccuracy: 0.5862 } });
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    expect(read().results[0]).toMatchObject({ frTrainBatchAccuracy: 0.74, frTrainValidationAccuracy: 0.5862 });
    expect(report()).toMatch(/\| ID3 \| 0 \| `[^`]+` \| [^|]+\| — \| [^|]+\| 74\.00 \/ 58\.62 \|/);

    // An entry written before the fields existed: filled in from its run's fr-train manifest...
    const file = join(runsDir, 'demo-table1', 'results.json');
    const old = read();
    writeFileSync(
      file,
      JSON.stringify({
        ...old,
        results: old.results.map(({ frTrainBatchAccuracy: _b, frTrainValidationAccuracy: _v, ...rest }) => rest),
      }),
    );
    finishRow(ngs0, wrongOn(6)); // a run whose fr-train has no such metrics
    recordExperimentRun(plan, ngs0, done, none(ngs0));
    expect(read().results.map((x) => [x.row, x.frTrainBatchAccuracy, x.frTrainValidationAccuracy])).toEqual([
      ['ID3', 0.74, 0.5862],
      ['no-guidance', null, null],
    ]);
    expect(report()).toMatch(/\| no-guidance \| 0 \| .* \| — \/ — \|/);
    // ...and kept once recorded, though the run directory then goes.
    rmSync(join(runsDir, id3s0.runName, 'fr-train'), { recursive: true });
    finishRow(ngs0, wrongOn(6));
    recordExperimentRun(plan, ngs0, done, none(ngs0));
    expect(read().results[0]).toMatchObject({ row: 'ID3', frTrainBatchAccuracy: 0.74, frTrainValidationAccuracy: 0.5862 });
  });

  it("records each synthetic set's dataset card once per set, keeps it when the run goes, and names the sets it cannot show", () => {
    const [id3s0, ngs0, id3s1] = resultsOrder(plan.runs);
    const ran = (...stages: string[]) => ({
      stages: stages.map((stage) => ({ stage, skipped: false, runDir: '', manifestPath: '', outputs: {}, metrics: {}, durationMs: 0 })),
    });
    const sampled = ran('sample', 'fr-train', 'eval');
    const card = {
      identities: 4,
      images: 70,
      generated: 100,
      rejectedSimilarity: 12,
      rejectedFace: 18,
      teacherVerificationAccuracy: 0.631,
      checkVerificationAccuracy: 0.6125,
      yawCorrelation: 0.4912,
      ageCorrelation: 0.2,
    };
    // The sample stage's metrics: the card's numbers among others (not recorded).
    const cardMetrics = { ...card, shards: 2 };
    const writeSampleManifest = (run: ExperimentRun, metrics: Record<string, number>) => {
      mkdirSync(join(runsDir, run.runName, 'sample'), { recursive: true });
      writeFileSync(
        join(runsDir, run.runName, 'sample', 'manifest.json'),
        JSON.stringify({ format: 'id3-stage-manifest/1', stage: 'sample', outputs: {}, metrics }),
      );
    };
    finishRow(id3s0, allRight);
    writeSampleManifest(id3s0, cardMetrics);
    recordExperimentRun(plan, id3s0, sampled, none(id3s0));
    expect(read().results[0].trainingSetCard).toEqual(card);
    const line = '| ID3 | 0 | 4 | 70 / 100 (70.00) | 12 / 18 | 63.10 / 61.25 | 0.49 | 0.20 |';
    expect(report()).toContain('## The synthetic training sets (dataset cards)');
    expect(report()).toContain(line);

    // A sample manifest without the counts (an older sampler): no card, and the report names the set it cannot show.
    finishRow(ngs0, wrongOn(6));
    writeSampleManifest(ngs0, { identities: 4 });
    recordExperimentRun(plan, ngs0, sampled, none(ngs0));
    expect(read().results.find((x) => x.row === 'no-guidance')?.trainingSetCard).toBeNull();
    expect(report()).toContain('Not listed: no-guidance (seed 0) — no card recorded');

    // Seed 1 trained on seed 0's set (its sample stage taken from there): one line for both seeds,
    // and seed 0's card is kept after its run directory is gone.
    finishRow(id3s1, allRight);
    rmSync(join(runsDir, id3s0.runName, 'sample'), { recursive: true });
    recordExperimentRun(plan, id3s1, sampled, { runName: id3s1.runName, reused: { sample: id3s0.runName } });
    expect(read().results.find((x) => x.row === 'ID3' && x.seed === 0)?.trainingSetCard?.images).toBe(70);
    expect(report()).toContain('| ID3 | 0, 1 | 4 | 70 / 100 (70.00) | 12 / 18 | 63.10 / 61.25 | 0.49 | 0.20 |');
    expect(report()).not.toContain(line);

    // Entries recorded before cards were: --report-only fills them in from runs that are here, and says which it cannot.
    const file = join(runsDir, 'demo-table1', 'results.json');
    const recorded = read();
    writeFileSync(file, JSON.stringify({ ...recorded, results: recorded.results.map(({ trainingSetCard: _c, ...rest }) => rest) }));
    writeSampleManifest(id3s1, { ...cardMetrics, images: 71 });
    rebuildExperimentReport('demo-table1');
    expect(read().results.map((x) => [x.row, x.seed, x.trainingSetCard?.images ?? null])).toEqual([
      ['ID3', 0, null],
      ['no-guidance', 0, null],
      ['ID3', 1, 71],
    ]);
    expect(report()).toContain('| ID3 | 0, 1 | 4 | 71 / 100 (71.00) |');
    expect(report()).toContain(
      'Not listed: no-guidance (seed 0) — no card recorded with the entry (recorded before cards were), and none to read',
    );
  });

  it('a run without a sample stage (real photos) adds no dataset-card section', () => {
    finishRow(plan.runs[0], allRight);
    recordExperimentRun(plan, plan.runs[0], done, none(plan.runs[0]));
    expect(report()).not.toContain('## The synthetic training sets');
  });

  it('embeds the hand-written reading.md of the publish folder in every rebuilt report; --report-only rebuilds without running', () => {
    inPublishSandbox((experiments, repo) => {
      writeExperiment(experiments, 'hand', {
        ...demoRows,
        publish: 'docs/hand',
        rows: [
          { name: 'ID3', overrides: {} },
          { name: 'no-guidance', overrides: { sample: { guidance: { scale: 0 } } } },
        ],
      });
      expect(() => rebuildExperimentReport('hand')).toThrow(/experiment 'hand': nothing recorded yet \(no results\.json in .*hand/);
      const p = planExperiment({ name: 'hand' });
      const [id3, ng] = p.runs;
      finishRow(id3, allRight);
      recordExperimentRun(p, id3, done, none(id3));
      const published = join(repo, 'docs', 'hand');
      const local = join(runsDir, 'hand');
      expect(readFileSync(join(published, 'report.md'), 'utf8')).not.toContain('## Reading\n');

      // The reading links a figure of its own, another report of the repository, and the web.
      writeFileSync(
        join(published, 'reading.md'),
        '\nThe synthetic rows trail the real one by *many* points ([curves](reading/curves.png), [card](../card/report.md#numbers), [paper](https://arxiv.org)).\n\nEvery number is in [results.json](results.json).\n',
      );
      mkdirSync(join(published, 'reading'));
      writeFileSync(join(published, 'reading', 'curves.png'), 'png');
      mkdirSync(join(repo, 'docs', 'card'));
      writeFileSync(join(repo, 'docs', 'card', 'report.md'), '# card');
      const resultsBefore = readFileSync(join(published, 'results.json'), 'utf8');
      // Every relative link of both reports resolves: the runs directory's copy gets the reading's own
      // files beside it, and its link out of the publish folder rewritten.
      const checkBoth = (): void => {
        for (const dir of [local, published]) {
          const text = readFileSync(join(dir, 'report.md'), 'utf8');
          expect(text).toContain('## Reading\n\nWritten by hand in [reading.md](reading.md)');
          expect(text).toContain('\n\nThe synthetic rows trail the real one by *many* points ([curves](reading/curves.png), [card](');
          expect(text).toContain(
            '[paper](https://arxiv.org)).\n\nEvery number is in [results.json](results.json).\n\n## Reading (generated)',
          );
          const links = [...text.matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]).filter((l) => !l.startsWith('https:'));
          expect(links).toEqual(expect.arrayContaining(['reading.md', 'reading/curves.png']));
          for (const link of links) expect(existsSync(join(dir, link.split('#')[0]))).toBe(true);
        }
        expect(readFileSync(join(published, 'report.md'), 'utf8')).toContain('[card](../card/report.md#numbers)');
        const outside = relative(local, join(repo, 'docs', 'card', 'report.md'))
          .split(sep)
          .join('/');
        expect(readFileSync(join(local, 'report.md'), 'utf8')).toContain(`[card](${outside}#numbers)`);
      };
      expect(rebuildExperimentReport('hand')).toEqual([join(local, 'report.md'), join(published, 'report.md')]);
      checkBoth();
      expect(readFileSync(join(published, 'results.json'), 'utf8')).toBe(resultsBefore);

      // The next finished run keeps it, and so does a rebuild from the published folder alone. The
      // reading's link to results.json copies nothing: each folder keeps the results it was given.
      finishRow(ng, wrongOn(6));
      recordExperimentRun(p, ng, done, none(ng));
      checkBoth();
      for (const dir of [local, published])
        expect((JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as ExperimentResults).results.map((x) => x.row)).toEqual([
          'ID3',
          'no-guidance',
        ]);
      rmSync(local, { recursive: true });
      expect(rebuildExperimentReport('hand')).toEqual([join(published, 'report.md')]);
      expect(readFileSync(join(published, 'report.md'), 'utf8')).toContain('*many* points');

      // An entry written before a field existed reads it as missing (—), not NaN; a file from before
      // a reported field existed, or another file, is refused naming the file and field.
      const recorded = JSON.parse(readFileSync(join(published, 'results.json'), 'utf8')) as ExperimentResults;
      const older: Record<string, unknown> = { ...recorded.results[0] };
      delete older.lfwLargePoseAccuracy;
      delete older.frTrainBatchAccuracy;
      writeFileSync(join(published, 'results.json'), JSON.stringify({ ...recorded, results: [older, ...recorded.results.slice(1)] }));
      rebuildExperimentReport('hand');
      const rebuilt = readFileSync(join(published, 'report.md'), 'utf8');
      expect(rebuilt).not.toContain('NaN');
      expect(rebuilt).toMatch(/\| ID3 \| 0 \| `hand-ID3-s0` \| [^|]+\| — \| — \| — \/ — \|/);
      writeFileSync(join(published, 'results.json'), JSON.stringify({ ...recorded, notYetRun: undefined }));
      expect(() => rebuildExperimentReport('hand')).toThrow(
        /hand[/\\]results\.json: field 'notYetRun' is missing \(written by an older id3\): record a run \(id3 experiment hand\) to rewrite it/,
      );
      writeFileSync(join(published, 'results.json'), JSON.stringify({ format: 'something-else' }));
      expect(() => rebuildExperimentReport('hand')).toThrow(
        /hand[/\\]results\.json: not an id3 experiment results file \(format 'something-else'\)/,
      );
    });
  });

  it("a rebuild from the published folder alone tests a row's seeds against each other from the pairs copied there", () => {
    inPublishSandbox((experiments, repo) => {
      writeExperiment(experiments, 'seeds', { ...demoRows, seeds: [0, 1], publish: 'docs/seeds' });
      const p = planExperiment({ name: 'seeds' });
      const [s0, s1] = resultsOrder(p.runs);
      finishRow(s0, wrongOn(1));
      recordExperimentRun(p, s0, done, none(s0));
      finishRow(s1, wrongOn(4));
      recordExperimentRun(p, s1, done, none(s1));
      const file = join(repo, 'docs', 'seeds', 'results.json');
      const recorded = JSON.parse(readFileSync(file, 'utf8')) as ExperimentResults;
      // Seed 0 right on pairs 1-3 where seed 1 is wrong, never the reverse.
      expect(recorded.summary[0].seedToSeed).toEqual([{ seeds: [0, 1], b: 3, c: 0, p: expect.closeTo(0.25, 12) }]); // 2 · 0.5^3
      // Written before the tests were, on a fresh checkout: no run directories, no local copy.
      expect(recorded.summary[0].seedNoise).toEqual({ seeds: [0, 1], q: 3, df: 1, p: expect.closeTo(0.0832645166635504, 12) }); // (0 − 3)² / 3
      const older = { ...recorded, summary: recorded.summary.map(({ seedToSeed: _, seedNoise: __, ...rest }) => rest) };
      writeFileSync(file, JSON.stringify(older));
      runsDir = mkdtempSync(join(tmpdir(), 'id3-exp-fresh-'));
      process.env.ID3_RUNS_DIR = runsDir;
      rebuildExperimentReport('seeds');
      const rebuilt = (JSON.parse(readFileSync(file, 'utf8')) as ExperimentResults).summary[0];
      expect(rebuilt.seedToSeed).toEqual(recorded.summary[0].seedToSeed);
      expect(rebuilt.seedNoise).toEqual(recorded.summary[0].seedNoise);
      // Without the copies nothing can be tested: the summary stays as it was, the cell reads —.
      writeFileSync(file, JSON.stringify({ ...recorded, summary: recorded.summary.map(({ seedToSeed: _, ...older }) => older) }));
      rmSync(join(repo, 'docs', 'seeds', 'pairs'), { recursive: true });
      rebuildExperimentReport('seeds');
      expect((JSON.parse(readFileSync(file, 'utf8')) as ExperimentResults).summary[0].seedToSeed).toBeUndefined();
      expect(readFileSync(join(repo, 'docs', 'seeds', 'report.md'), 'utf8')).toMatch(/^\| ID3 \| 0, 1 \| .* \| — \|$/m);
      // Nor pooled: written before either test, the row is named as left out, not dropped silently.
      writeFileSync(file, JSON.stringify(older));
      rebuildExperimentReport('seeds');
      expect(readFileSync(join(repo, 'docs', 'seeds', 'report.md'), 'utf8')).toContain(
        'Not yet measurable: no row has two finished seeds that disagree on a pair (the seed-to-seed tests measure it).\nLeft out: ID3 (several seeds, but recorded before the pooled seed test was and its pairs files are not here: restore them and run `id3 experiment seeds --report-only`).',
      );
    });
  });

  it('a fresh checkout resumes from the published folder: recorded runs are adopted, not rerun, and later rows are tested against them', () => {
    const freshRunsDir = (): void => {
      runsDir = mkdtempSync(join(tmpdir(), 'id3-exp-fresh-'));
      process.env.ID3_RUNS_DIR = runsDir;
    };
    // What a pipeline result lists: every stage it ran or found current.
    const ran = { stages: ['fr-train', 'eval'].map((stage) => ({ stage, skipped: false })) } as unknown as Parameters<
      typeof recordExperimentRun
    >[2];
    inPublishSandbox((experiments, repo) => {
      writeExperiment(experiments, 'pub', {
        ...demoRows,
        publish: 'docs/table1',
        rows: [
          { name: 'ID3', overrides: {} },
          { name: 'no-guidance', overrides: { sample: { guidance: { scale: 0 } } } },
        ],
      });
      const p = planExperiment({ name: 'pub' });
      expect(p.adopted).toBeUndefined();
      const [id3, ng] = p.runs;
      finishRow(id3, allRight, undefined, undefined, { figures: true });
      recordExperimentRun(p, id3, ran, none(id3));
      const published = join(repo, 'docs', 'table1');
      const entry = (JSON.parse(readFileSync(join(published, 'results.json'), 'utf8')) as ExperimentResults).results[0];
      // The per-pair outcomes travel with the results (what a later row's McNemar needs), with
      // the code's stage versions that made them.
      expect(entry.pairs).toBe('pairs/pub-ID3-s0-pairs-LFW40pairsample.json');
      expect(readFileSync(join(published, entry.pairs ?? ''), 'utf8')).toBe(
        readFileSync(join(runsDir, id3.runName, 'eval', 'pairs-LFW40pairsample.json'), 'utf8'),
      );
      expect(entry.stageVersions).toEqual({
        'fr-train': stageRegistry().get('fr-train')?.version,
        eval: stageRegistry().get('eval')?.version,
      });
      // On the machine that ran it the run is here: planned to rerun (its stages then skip).
      expect(planExperiment({ name: 'pub' }).adopted).toBeUndefined();

      // A fresh checkout: an empty runs directory beside the repository's published folder.
      freshRunsDir();
      const fresh = planExperiment({ name: 'pub' });
      expect(fresh.adopted).toEqual([id3.runName]);
      expect(JSON.parse(readFileSync(join(runsDir, 'pub', 'results.json'), 'utf8'))).toEqual(
        JSON.parse(readFileSync(join(published, 'results.json'), 'utf8')),
      );
      expect(planExperiment({ name: 'pub', force: true }).adopted).toBeUndefined(); // force reruns everything
      finishRow(ng, wrongOn(6));
      recordExperimentRun(fresh, ng, ran, none(ng));
      for (const dir of [join(runsDir, 'pub'), published]) {
        const r = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as ExperimentResults;
        expect(r.results.map((x) => x.row)).toEqual(['ID3', 'no-guidance']);
        // The adopted row keeps its copies; the new row is tested against its published pairs.
        expect(r.results[0]).toMatchObject({ config: entry.config, figures: entry.figures, pairs: entry.pairs, lfwAccuracy: 1 });
        expect(r.results[1].mcnemarVsID3).toMatchObject({ b: 6, c: 0 });
        expect(r.results[1].mcnemarPVsID3).toBeCloseTo(2 / 64, 12); // exact two-sided: 2 · 0.5^6
        const links = [...readFileSync(join(dir, 'report.md'), 'utf8').matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]);
        expect(links).toContain('figures/pub-ID3-s0-grid.png');
        for (const link of links) expect(existsSync(join(dir, link))).toBe(true);
      }

      // A stale eval of the run in a runs directory (another result than the recorded one) is
      // neither adopted over nor read: McNemar keeps to the recorded pairs.
      freshRunsDir();
      finishRow(id3, wrongOn(10)); // all wrong: not the recorded eval
      const stale = planExperiment({ name: 'pub' });
      expect(stale.adopted).toEqual([ng.runName]); // the ID3 run has stages here: it reruns
      finishRow(ng, wrongOn(6));
      recordExperimentRun(stale, ng, ran, none(ng));
      const afterStale = JSON.parse(readFileSync(join(runsDir, 'pub', 'results.json'), 'utf8')) as ExperimentResults;
      expect(afterStale.results[0]).toMatchObject({ lfwAccuracy: 1, pairs: entry.pairs });
      expect(afterStale.results[1].mcnemarVsID3).toMatchObject({ b: 6, c: 0 }); // against the recorded all-right ID3
      expect(readFileSync(join(runsDir, 'pub', entry.pairs ?? ''), 'utf8')).toBe(readFileSync(join(published, entry.pairs ?? ''), 'utf8'));

      // Not adopted: an entry made by another version of a stage's code, or of another config.
      const results = JSON.parse(readFileSync(join(published, 'results.json'), 'utf8')) as ExperimentResults;
      const rewrite = (edit: (r: ExperimentResults['results'][number]) => object): void =>
        writeFileSync(
          join(published, 'results.json'),
          JSON.stringify({ ...results, results: results.results.map((r) => ({ ...r, ...edit(r) })) }),
        );
      rewrite((r) => ({ stageVersions: { ...r.stageVersions, eval: -1 } }));
      freshRunsDir();
      expect(planExperiment({ name: 'pub' }).adopted).toBeUndefined();
      rewrite(() => ({ configHash: 'another config' }));
      freshRunsDir();
      expect(planExperiment({ name: 'pub' }).adopted).toBeUndefined();

      // Without its pairs beside the results an entry cannot be tested against: not adopted, and
      // dropped from the table when another run records (rerun, it records again).
      writeFileSync(join(published, 'results.json'), JSON.stringify(results));
      rmSync(join(published, entry.pairs ?? ''));
      freshRunsDir();
      const partial = planExperiment({ name: 'pub' });
      expect(partial.adopted).toEqual([ng.runName]);
      finishRow(id3, allRight);
      expect(() => recordExperimentRun(partial, id3, ran, none(id3))).not.toThrow();
      const rerecorded = JSON.parse(readFileSync(join(runsDir, 'pub', 'results.json'), 'utf8')) as ExperimentResults;
      expect(rerecorded.results.map((r) => r.row)).toEqual(['ID3', 'no-guidance']);
      expect(rerecorded.results[1].mcnemarVsID3).toMatchObject({ b: 6, c: 0 });
    });
  });
});
