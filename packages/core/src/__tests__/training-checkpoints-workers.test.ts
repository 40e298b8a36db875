import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GradientWorkerPool, checkpointName, listCheckpoints, resumeCheckpoint, writeCheckpoint, type CheckpointStateBase } from '../index';

interface ToyState extends CheckpointStateBase {
  readonly note: string;
}

describe('checkpoint directories', () => {
  let root: string;
  beforeEach(() => {
    root = join(mkdtempSync(join(tmpdir(), 'id3-kit-')), 'checkpoints');
  });
  afterEach(() => rmSync(dirname(root), { recursive: true, force: true }));

  const save = (step: number, key = 'k', keep = 2) =>
    writeCheckpoint(root, { format: 'toy/1', step, key, note: `n${step}` } as ToyState, {
      keep,
      writeFiles: (dir) => writeFileSync(join(dir, 'payload.txt'), `payload ${step}`),
    });

  it('writes step directories whole (temp dir + rename, state last) and prunes to keep-N', async () => {
    expect(await save(1)).toBe(join(root, 'step-000000001'));
    await save(2);
    await save(10);
    expect(listCheckpoints(root)).toEqual([
      { name: 'step-000000002', step: 2 },
      { name: 'step-000000010', step: 10 },
    ]);
    expect(readdirSync(root).filter((n) => n.startsWith('.tmp'))).toEqual([]);
    expect(readFileSync(join(root, checkpointName(10), 'payload.txt'), 'utf8')).toBe('payload 10');
    expect(JSON.parse(readFileSync(join(root, checkpointName(10), 'state.json'), 'utf8'))).toEqual({
      format: 'toy/1',
      step: 10,
      key: 'k',
      note: 'n10',
    });
  });

  it('a directory without state.json (a crash mid-write) is not a checkpoint; a failed writeFiles leaves nothing visible', async () => {
    await save(1);
    mkdirSync(join(root, checkpointName(5)));
    expect(listCheckpoints(root).map((c) => c.step)).toEqual([1]);
    await expect(
      writeCheckpoint(
        root,
        { format: 'toy/1', step: 6, key: 'k' },
        {
          keep: 2,
          writeFiles: () => {
            throw new Error('disk full');
          },
        },
      ),
    ).rejects.toThrow('disk full');
    expect(listCheckpoints(root).map((c) => c.step)).toEqual([1]);
  });

  it('resumes the newest of this format and key, skipping unreadable and foreign ones', async () => {
    await save(1);
    await save(2, 'k', 5);
    await save(3, 'k', 5);
    writeFileSync(join(root, checkpointName(3), 'state.json'), '{ torn');
    await writeCheckpoint(root, { format: 'other/1', step: 4, key: 'x' }, { keep: 5, writeFiles: () => undefined });
    const loaded: string[] = [];
    const r = resumeCheckpoint<ToyState>(root, { format: 'toy/1', key: 'k' }, (dir, state) =>
      loaded.push(`${readFileSync(join(dir, 'payload.txt'), 'utf8')} ${state.note}`),
    );
    expect(r).toEqual({ step: 2, path: join(root, checkpointName(2)) });
    expect(loaded).toEqual(['payload 2 n2']);
    expect(resumeCheckpoint(join(root, 'none'), { format: 'toy/1', key: 'k' }, () => undefined)).toBeUndefined();
  });

  it('another key moves the whole directory aside to <root>.stale-<time> and nothing is loaded', async () => {
    await save(1, 'old');
    await save(2, 'old');
    const r = resumeCheckpoint(root, { format: 'toy/1', key: 'new' }, () => {
      throw new Error('must not load');
    });
    expect(r).toEqual({
      ignored: expect.stringMatching(/another config or dataset; moved the old checkpoints to .*checkpoints\.stale-/) as string,
    });
    expect(existsSync(root)).toBe(false);
    const aside = readdirSync(dirname(root)).filter((n) => n.startsWith('checkpoints.stale-'));
    expect(aside).toHaveLength(1);
    expect(listCheckpoints(join(dirname(root), aside[0])).map((c) => c.step)).toEqual([1, 2]);
    // The new run's own checkpoints then resume.
    await save(3, 'new');
    expect(resumeCheckpoint(root, { format: 'toy/1', key: 'new' }, () => undefined)).toMatchObject({ step: 3 });
  });
});

describe('GradientWorkerPool (TypeScript worker bodies through the tsx bootstrap)', () => {
  jest.setTimeout(60_000);
  const script = join(__dirname, 'fixtures', 'scaled-gradient-worker.ts');

  it('sends worker i payload i with the weights and returns results in payload order', async () => {
    const pool = await GradientWorkerPool.start<{ tag: number }, { factor: number }>({ script, count: 2, init: { tag: 7 } });
    try {
      expect(pool.size).toBe(2);
      const weights = Float32Array.of(1, -2, 3);
      const out = await pool.gradients(weights, [{ factor: 2 }, { factor: -1 }]);
      expect(out.map((r) => Array.from(r.grads))).toEqual([
        [2, -4, 6],
        [-1, 2, -3],
      ]);
      expect(out.map((r) => Array.from(r.terms))).toEqual([
        [2, 7],
        [-1, 7],
      ]);
      expect(Array.from(weights)).toEqual([1, -2, 3]); // the caller's weights are copied, not moved
      expect((await pool.gradients(weights, [{ factor: 3 }]))[0].grads[2]).toBe(9); // fewer shards than workers
      await expect(pool.gradients(weights, [{ factor: 1 }, { factor: 1 }, { factor: 1 }])).rejects.toThrow('3 shards for 2 workers');
    } finally {
      await pool.close();
    }
  });

  it("a failing step rejects with the worker's error, and the pool keeps working", async () => {
    const pool = await GradientWorkerPool.start<{ tag: number }, { factor: number }>({ script, count: 1, init: { tag: 1 } });
    try {
      await expect(pool.gradients(Float32Array.of(1), [{ factor: Number.NaN }])).rejects.toThrow(
        /gradient worker failed: Error: factor is NaN/,
      );
      expect(Array.from((await pool.gradients(Float32Array.of(1), [{ factor: 4 }]))[0].grads)).toEqual([4]);
    } finally {
      await pool.close();
    }
  });

  it('a worker script that cannot load fails start', async () => {
    await expect(
      GradientWorkerPool.start({ script: join(__dirname, 'fixtures', 'missing-worker.ts'), count: 1, init: {} }),
    ).rejects.toThrow(/missing-worker/);
  });
});
