import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RunStore } from '@id3/core';
import {
  ID3_BIN,
  TASK_QUEUE,
  experimentRunWorkflowId,
  type ExperimentResult,
  type ExperimentResults,
  type ProgressView,
} from '@id3/workflows';
import { startHarness, startInProcessWorker, waitFor, type Harness } from './harness';

// experiments/demo-table1.json end to end: its 2 rows (ID3, no-guidance) of the tiny demo pipeline
// at seed 0 (both seeds take ~5 min on the shared 2-core machine; the second seed's runs are the
// same code path, and the file-level bookkeeping over seeds is unit-tested in workflows/), each a
// child pipeline run on a real Temporal dev server, worker and stage processes.
jest.setTimeout(600_000);

const execFileAsync = promisify(execFile);

const UPSTREAM = ['prepare', 'train-diffusion', 'anchors', 'identities'];
const ALL = [...UPSTREAM, 'sample', 'fr-train', 'eval'];

describe('experiment workflow against a real Temporal server', () => {
  let h: Harness;
  let stopWorker: () => Promise<void>;

  beforeAll(async () => {
    h = await startHarness();
    stopWorker = await startInProcessWorker(h);
  });

  afterAll(async () => {
    await stopWorker?.();
    await h?.close();
  });

  it('runs every row as a child pipeline, reuses shared stages, writes results, and a rerun skips everything', async () => {
    const id = `it-experiment-${Date.now()}`;
    const started = Date.now();
    const handle = await h.client.workflow.start('experiment', {
      taskQueue: TASK_QUEUE,
      workflowId: id,
      args: [{ name: 'demo-table1', seeds: [0] }],
    });
    // `id3 status` while it runs: each running workflow and what it is doing now (asynchronously:
    // this process's worker answers the queries). Once planned, its first row takes minutes.
    await waitFor('the experiment to start its first row', async () => {
      const view = await handle.query<ProgressView>('progress').catch(() => undefined);
      return view?.phase === 'running';
    });
    const status = await execFileAsync(ID3_BIN, ['status'], {
      env: { ...process.env, TEMPORAL_ADDRESS: h.server.address, ID3_STATE_DIR: h.dir },
      timeout: 120_000,
    });
    expect(status.stderr).toMatch(
      new RegExp(`RUNNING +experiment ${id} .*\\n +\\[experiment\\] running \\d/2 running: demo-table1-ID3-s0`),
    );
    const result = (await handle.result()) as ExperimentResult;
    const firstMs = Date.now() - started;
    // The baseline row runs first, so its siblings find its stages finished.
    expect(result.runs.map((r) => r.runName)).toEqual(['demo-table1-ID3-s0', 'demo-table1-no-guidance-s0']);
    expect(result.pending).toEqual([]);
    const child = await h.client.workflow.getHandle(experimentRunWorkflowId(id, 'no-guidance', 0)).describe();
    expect(child.status.name).toBe('COMPLETED');
    expect(await h.client.workflow.getHandle(id).query<ProgressView>('progress')).toMatchObject({ phase: 'done', step: 2, total: 2 });

    const results = JSON.parse(readFileSync(join(h.runsDir, 'demo-table1', 'results.json'), 'utf8')) as ExperimentResults;
    expect(results.results.map((r) => [r.row, r.seed])).toEqual([
      ['ID3', 0],
      ['no-guidance', 0],
    ]);
    for (const r of results.results) {
      expect(r.lfwAccuracy).toBeGreaterThanOrEqual(0);
      expect(r.lfwAccuracy).toBeLessThanOrEqual(1);
      expect(r.lfwStd).toBeGreaterThanOrEqual(0);
      expect(r).toMatchObject({ identities: 3, imagesPerIdentity: 3, benchmark: 'LFW (40-pair sample)' });
      if (r.row === 'ID3') expect(r.mcnemarPVsID3).toBeNull();
      else {
        expect(r.mcnemarPVsID3).toBeGreaterThan(0);
        expect(r.mcnemarPVsID3).toBeLessThanOrEqual(1);
        expect(r.mcnemarVsID3?.b).toEqual(expect.any(Number));
      }
    }
    expect(results.summary.map((s) => [s.row, s.seeds])).toEqual([
      ['ID3', [0]],
      ['no-guidance', [0]],
    ]);
    expect(results.notYetRun).toEqual(['demo-table1-ID3-s1', 'demo-table1-no-guidance-s1']);
    const report = readFileSync(join(h.runsDir, 'demo-table1', 'report.md'), 'utf8');
    expect(report).toMatch(/\| no-guidance \| 0 \| .* ± /);
    expect(report).toMatch(/Not finished yet: `demo-table1-ID3-s1`/);

    // Reuse: the second row took the first row's upstream stages and its pipeline skipped them.
    const noGuidance0 = results.results[1];
    expect(noGuidance0.reusedStages).toEqual(Object.fromEntries(UPSTREAM.map((s) => [s, 'demo-table1-ID3-s0'])));
    expect(noGuidance0.skippedStages).toEqual(UPSTREAM);
    const events = new RunStore(join(h.runsDir, 'demo-table1-no-guidance-s0')).readEvents();
    expect(events.filter((e) => e.event === 'skip').map((e) => e.stage)).toEqual(UPSTREAM);
    expect(events.filter((e) => e.event === 'start').map((e) => e.stage)).toEqual(['sample', 'fr-train', 'eval']);
    // The copies are hard links of the sibling's files (no extra disk).
    const weights = (run: string) => join(h.runsDir, run, 'train-diffusion', 'model', 'ema.bin');
    expect(existsSync(weights('demo-table1-no-guidance-s0'))).toBe(true);
    expect(statSync(weights('demo-table1-no-guidance-s0')).ino).toBe(statSync(weights('demo-table1-ID3-s0')).ino);

    // A rerun of the experiment: every pipeline finds every stage current.
    const again = (await h.client.workflow.execute('experiment', {
      taskQueue: TASK_QUEUE,
      workflowId: `${id}-again`,
      args: [{ name: 'demo-table1', seeds: [0] }],
    })) as ExperimentResult;
    expect(again.runs.map((r) => [r.runName, r.skippedStages, r.stages])).toEqual(
      result.runs.map((r) => [r.runName, ALL.length, ALL.length]),
    );
    const rerun = JSON.parse(readFileSync(join(h.runsDir, 'demo-table1', 'results.json'), 'utf8')) as ExperimentResults;
    expect(rerun.results.map((r) => [r.row, r.seed, r.lfwAccuracy, r.mcnemarPVsID3])).toEqual(
      results.results.map((r) => [r.row, r.seed, r.lfwAccuracy, r.mcnemarPVsID3]),
    );
    // It computed nothing, so each entry still records the run that made it (what it skipped, when).
    expect(rerun.results.map((r) => [r.skippedStages, r.finishedAt])).toEqual(results.results.map((r) => [r.skippedStages, r.finishedAt]));

    // Rows side by side that make the same data (here a row repeated under another name, so its
    // dataKey is the baseline's): the second waits for the first, then reuses all it made.
    const experiments = join(h.dir, 'experiments');
    mkdirSync(experiments);
    const demo = JSON.parse(readFileSync(join(__dirname, '../../experiments/demo-table1.json'), 'utf8')) as {
      rows: { name: string; overrides: unknown }[];
    };
    writeFileSync(
      join(experiments, 'demo-pair.json'),
      JSON.stringify({ ...demo, seeds: [0], rows: [...demo.rows.filter((r) => r.name === 'ID3'), { name: 'ID3-again', overrides: {} }] }),
    );
    process.env.ID3_EXPERIMENTS_DIR = experiments;
    try {
      const pairId = `${id}-pair`;
      const pair = (await h.client.workflow.execute('experiment', {
        taskQueue: TASK_QUEUE,
        workflowId: pairId,
        args: [{ name: 'demo-pair', maxParallelRows: 2 }],
      })) as ExperimentResult;
      expect(pair.runs.map((r) => [r.runName, r.skippedStages])).toEqual([
        ['demo-pair-ID3-s0', ALL.length],
        ['demo-pair-ID3-again-s0', ALL.length],
      ]);
      const first = await h.client.workflow.getHandle(experimentRunWorkflowId(pairId, 'ID3', 0)).describe();
      const second = await h.client.workflow.getHandle(experimentRunWorkflowId(pairId, 'ID3-again', 0)).describe();
      expect(second.startTime.getTime()).toBeGreaterThanOrEqual(first.closeTime?.getTime() ?? Infinity);
      const paired = JSON.parse(readFileSync(join(h.runsDir, 'demo-pair', 'results.json'), 'utf8')) as ExperimentResults;
      expect(paired.results[1]).toMatchObject({
        row: 'ID3-again',
        reusedStages: Object.fromEntries(ALL.map((s) => [s, 'demo-pair-ID3-s0'])),
      });
    } finally {
      delete process.env.ID3_EXPERIMENTS_DIR;
    }

    // The run directories lost (a fresh checkout keeps only the committed results folder): the
    // recorded runs are adopted from the results and their per-pair copies, and none reruns.
    for (const r of result.runs) rmSync(join(h.runsDir, r.runName), { recursive: true });
    const fresh = (await h.client.workflow.execute('experiment', {
      taskQueue: TASK_QUEUE,
      workflowId: `${id}-fresh`,
      args: [{ name: 'demo-table1', seeds: [0] }],
    })) as ExperimentResult;
    expect(fresh.runs).toEqual([]);
    for (const r of result.runs) expect(existsSync(join(h.runsDir, r.runName, 'eval'))).toBe(false);
    const kept = JSON.parse(readFileSync(join(h.runsDir, 'demo-table1', 'results.json'), 'utf8')) as ExperimentResults;
    expect(kept).toEqual(rerun);
    console.log(
      `experiment demo-table1: first run ${(firstMs / 1000).toFixed(0)} s, rerun ${((Date.now() - started - firstMs) / 1000).toFixed(0)} s`,
    );
  });

  it('an unknown experiment fails non-retryably, listing the known ones', async () => {
    const handle = await h.client.workflow.start('experiment', {
      taskQueue: TASK_QUEUE,
      workflowId: `it-experiment-bad-${Date.now()}`,
      args: [{ name: 'nope' }],
    });
    const err = await handle.result().catch((e: unknown) => e);
    let cause = err as { cause?: unknown; message: string; type?: string } | undefined;
    while (cause?.cause) cause = cause.cause as typeof cause;
    expect(cause?.type).toBe('InvalidInput');
    expect(cause?.message).toMatch(/unknown experiment 'nope'.*known: .*demo-table1/);
  });
});
