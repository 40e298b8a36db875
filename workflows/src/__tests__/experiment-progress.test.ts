import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { planExperiment, publishedFolderOf, restoreExperimentProgress, saveExperimentProgress } from '../index';

/** A demo experiment whose sampling is pinned to seed 0, as table1's is: both seeds share one sampled set. */
const carry = {
  description: 'carried progress',
  profile: 'demo',
  seeds: [0, 1],
  publish: 'docs/carry',
  overrides: { sample: { seed: 0 } },
  rows: [
    { name: 'ID3', overrides: {} },
    { name: 'no-guidance', overrides: { sample: { guidance: { scale: 0 } } } },
  ],
};

function write(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** An identity record as the sampler writes it (only `key` matters here), and one of its images. */
function identity(shardDir: string, i: number, key = 'k'): void {
  const name = `id${String(i).padStart(6, '0')}`;
  write(join(shardDir, 'identities', `${name}.json`), JSON.stringify({ key, identity: i }));
  write(join(shardDir, 'images', name, '0.png'), `png-${i}-${key}`);
}

/** Every file under a folder with its content, by relative path. */
function tree(dir: string, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, tree(join(dir, e.name), rel));
    else out[rel] = readFileSync(join(dir, e.name), 'utf8');
  }
  return out;
}

