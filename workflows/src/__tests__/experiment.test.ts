import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { hashJson, mergeConfig, type StageManifest } from '@id3/core';
import { poseBinnedAccuracy } from '@id3/eval';
import {
  buildPipelineConfig,
  planExperiment,
  recordExperimentRun,
  reuseFinishedStages,
  stageRegistry,
  validateStageSection,
  type ExperimentPlan,
  type ExperimentResults,
  type ExperimentRun,
} from '../index';

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

  it('the repository experiments are valid: table1 has every row at 2 seeds, baseline first per seed', () => {
    const table1 = planExperiment({ name: 'table1' });
    expect(table1.benchmark).toBe('LFW');
    expect(table1.runs).toHaveLength(18);
    expect(table1.runs.slice(0, 3).map((r) => r.runName)).toEqual(['table1-ID3-s0', 'table1-real-s0', 'table1-no-guidance-s0']);
    expect(table1.runs.find((r) => r.row === 'real')?.input.stages).toEqual(['prepare', 'fr-train', 'eval']);
    expect(table1.runs.find((r) => r.row === 'crowded-random')?.compareTo).toBe('crowded-tammes');
    const demo = planExperiment({ name: 'demo-table1' });
    expect(demo.runs.map((r) => [r.row, r.seed, r.input.overrides?.seed])).toEqual([
      ['ID3', 0, 0],
      ['no-guidance', 0, 0],
      ['ID3', 1, 1],
      ['no-guidance', 1, 1],
    ]);
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

  it('a seed subset must be seeds of the file', () => {
    expect(() => planExperiment({ name: 'demo-table1', seeds: [5] })).toThrow(
      /field 'seeds\[0\]': seed 5 is not one of .*demo-table1\.json's seeds \(0, 1\)/,
    );
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
    const [id3, noGuidance] = plan.runs;
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
    expect(reuseFinishedStages({ ...plan.runs[3], input: { ...plan.runs[3].input, force: true } }, [id3.runName]).reused).toEqual({});

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
  });

  it('takes a stage from a run outside the experiment by copy, after the siblings', () => {
    const [id3, noGuidance] = plan.runs;
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
    const next = plan.runs[2];
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
  ): void {
    const dir = join(runsDir, run.runName);
    const put = (rel: string, value: unknown) => {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), JSON.stringify(value));
    };
    const accuracy = correct.filter(Boolean).length / correct.length;
    const folds = correct.map((_, i) => i % 2);
    put('eval/pairs-LFW40pairsample.json', {
      benchmark: plan.benchmark,
      pairs: correct.length,
      folds,
      issame,
      correct,
      ...(yaw ? { yawDifference: yaw } : {}),
    });
    // The eval stage's own metrics of the binning (checked against known values in the tests).
    const pose = yaw ? poseBinnedAccuracy(yaw, correct) : undefined;
    put('eval/manifest.json', {
      format: 'id3-stage-manifest/1',
      stage: 'eval',
      outputs: { pairs_LFW40pairsample: { path: 'eval/pairs-LFW40pairsample.json', sha256: 'x', bytes: 1 } },
      metrics: {
        LFW40pairsample_accuracy: accuracy,
        LFW40pairsample_accuracyStd: 0.05,
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
      metrics: {},
    });
  }
  const done = { stages: [] };
  const none = (run: ExperimentRun) => ({ runName: run.runName, reused: {} });
  const read = () => JSON.parse(readFileSync(join(runsDir, 'demo-table1', 'results.json'), 'utf8')) as ExperimentResults;

  it('records rows as they finish, McNemar against the baseline of the same seed, mean ± std over seeds', () => {
    const [id3s0, ngs0, id3s1, ngs1] = plan.runs;
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
    expect(report).toMatch(/\| no-guidance \| 0 \| .* \| 0\.00 ± 0\.00 \| 0\.250 \|/);
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

    // Pairs that are not the same pairs are refused, naming both files.
    finishRow(ngs1, all, all);
    expect(() => recordExperimentRun(plan, ngs1, done, none(ngs1))).toThrow(/are not the same pairs/);
  });

  it('drops entries recorded under another config of the row', () => {
    const [id3s0] = plan.runs;
    finishRow(id3s0, [true, false]);
    recordExperimentRun(plan, id3s0, done, none(id3s0));
    const changed = { ...plan, runs: plan.runs.map((r) => ({ ...r, configHash: `${r.configHash}-changed` })) };
    finishRow(plan.runs[1], [true, true]);
    recordExperimentRun(changed, changed.runs[1], done, none(changed.runs[1]));
    expect(read().results.map((x) => x.row)).toEqual(['no-guidance']);
  });
});
