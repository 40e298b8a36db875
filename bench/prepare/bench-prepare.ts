/**
 * prepare's throughput on real photos, as shards taken by 1 and by 2 `id3 worker` processes
 * under a real Temporal dev server, against the same images prepared by one `id3 stage prepare`
 * process without Temporal (the reference, measured in the same run). Each configuration runs in
 * its own run directory from scratch.
 *
 *   npm run bench:prepare -- [--images 240] [--per-shard 40] [--source data:utkface/images]
 *
 * Writes bench/results/prepare.json and prints a Markdown table for BENCHMARKS.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { ID3_BIN, TASK_QUEUE, freePort, startDevServer, type StageSummary } from '@id3/workflows';

const ROOT = resolve(__dirname, '../..');

interface Row {
  readonly setup: string;
  readonly workers: number;
  readonly seconds: number;
  readonly images: number;
  readonly imagesPerSecond: number;
  readonly accepted: number;
  readonly shards: number;
}

function waitExit(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      images: { type: 'string', default: '240' },
      'per-shard': { type: 'string', default: '40' },
      source: { type: 'string', default: 'data:utkface/images' },
    },
  });
  const images = Number(values.images);
  const perShard = Number(values['per-shard']);
  const dir = mkdtempSync(join(tmpdir(), 'id3-bench-prepare-'));
  const runsDir = join(dir, 'runs');
  const overrides = { prepare: { source: { kind: 'utkface', path: values.source }, limit: images, imagesPerShard: perShard } };
  const settings = [
    `prepare.source={"kind":"utkface","path":"${values.source}"}`,
    `prepare.limit=${images}`,
    `prepare.imagesPerShard=${perShard}`,
  ];
  const env = { ...process.env, ID3_RUNS_DIR: runsDir };
  const rows: Row[] = [];

  // Reference: one process, no Temporal, shards one after another.
  let t = performance.now();
  const single = spawn(
    ID3_BIN,
    ['stage', 'prepare', '--profile', 'real', '--run-name', 'in-process', ...settings.flatMap((s) => ['--set', s])],
    {
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  if ((await waitExit(single)) !== 0) throw new Error('in-process prepare failed');
  const inProcess = (performance.now() - t) / 1000;

  const server = await startDevServer({
    port: await freePort(),
    uiPort: null,
    dbFile: join(dir, 'temporal.db'),
    logFile: join(dir, 'temporal.log'),
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  try {
    for (const workers of [1, 2]) {
      const procs = Array.from({ length: workers }, () =>
        spawn(ID3_BIN, ['worker'], { env: { ...env, TEMPORAL_ADDRESS: server.address }, stdio: ['ignore', 'ignore', 'ignore'] }),
      );
      t = performance.now();
      const summary = (await client.workflow.execute('stage', {
        taskQueue: TASK_QUEUE,
        workflowId: `bench-prepare-${workers}-${Date.now()}`,
        args: [{ stage: 'prepare', profile: 'real', runName: `workers-${workers}`, overrides }],
      })) as StageSummary;
      const seconds = (performance.now() - t) / 1000;
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map(waitExit));
      const m = summary.metrics;
      rows.push({
        setup: `Temporal, ${workers} worker(s)`,
        workers,
        seconds,
        images: m.images,
        imagesPerSecond: m.images / seconds,
        accepted: m.accepted,
        shards: m.shards,
      });
    }
  } finally {
    await connection.close();
    await server.stop();
  }
  rows.unshift({
    setup: 'one process, no Temporal (reference)',
    workers: 1,
    seconds: inProcess,
    images,
    imagesPerSecond: images / inProcess,
    accepted: NaN,
    shards: Math.ceil(images / perShard),
  });

  const out = { date: new Date().toISOString(), cores: cpus().length, images, perShard, source: values.source, rows };
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'prepare.json'), `${JSON.stringify(out, null, 2)}\n`);
  const ref = rows[0].imagesPerSecond;
  console.log(`| setup | shards | wall time | images/s | × one process |`);
  console.log(`|---|---|---|---|---|`);
  for (const r of rows)
    console.log(
      `| ${r.setup} | ${r.shards} | ${r.seconds.toFixed(1)} s | ${r.imagesPerSecond.toFixed(2)} | ${(r.imagesPerSecond / ref).toFixed(2)} |`,
    );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
