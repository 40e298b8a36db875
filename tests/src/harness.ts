import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { ID3_BIN, createId3Worker, freePort, startDevServer, type RunningDevServer } from '@id3/workflows';

/** A real Temporal dev server (the installed CLI, SQLite file) on free loopback ports. */
export interface Harness {
  readonly server: RunningDevServer;
  readonly client: Client;
  readonly connection: Connection;
  readonly dir: string;
  readonly runsDir: string;
  /** Eval's embedding and crop cache for every stage process of this harness (ID3_CACHE_DIR). */
  readonly cacheDir: string;
  readonly workflowBundle: WorkflowBundleWithSourceMap;
  /** The Web UI's base URL (`http://127.0.0.1:<port>`), when started with `{ ui: true }`. */
  readonly uiUrl: string | undefined;
  /** SIGKILL the server (no clean shutdown), then start it again on the same port and SQLite file. */
  killAndRestartServer(downMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Also serve the Web UI, on a free port (default: headless). */
  readonly ui?: boolean;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'id3-it-'));
  const runsDir = join(dir, 'runs');
  // Stage processes (spawned by activities) inherit these: run directories and eval's caches go
  // to the temp dir, never into the machine's .id3 (a test must not read another run's cache).
  process.env.ID3_RUNS_DIR = runsDir;
  const cacheDir = join(dir, 'cache');
  process.env.ID3_CACHE_DIR = cacheDir;
  const uiPort = options.ui ? await freePort() : null;
  const serverOptions = { port: await freePort(), uiPort, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'temporal.log') };
  let server = await startDevServer(serverOptions);
  const uiUrl = server.uiUrl;
  if (uiUrl) {
    // The UI server comes up alongside the frontend; don't hand out its URL before it answers.
    await waitFor(
      `the Web UI at ${uiUrl}`,
      () =>
        fetch(uiUrl).then(
          (r) => r.ok,
          () => false,
        ),
      30_000,
    ).catch(async (err: unknown) => {
      await server.stop();
      throw err;
    });
  }
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: 'default' });
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: resolve(__dirname, '../../workflows/src/workflows.ts'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error: console.error, log() {} } as never,
  });
  return {
    get server() {
      return server;
    },
    client,
    connection,
    dir,
    runsDir,
    cacheDir,
    workflowBundle,
    uiUrl,
    async killAndRestartServer(downMs = 2000) {
      const exited = new Promise<void>((r) => server.process.once('exit', () => r()));
      server.process.kill('SIGKILL');
      await exited;
      await sleep(downMs);
      server = await startDevServer(serverOptions);
    },
    async close() {
      await connection.close();
      await server.stop();
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll until `check` returns a value (not undefined/false), or fail after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

/**
 * An `id3 worker` process on the harness's server and runs folder (as a user starts one on
 * another machine); its stdout and stderr go to `logs`.
 */
export function spawnWorker(h: Harness, logs: string[]): ChildProcess {
  const child = spawn(ID3_BIN, ['worker', '--runs-dir', h.runsDir], {
    env: { ...process.env, TEMPORAL_ADDRESS: h.server.address, ID3_RUNS_DIR: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
  return child;
}

/** Worker identity as the activities record it in events.jsonl. */
export const workerIdentity = (w: ChildProcess): string => `${w.pid}@${hostname()}`;

/**
 * SIGKILL a worker together with the stage processes it spawned, as when its machine dies (a
 * stage process whose worker alone dies finishes its current synchronous step before it notices).
 */
export async function killProcessTree(child: ChildProcess): Promise<void> {
  const descendants = (pid: number): number[] => {
    const out = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.trim();
    const kids = out ? out.split('\n').map(Number) : [];
    return kids.flatMap((k) => [k, ...descendants(k)]);
  };
  if (child.pid !== undefined) {
    for (const pid of descendants(child.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await killProcess(child);
}

/** SIGKILL a process and wait until it is gone. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await exited;
}

/**
 * A worker inside the test process on the harness's server (progress signalled every 500 ms
 * unless `activityDeps` says otherwise); returns its stop function.
 */
export async function startInProcessWorker(
  h: Harness,
  activityDeps: Parameters<typeof createId3Worker>[0]['activityDeps'] = { progressSignalEveryMs: 500 },
): Promise<() => Promise<void>> {
  const { worker, close } = await createId3Worker({ address: h.server.address, workflowBundle: h.workflowBundle, activityDeps });
  const running = worker.run();
  return async () => {
    worker.shutdown();
    await running;
    await close();
  };
}
