import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { PROGRESS_LINE_PREFIX, type ProgressEvent } from '@id3/core';
import { createActivities, planRun, type StageSummary } from '../index';
import { backgroundLaunch, hasAutogroups, parseBackgroundStages } from '../activities';
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

  describe('background stages (ID3_BACKGROUND_STAGES)', () => {
    // A stand-in stage that reports its pid, session, nice and autogroup (name and nice). It waits
    // (up to 3 s) for the autogroup to be lowered, which the activity does just after the spawn.
    const probe = (): string => {
      const dir = mkdtempSync(join(tmpdir(), 'id3-act-bg-'));
      const fake = join(dir, 'id3');
      writeFileSync(
        fake,
        [
          '#!/bin/sh',
          'ag=none',
          'for i in $(seq 30); do',
          '  [ -r /proc/$$/autogroup ] || break',
          '  ag=$(sed "s/ nice /:/" /proc/$$/autogroup)',
          '  case "$ag" in *:19) break ;; esac',
          '  sleep 0.1',
          'done',
          'read -r stat < /proc/$$/stat',
          'set -- $stat',
          `echo '${PROGRESS_LINE_PREFIX}{"stage":"anchors","phase":"probe","message":"'"pid=$$ sid=$6 nice=\${19} autogroup=$ag"'"}'`,
          `echo '${RESULT_LINE_PREFIX}{"skipped":false,"metrics":{}}'`,
        ].join('\n'),
        { mode: 0o755 },
      );
      return fake;
    };
    const run = async (backgroundStages: string[]): Promise<Record<string, string>> => {
      const plan = planRun({ runName: `act-bg-${backgroundStages.length}`, stages: ['anchors'] });
      const env = new MockActivityEnvironment();
      let message = '';
      env.on('heartbeat', (d: ProgressEvent) => {
        if (d.phase === 'probe') message = d.message ?? '';
      });
      await env.run(createActivities({ id3Bin: probe(), heartbeatEveryMs: 50, backgroundStages }).runStage, { stage: 'anchors', plan });
      return Object.fromEntries(message.split(' ').map((kv) => kv.split('=') as [string, string]));
    };
    const self = (): { sid: string; autogroup: string } => ({
      sid: readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[3],
      autogroup: hasAutogroups() ? readFileSync('/proc/self/autogroup', 'utf8').trim().replace(' nice ', ':') : 'none',
    });

    it('starts a listed stage under nice -n 19 in a process group and session of its own', () => {
      expect(backgroundLaunch('bin/id3', ['stage', 'sample'])).toEqual({
        command: 'nice',
        args: ['-n', '19', 'bin/id3', 'stage', 'sample'],
        detached: true,
      });
    });

    it('runs a listed stage at nice 19 in a session of its own, with its own autogroup lowered to 19 where the kernel has autogroups', async () => {
      const seen = await run(['sample', 'anchors']);
      expect(seen.nice).toBe('19');
      expect(seen.sid).toBe(seen.pid); // the session's leader: nice execs the stage, the pid stays
      expect(seen.sid).not.toBe(self().sid);
      if (hasAutogroups()) {
        const [name, nice] = seen.autogroup.split(':');
        expect(nice).toBe('19');
        expect(name).not.toBe(self().autogroup.split(':')[0]); // its own, not this process's lowered
      } else expect(seen.autogroup).toBe('none');
    });

    it("runs any other stage as before: the worker's nice, session and autogroup", async () => {
      const seen = await run(['sample']);
      expect(seen.nice).toBe(String(getPriority()));
      expect(seen.sid).toBe(self().sid);
      expect(seen.autogroup).toBe(self().autogroup); // the same group, its nice untouched
    });

    it('checks the names against the stages the worker knows', () => {
      const known = ['prepare', 'sample', 'fr-train'];
      expect(parseBackgroundStages(undefined, known)).toEqual([]);
      expect(parseBackgroundStages(' sample, sample ,', known)).toEqual(['sample']);
      expect(parseBackgroundStages('sample,fr-train', known)).toEqual(['sample', 'fr-train']);
      expect(() => parseBackgroundStages('sampel', known)).toThrow(
        "ID3_BACKGROUND_STAGES: 'sampel' is not a stage (known: prepare, sample, fr-train)",
      );
    });
  });
});