describe('unfinished sampling carried in the publish folder', () => {
  let runs: string;
  const temps: string[] = [];
  const temp = (prefix: string): string => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    temps.push(dir);
    return dir;
  };
  const shards = (run: string): string => join(runs, run, 'sample', 'shards');
  const indexOf = (published: string, row: string): { shards: Record<string, { items: number; key?: string; done: boolean }> } => {
    const folder = join(published, 'progress', row);
    return JSON.parse(readFileSync(join(folder, readdirSync(folder)[0], 'index.json'), 'utf8'));
  };
  beforeEach(() => {
    runs = temp('id3-carry-runs-');
    process.env.ID3_RUNS_DIR = runs;
    process.env.ID3_REPO_ROOT = temp('id3-carry-repo-');
    process.env.ID3_EXPERIMENTS_DIR = temp('id3-carry-files-');
    writeFileSync(join(process.env.ID3_EXPERIMENTS_DIR, 'carry.json'), JSON.stringify(carry));
  });
  afterEach(() => {
    for (const name of ['ID3_RUNS_DIR', 'ID3_REPO_ROOT', 'ID3_EXPERIMENTS_DIR']) delete process.env[name];
    for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('packs finished and partial shards once, restores them into a fresh runs directory byte for byte', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    expect(published).toBe(join(process.env.ID3_REPO_ROOT ?? '', 'docs/carry'));
    const s0 = shards('carry-ID3-s0');
    identity(join(s0, 'identities-00000'), 0);
    identity(join(s0, 'identities-00000'), 1);
    write(join(s0, 'identities-00000/done.json'), '{"format":"id3-shard/1"}');
    identity(join(s0, 'identities-00001'), 10);
    write(join(s0, 'identities-00001/images/id000011/0.png.tmp-123-ab'), 'half written');
    write(
      join(runs, 'carry-ID3-s0', 'identities', 'manifest.json'),
      JSON.stringify({ outputs: { embeddings: { sha256: 'e'.repeat(64) } } }),
    );

    const first = saveExperimentProgress(plan, published).packed;
    expect(first.map((m) => [m.run, m.shard, m.items, m.done])).toEqual([
      ['carry-ID3-s0', 'identities-00000', 2, true],
      ['carry-ID3-s0', 'identities-00001', 1, false],
    ]);
    expect(saveExperimentProgress(plan, published)).toEqual({ packed: [], cleared: [] }); // nothing grew: no file is rewritten
    identity(join(s0, 'identities-00001'), 11);
    expect(saveExperimentProgress(plan, published).packed.map((m) => [m.shard, m.items])).toEqual([['identities-00001', 2]]);

    const folders = readdirSync(join(published, 'progress', 'ID3'));
    expect(folders).toHaveLength(1);
    expect(folders[0]).toMatch(/^sample-[0-9a-f]{16}$/);
    expect(indexOf(published, 'ID3').shards['identities-00000']).toMatchObject({
      items: 2,
      key: 'k',
      done: true,
      from: 'carry-ID3-s0',
      inputs: { 'identities/embeddings': 'e'.repeat(64) }, // what it was made from, for a later machine to compare
    });

    rmSync(join(s0, 'identities-00001/images/id000011/0.png.tmp-123-ab')); // a transient file is never packed
    const before = tree(s0);
    rmSync(runs, { recursive: true, force: true }); // a fresh checkout: the runs directory is gone
    const { restored, failed } = restoreExperimentProgress(plan, {}, published);
    expect(failed).toEqual([]);
    expect(restored.map((m) => [m.run, m.shard])).toEqual([
      ['carry-ID3-s0', 'identities-00000'],
      ['carry-ID3-s0', 'identities-00001'],
    ]);
    expect(tree(s0)).toEqual(before);
    expect(existsSync(shards('carry-ID3-s1'))).toBe(false); // seed 1 reuses seed 0's finished stage, not a copy
    expect(restoreExperimentProgress(plan, {}, published).restored).toEqual([]); // already there
  });

  it('restores into the first run of the row that starts, never over a local shard, never across configs', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    identity(join(shards('carry-ID3-s0'), 'identities-00000'), 0);
    identity(join(shards('carry-ID3-s0'), 'identities-00000'), 1);
    saveExperimentProgress(plan, published);
    rmSync(join(runs, 'carry-ID3-s0'), { recursive: true });

    // Seed 0 recorded already (adopted): seed 1 is the row's first run to start.
    const adopted = { ...plan, adopted: ['carry-ID3-s0'] };
    expect(restoreExperimentProgress(adopted, {}, published).restored.map((m) => m.run)).toEqual(['carry-ID3-s1']);
    expect(tree(join(shards('carry-ID3-s1'), 'identities-00000', 'identities'))).toEqual({
      'id000000.json': '{"key":"k","identity":0}',
      'id000001.json': '{"key":"k","identity":1}',
    });

    // A local shard, however little it holds, is this machine's own (it may be running): left as it is.
    write(join(shards('carry-ID3-s0'), 'identities-00000/images/id000000/0.png'), 'local');
    expect(restoreExperimentProgress(plan, { seeds: [0] }, published).restored).toEqual([]);
    expect(tree(shards('carry-ID3-s0'))).toEqual({ 'identities-00000/images/id000000/0.png': 'local' });

    // The same row with its sampling changed: the carried shards belong to the old config and stay put.
    writeFileSync(
      join(process.env.ID3_EXPERIMENTS_DIR ?? '', 'carry.json'),
      JSON.stringify({ ...carry, overrides: { sample: { seed: 3 } } }),
    );
    const changed = planExperiment({ name: 'carry' });
    rmSync(runs, { recursive: true, force: true });
    expect(restoreExperimentProgress(changed, {}, published)).toEqual({ restored: [], failed: [] });
    expect(existsSync(shards('carry-ID3-s0'))).toBe(false);
  });

  it('work redone under other inputs replaces the carried copy, even with fewer finished items', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    const shard = join(shards('carry-ID3-s0'), 'identities-00000');
    for (const i of [0, 1, 2]) identity(shard, i, 'old-inputs');
    const anHourAgo = new Date(Date.now() - 3_600_000);
    for (const i of [0, 1, 2]) utimesSync(join(shard, 'identities', `id00000${i}.json`), anHourAgo, anHourAgo);
    saveExperimentProgress(plan, published);
    // This machine's upstream differs: the sampler redoes identity 0 under its own key.
    identity(shard, 0, 'new-inputs');
    expect(saveExperimentProgress(plan, published).packed.map((m) => [m.shard, m.items])).toEqual([['identities-00000', 1]]);
    expect(indexOf(published, 'ID3').shards['identities-00000']).toMatchObject({ items: 1, key: 'new-inputs', done: false });
  });

  it('a broken carried shard is reported and left to be sampled again; the others still come back', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    identity(join(shards('carry-ID3-s0'), 'identities-00000'), 0);
    identity(join(shards('carry-ID3-s0'), 'identities-00001'), 10);
    saveExperimentProgress(plan, published);
    const folder = join(published, 'progress', 'ID3', readdirSync(join(published, 'progress', 'ID3'))[0]);
    writeFileSync(join(folder, 'identities-00000.tar.gz.00'), 'not a gzip');
    rmSync(runs, { recursive: true, force: true });
    const { restored, failed } = restoreExperimentProgress(plan, {}, published);
    expect(restored.map((m) => m.shard)).toEqual(['identities-00001']);
    expect(failed).toEqual([expect.stringMatching(/unpacking .*identities-00000\.tar\.gz: /)]);
    expect(existsSync(join(shards('carry-ID3-s0'), 'identities-00000'))).toBe(false);

    // An index naming a path instead of a shard is refused whole, naming the file and field.
    const index = JSON.parse(readFileSync(join(folder, 'index.json'), 'utf8'));
    writeFileSync(
      join(folder, 'index.json'),
      JSON.stringify({ ...index, shards: { ...index.shards, '..': index.shards['identities-00001'] } }),
    );
    rmSync(runs, { recursive: true, force: true });
    expect(restoreExperimentProgress(plan, {}, published)).toEqual({
      restored: [],
      failed: [expect.stringMatching(/index\.json: field 'shards': '\.\.' is not a shard id/)],
    });
  });

  it('clears a row once every run of it is recorded, and packs nothing more for it', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    identity(join(shards('carry-ID3-s0'), 'identities-00000'), 0);
    identity(join(shards('carry-no-guidance-s0'), 'identities-00000'), 0);
    expect(saveExperimentProgress(plan, published).packed.map((m) => m.row)).toEqual(['ID3', 'no-guidance']);
    const results = (seeds: number[]): string =>
      JSON.stringify({ format: 'id3-experiment-results/1', results: seeds.map((seed) => ({ row: 'ID3', seed })) });
    write(join(published, 'results.json'), results([0])); // one of its two seeds: still needed
    identity(join(shards('carry-ID3-s0'), 'identities-00000'), 1);
    expect(saveExperimentProgress(plan, published)).toMatchObject({ cleared: [], packed: [{ row: 'ID3', items: 2 }] });
    write(join(published, 'results.json'), results([0, 1]));
    expect(saveExperimentProgress(plan, published)).toEqual({ packed: [], cleared: ['ID3'] });
    expect(saveExperimentProgress(plan, published)).toEqual({ packed: [], cleared: [] }); // and it stays cleared
    expect(readdirSync(join(published, 'progress'))).toEqual(['no-guidance']);
  });
});
