import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunStore, type StageManifest } from '@id3/core';
import { ID3_BIN } from '@id3/workflows';
import { waitFor } from './harness';

// `id3 stage prepare` SIGKILLed after a few of its chunks: the rerun redoes only the chunks that
// were not finished, and its outputs are byte for byte those of a run that was never killed.
jest.setTimeout(420_000);

const runsDir = mkdtempSync(join(tmpdir(), 'id3-prepare-resume-'));
const settings = ['prepare.source.identities=6', 'prepare.source.perIdentity=4', 'prepare.imagesPerShard=3', 'prepare.sizes=[112,32]'];
const args = (runName: string) => [
  'stage',
  'prepare',
  '--profile',
  'demo',
  '--run-name',
  runName,
  ...settings.flatMap((s) => ['--set', s]),
];

function runPrepare(runName: string): { done: Promise<number | null>; kill(): void } {
  const child = spawn(ID3_BIN, args(runName), { env: { ...process.env, ID3_RUNS_DIR: runsDir }, stdio: ['ignore', 'ignore', 'pipe'] });
  const tail: string[] = [];
  child.stderr.on('data', (d: Buffer) => tail.push(d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { done, kill: () => child.kill('SIGKILL') };
}

const manifestOf = (runName: string): StageManifest => new RunStore(join(runsDir, runName)).readManifest('prepare') as StageManifest;
/** index.json's rows without the source paths (the procedural set is rendered inside each run). */
const indexRows = (runName: string): unknown[] =>
  (JSON.parse(readFileSync(join(runsDir, runName, 'prepare', 'index.json'), 'utf8')) as { rows: { path: string }[] }).rows.map(
    ({ path, ...rest }) => ({ ...rest, file: path.split('/').slice(-2).join('/') }),
  );

describe('prepare killed mid-run', () => {
  it('resumes at the unfinished chunks and produces byte-identical outputs', async () => {
    expect(await runPrepare('straight').done).toBe(0);

    const killed = runPrepare('killed');
    const events = () => new RunStore(join(runsDir, 'killed')).readEvents();
    await waitFor('three finished chunks', () => events().filter((e) => e.event === 'shard-complete').length >= 3, 240_000);
    killed.kill();
    await killed.done;
    const finishedBeforeKill = new Set(
      events()
        .filter((e) => e.event === 'shard-complete')
        .map((e) => e.shard as string),
    );
    expect(manifestOf('killed')).toBeUndefined();

    expect(await runPrepare('killed').done).toBe(0);
    const after = events();
    // No chunk finished before the kill was started again; every chunk finished exactly once.
    for (const shard of finishedBeforeKill) expect(after.filter((e) => e.event === 'shard-start' && e.shard === shard)).toHaveLength(1);
    const completed = after.filter((e) => e.event === 'shard-complete').map((e) => e.shard as string);
    expect(completed).toHaveLength(8);
    expect(new Set(completed).size).toBe(8);

    const a = manifestOf('straight');
    const b = manifestOf('killed');
    for (const name of ['crops112', 'crops32', 'embeddings', 'attributes', 'attributesScaled', 'rejects']) {
      expect([name, b.outputs[name].sha256]).toEqual([name, a.outputs[name].sha256]);
    }
    expect(indexRows('killed')).toEqual(indexRows('straight'));
    expect(b.metrics.accepted).toBe(24);
  });
});
