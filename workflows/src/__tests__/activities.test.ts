import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { PROGRESS_LINE_PREFIX, type ProgressEvent } from '@id3/core';
import { createActivities, planRun, type StageSummary } from '../index';
import { RESULT_LINE_PREFIX } from '../stage-command';

// The stage activity against the real stage CLI (bin/id3 stage …), without a server.
jest.setTimeout(120_000);

describe('runStage activity', () => {
  beforeAll(() => {
    process.env.ID3_RUNS_DIR = mkdtempSync(join(tmpdir(), 'id3-act-'));
  });

  it('spawns the stage, heartbeats its progress and returns paths, hashes and metrics', async () => {
    const plan = planRun({
      runName: 'act-ok',
      stages: ['anchors'],
      overrides: { anchors: { n: 200, dim: 128, iterations: 40, neighbours: 8, refreshEvery: 10 } },
    });
    const env = new MockActivityEnvironment();
    const beats: ProgressEvent[] = [];
    env.on('heartbeat', (d: ProgressEvent) => beats.push(d));
    const summary: StageSummary = await env.run(createActivities({ heartbeatEveryMs: 200 }).runStage, { stage: 'anchors', plan });
    expect(summary.skipped).toBe(false);
    expect(summary.outputs.anchors.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(summary.metrics.minAngleDeg).toBeGreaterThan(0);
    expect(beats.some((b) => b.phase === 'optimise')).toBe(true);
  });

  it('adds the time left to a counted phase once it has moved (what id3 status and the Web UI show)', async () => {
    // A stand-in stage process with a known pace: the estimate must not depend on this machine's speed.
    const dir = mkdtempSync(join(tmpdir(), 'id3-act-eta-'));
    const fake = join(dir, 'id3');
    const line = (step: number) => `${PROGRESS_LINE_PREFIX}${JSON.stringify({ stage: 'anchors', phase: 'optimise', step, total: 100 })}`;
    writeFileSync(
      fake,
      [
        '#!/bin/sh',
        ...[0, 2, 10, 100].flatMap((step) => [`echo '${line(step)}'`, 'sleep 0.2']),
        `echo '${RESULT_LINE_PREFIX}{"skipped":false,"metrics":{}}'`,
      ].join('\n'),
      { mode: 0o755 },
    );
    const plan = planRun({ runName: 'act-eta', stages: ['anchors'] });
    const env = new MockActivityEnvironment();
    const beats: ProgressEvent[] = [];
    env.on('heartbeat', (d: ProgressEvent) => beats.push(d));
    await env.run(createActivities({ id3Bin: fake, heartbeatEveryMs: 50 }).runStage, { stage: 'anchors', plan });
    const at = (step: number) => beats.find((b) => b.phase === 'optimise' && b.step === step)?.message;
    expect(at(0)).toBeUndefined(); // the phase's start: no pace yet
    expect(at(2)).toBeUndefined(); // two steps: too few to tell
    expect(at(10)).toMatch(/^about \d+ s left$/); // 10 steps in about 0.4 s, 90 left: seconds, not minutes
    expect(at(100)).toBeUndefined(); // done
  });

  it('maps invalid input to a non-retryable InvalidInput failure carrying the message', async () => {
    const plan = planRun({ runName: 'act-bad', stages: ['anchors'] });
    // Corrupt the written config after planning: the stage process must reject it by field.
    writeFileSync(
      plan.configPath,
      JSON.stringify({ profile: 'demo', seed: 0, stages: ['anchors'], anchors: { n: 'x', dim: 3, iterations: 1 } }),
    );
    const env = new MockActivityEnvironment();
    const err = (await env.run(createActivities().runStage, { stage: 'anchors', plan }).catch((e: unknown) => e)) as {
      type?: string;
      nonRetryable?: boolean;
      message: string;
    };
    expect(err.type).toBe('InvalidInput');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toMatch(/field 'anchors\.n'/);
  });

  it('kills the stage process when the activity is cancelled', async () => {
    const plan = planRun({ runName: 'act-cancel', stages: ['anchors'], overrides: { anchors: { n: 3000, dim: 128, iterations: 5000 } } });
    const env = new MockActivityEnvironment();
    let started = false;
    env.on('heartbeat', (d: ProgressEvent) => {
      if (d.phase === 'optimise') started = true;
    });
    const running = env.run(createActivities({ heartbeatEveryMs: 200 }).runStage, { stage: 'anchors', plan });
    while (!started) await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    env.cancel();
    await expect(running).rejects.toBeTruthy();
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
