import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
  const shards = (run: string): string => join(runs, run, 'sample', 'shards');
  beforeEach(() => {
    runs = mkdtempSync(join(tmpdir(), 'id3-carry-runs-'));
    process.env.ID3_RUNS_DIR = runs;
    process.env.ID3_REPO_ROOT = mkdtempSync(join(tmpdir(), 'id3-carry-repo-'));
    process.env.ID3_EXPERIMENTS_DIR = mkdtempSync(join(tmpdir(), 'id3-carry-files-'));
    writeFileSync(join(process.env.ID3_EXPERIMENTS_DIR, 'carry.json'), JSON.stringify(carry));
  });
  afterEach(() => {
    delete process.env.ID3_REPO_ROOT;
    delete process.env.ID3_EXPERIMENTS_DIR;
  });

  it('packs finished and partial shards once, restores them into a fresh runs directory byte for byte', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    expect(published).toBe(join(process.env.ID3_REPO_ROOT ?? '', 'docs/carry'));
    const s0 = shards('carry-ID3-s0');
    write(join(s0, 'identities-00000/identities/id000000.json'), '{"key":"k","identity":0}');
    write(join(s0, 'identities-00000/images/id000000/0.png'), 'png-0');
    write(join(s0, 'identities-00000/done.json'), '{"format":"id3-shard/1"}');
    write(join(s0, 'identities-00001/identities/id000010.json'), '{"key":"k","identity":10}');
    write(
      join(runs, 'carry-ID3-s0', 'identities', 'manifest.json'),
      JSON.stringify({ outputs: { embeddings: { sha256: 'e'.repeat(64) } } }),
    );

    const first = saveExperimentProgress(plan, published).packed;
    expect(first.map((m) => [m.run, m.shard, m.files, m.done])).toEqual([
      ['carry-ID3-s0', 'identities-00000', 3, true],
      ['carry-ID3-s0', 'identities-00001', 1, false],
    ]);
    expect(saveExperimentProgress(plan, published)).toEqual({ packed: [], cleared: [] }); // nothing grew: no file is rewritten
    write(join(s0, 'identities-00001/identities/id000011.json'), '{"key":"k","identity":11}');
    expect(saveExperimentProgress(plan, published).packed.map((m) => [m.shard, m.files])).toEqual([['identities-00001', 2]]);

    const folders = readdirSync(join(published, 'progress', 'ID3'));
    expect(folders).toHaveLength(1);
    expect(folders[0]).toMatch(/^sample-[0-9a-f]{16}$/);
    const index = JSON.parse(readFileSync(join(published, 'progress', 'ID3', folders[0], 'index.json'), 'utf8'));
    expect(index.shards['identities-00000']).toMatchObject({ files: 3, done: true, from: 'carry-ID3-s0' });
    expect(index.inputs).toEqual({ 'identities/embeddings': 'e'.repeat(64) }); // what it was made from, for a later machine to compare

    const before = tree(s0);
    rmSync(runs, { recursive: true, force: true }); // a fresh checkout: the runs directory is gone
    const restored = restoreExperimentProgress(plan, {}, published);
    expect(restored.map((m) => [m.run, m.shard])).toEqual([
      ['carry-ID3-s0', 'identities-00000'],
      ['carry-ID3-s0', 'identities-00001'],
    ]);
    expect(tree(s0)).toEqual(before);
    expect(existsSync(shards('carry-ID3-s1'))).toBe(false); // seed 1 reuses seed 0's finished stage, not a copy
    expect(restoreExperimentProgress(plan, {}, published)).toEqual([]); // already there
  });

  it('restores into the first run of the row that starts, never over a finished local shard, never across configs', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    const s0 = shards('carry-ID3-s0');
    write(join(s0, 'identities-00000/identities/id000000.json'), 'carried');
    write(join(s0, 'identities-00000/identities/id000001.json'), 'carried');
    saveExperimentProgress(plan, published);
    rmSync(join(runs, 'carry-ID3-s0'), { recursive: true });

    // Seed 0 recorded already (adopted): seed 1 is the row's first run to start.
    const adopted = { ...plan, adopted: ['carry-ID3-s0'] };
    expect(restoreExperimentProgress(adopted, {}, published).map((m) => m.run)).toEqual(['carry-ID3-s1']);
    expect(readFileSync(join(shards('carry-ID3-s1'), 'identities-00000/identities/id000000.json'), 'utf8')).toBe('carried');

    // A local shard that finished stays as it is, however little it holds.
    write(join(shards('carry-ID3-s0'), 'identities-00000/done.json'), 'local');
    expect(restoreExperimentProgress(plan, { seeds: [0] }, published)).toEqual([]);
    expect(tree(shards('carry-ID3-s0'))).toEqual({ 'identities-00000/done.json': 'local' });

    // The other row samples under another config: ID3's shards are not its.
    expect(restoreExperimentProgress(plan, { rows: ['no-guidance'] }, published)).toEqual([]);
    expect(existsSync(shards('carry-no-guidance-s0'))).toBe(false);

    // The same row with its sampling changed: the carried shards belong to the old config and stay put.
    writeFileSync(
      join(process.env.ID3_EXPERIMENTS_DIR ?? '', 'carry.json'),
      JSON.stringify({ ...carry, overrides: { sample: { seed: 3 } } }),
    );
    const changed = planExperiment({ name: 'carry' });
    rmSync(runs, { recursive: true, force: true });
    expect(restoreExperimentProgress(changed, {}, published)).toEqual([]);
    expect(existsSync(shards('carry-ID3-s0'))).toBe(false);
  });

  it('clears a row once every run of it is recorded, and packs nothing more for it', () => {
    const plan = planExperiment({ name: 'carry' });
    const published = publishedFolderOf(plan) ?? '';
    write(join(shards('carry-ID3-s0'), 'identities-00000/identities/id000000.json'), 'x');
    write(join(shards('carry-no-guidance-s0'), 'identities-00000/identities/id000000.json'), 'y');
    expect(saveExperimentProgress(plan, published).packed.map((m) => m.row)).toEqual(['ID3', 'no-guidance']);
    const results = (seeds: number[]): string =>
      JSON.stringify({ format: 'id3-experiment-results/1', results: seeds.map((seed) => ({ row: 'ID3', seed })) });
    write(join(published, 'results.json'), results([0])); // one of its two seeds: still needed
    write(join(shards('carry-ID3-s0'), 'identities-00000/identities/id000001.json'), 'x');
    expect(saveExperimentProgress(plan, published)).toMatchObject({ cleared: [], packed: [{ row: 'ID3', files: 2 }] });
    write(join(published, 'results.json'), results([0, 1]));
    expect(saveExperimentProgress(plan, published)).toEqual({ packed: [], cleared: ['ID3'] });
    expect(readdirSync(join(published, 'progress'))).toEqual(['no-guidance']);
  });
});
