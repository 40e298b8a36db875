import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { RunStore, executeStage, writeFileAtomic, type ProgressEvent, type StageDefinition } from '../index';

const schema = z.object({ seed: z.number().int(), text: z.string(), fail: z.boolean().default(false) }).strict();

function makeStage(calls: { count: number }): StageDefinition<typeof schema> {
  return {
    name: 'echo',
    version: 1,
    schema,
    inputs: () => ({}),
    async run({ config, dir, progress }) {
      calls.count += 1;
      progress({ phase: 'work', step: 1, total: 1 });
      const out = join(dir, 'out.txt');
      writeFileAtomic(out, `${config.text}:${config.seed}`);
      if (config.fail) throw new Error('boom after writing');
      return { outputs: { out }, metrics: { length: config.text.length, undefinedRatio: config.text.length ? Number.NaN : 0 } };
    },
  };
}

describe('executeStage', () => {
  const events: ProgressEvent[] = [];
  const opts = (store: RunStore) => ({ store, progress: (e: ProgressEvent) => events.push(e), backend: 'cpu' });

  it('runs, writes a manifest with output hashes, then skips when current, and re-runs on change', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-stage-')));
    const calls = { count: 0 };
    const stage = makeStage(calls);
    const first = await executeStage(stage, { seed: 1, text: 'hi' }, opts(store));
    expect(first.skipped).toBe(false);
    expect(first.manifest.outputs.out.path).toBe('echo/out.txt');
    expect(first.manifest.metrics).toEqual({ length: 2 }); // the NaN metric is left out (JSON would make it null)
    expect(JSON.parse(readFileSync(store.manifestPath('echo'), 'utf8')).configHash).toBe(first.manifest.configHash);

    const second = await executeStage(stage, { seed: 1, text: 'hi' }, opts(store));
    expect(second.skipped).toBe(true);
    expect(calls.count).toBe(1);

    const third = await executeStage(stage, { seed: 2, text: 'hi' }, opts(store));
    expect(third.skipped).toBe(false);
    expect(calls.count).toBe(2);
    expect((await executeStage(stage, { seed: 2, text: 'hi' }, { ...opts(store), force: true })).skipped).toBe(false);
    expect(store.readEvents().map((e) => e.event)).toEqual(['start', 'complete', 'skip', 'start', 'complete', 'start', 'complete']);
  });

  it('a failing stage leaves no manifest (its partial outputs never count as done)', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-stage-')));
    await expect(executeStage(makeStage({ count: 0 }), { seed: 1, text: 'x', fail: true }, opts(store))).rejects.toThrow('boom');
    expect(existsSync(store.manifestPath('echo'))).toBe(false);
    expect(store.readEvents().map((e) => e.event)).toEqual(['start', 'fail']);
  });

  it('invalid config fails before running, naming the field', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-stage-')));
    const calls = { count: 0 };
    await expect(executeStage(makeStage(calls), { seed: 1, text: 3 }, { ...opts(store), configSource: 'cfg.json' })).rejects.toThrow(
      /invalid config \(cfg\.json\): field 'text'/,
    );
    expect(calls.count).toBe(0);
  });
});
