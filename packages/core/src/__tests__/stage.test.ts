import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import {
  RunStore,
  checkResources,
  executeShard,
  executeStage,
  prepareStageRun,
  writeFileAtomic,
  type ProgressEvent,
  type StageDefinition,
} from '../index';

const schema = z.object({ seed: z.number().int(), text: z.string(), fail: z.boolean().default(false) }).strict();

function makeStage(calls: { count: number }): StageDefinition<typeof schema> {
  return {
    name: 'echo',
    version: 1,
    schema,
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

describe('upstream reads', () => {
  const readerSchema = z.object({ seed: z.number().int(), from: z.string().default('out') }).strict();
  const reader: StageDefinition<typeof readerSchema> = {
    name: 'reader',
    version: 1,
    schema: readerSchema,
    upstream: ['echo'],
    reads: (config) => ({ echo: [config.from] }),
    async run({ dir, inputs }) {
      const out = join(dir, 'copy.txt');
      writeFileAtomic(out, readFileSync(inputs[Object.keys(inputs)[0]], 'utf8').toUpperCase());
      return { outputs: { copy: out }, metrics: {} };
    },
  };
  const opts = (store: RunStore) => ({ store, progress: () => undefined, backend: 'cpu' });

  it('resolves named outputs through the upstream manifest, and re-runs when they change', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-reads-')));
    await executeStage(makeStage({ count: 0 }), { seed: 1, text: 'hi' }, opts(store));
    const r = await executeStage(reader, { seed: 1 }, opts(store));
    expect(readFileSync(store.abs(r.manifest.outputs.copy.path), 'utf8')).toBe('HI:1');
    expect(r.manifest.inputs).toEqual({ out: store.readManifest('echo')?.outputs.out });
    expect((await executeStage(reader, { seed: 1 }, opts(store))).skipped).toBe(true);
    await executeStage(makeStage({ count: 0 }), { seed: 2, text: 'hi' }, opts(store));
    expect((await executeStage(reader, { seed: 1 }, opts(store))).skipped).toBe(false);
  });

  it('names the missing upstream stage or output', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-reads-')));
    await expect(executeStage(reader, { seed: 1 }, opts(store))).rejects.toThrow(
      /stage 'reader' reads the outputs of stage 'echo', which has not completed .*: run 'echo' first/,
    );
    await executeStage(makeStage({ count: 0 }), { seed: 1, text: 'hi' }, opts(store));
    await expect(executeStage(reader, { seed: 1, from: 'nope' }, opts(store))).rejects.toThrow(
      /reads output 'nope' of stage 'echo', which has none by that name \(it has: out\)/,
    );
  });
});

describe('sharded stages', () => {
  const schema = z.object({ seed: z.number().int(), parts: z.number().int(), failOn: z.string().optional() }).strict();
  function sharded(ran: string[]): StageDefinition<typeof schema> {
    return {
      name: 'split',
      version: 1,
      schema,
      shards: {
        plan: ({ config }) => Array.from({ length: config.parts }, (_, i) => `part-${i}`),
        async run({ config, shard, shardDir }) {
          ran.push(shard);
          if (shard === config.failOn) throw new Error(`killed in ${shard}`);
          writeFileAtomic(join(shardDir, 'value.txt'), shard.toUpperCase());
          return { metrics: { length: shard.length } };
        },
      },
      async run({ dir, shards }) {
        const out = join(dir, 'merged.txt');
        writeFileAtomic(out, shards.map((s) => readFileSync(join(s.dir, 'value.txt'), 'utf8')).join(','));
        return {
          outputs: { merged: out },
          metrics: { shards: shards.length, totalLength: shards.reduce((a, s) => a + s.metrics.length, 0) },
        };
      },
    };
  }
  const opts = (store: RunStore) => ({ store, progress: () => undefined, backend: 'cpu' });

  it('runs every shard once, merges in plan order, and a failure loses only the failed shard', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-shards-')));
    const ran: string[] = [];
    await expect(executeStage(sharded(ran), { seed: 0, parts: 4, failOn: 'part-2' }, opts(store))).rejects.toThrow('killed in part-2');
    expect(ran).toEqual(['part-0', 'part-1', 'part-2']);
    expect(existsSync(store.manifestPath('split'))).toBe(false);

    // Same work, the failure gone (another config field would be another work key).
    const def = sharded(ran);
    const plan = await prepareStageRun(def, { seed: 0, parts: 4, failOn: 'part-2' }, opts(store));
    expect(plan.current ? [] : plan.shards).toEqual([
      { id: 'part-0', done: true },
      { id: 'part-1', done: true },
      { id: 'part-2', done: false },
      { id: 'part-3', done: false },
    ]);
    // Shards run one by one, as workers would take them; a done shard is not redone.
    ran.length = 0;
    expect((await executeShard(def, { seed: 0, parts: 4, failOn: 'part-2' }, 'part-1', opts(store))).skipped).toBe(true);
    expect(ran).toEqual([]);
    await expect(executeShard(def, { seed: 0, parts: 4, failOn: 'part-2' }, 'part-9', opts(store))).rejects.toThrow(
      /has no shard 'part-9'/,
    );
  });

  it('merges shards done by separate calls; a changed config starts its shards afresh', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-shards-')));
    const ran: string[] = [];
    const def = sharded(ran);
    for (const id of ['part-2', 'part-0']) await executeShard(def, { seed: 0, parts: 3 }, id, opts(store));
    const r = await executeStage(def, { seed: 0, parts: 3 }, opts(store));
    expect(ran).toEqual(['part-2', 'part-0', 'part-1']);
    expect(readFileSync(store.abs(r.manifest.outputs.merged.path), 'utf8')).toBe('PART-0,PART-1,PART-2');
    expect(r.manifest.metrics).toEqual({ shards: 3, totalLength: 18 });
    expect((await executeStage(def, { seed: 0, parts: 3 }, opts(store))).skipped).toBe(true);

    ran.length = 0;
    await executeStage(def, { seed: 1, parts: 2 }, opts(store));
    expect(ran).toEqual(['part-0', 'part-1']); // another work key: nothing reused, part-2 dropped
    expect(existsSync(join(store.stageDir('split'), 'shards', 'part-2'))).toBe(false);
    expect(store.readEvents().filter((e) => e.event === 'shard-complete')).toHaveLength(5);
  });
});

describe('checkResources', () => {
  const GiB = 1024 ** 3;
  const machine = { memoryBytes: 24 * GiB, maxArrayBytes: 4 * GiB };
  const estimate = (memoryBytes: number, largestArrayBytes = 1) => ({
    memoryBytes,
    largestArrayBytes,
    field: 'anchors.n',
    formula: 'n × 4 B',
  });

  it('accepts what fits in 80% of memory and refuses more, naming the field, the estimate and the limit', () => {
    expect(() => checkResources('anchors', estimate(19 * GiB), machine)).not.toThrow();
    expect(() => checkResources('anchors', estimate(20 * GiB), machine)).toThrow(
      "field 'anchors.n': stage 'anchors' needs about 20.0 GiB (n × 4 B), more than this machine can give it (19.2 GiB of 24.0 GiB)",
    );
  });

  it('refuses one array past what a typed array can hold, even when memory would do', () => {
    expect(() => checkResources('anchors', estimate(5 * GiB, 5 * GiB), { memoryBytes: 1024 * GiB, maxArrayBytes: 4 * GiB })).toThrow(
      /one array of 5\.00 GiB, past the 4\.00 GiB a typed array can hold/,
    );
  });
});
