import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { Connection } from '@temporalio/client';
import { RUN_SEARCH_ATTRIBUTE, STAGE_SEARCH_ATTRIBUTE } from './contracts';
import { temporalCliPath } from './paths';

export interface DevServerOptions {
  /** Temporal CLI binary (default: the one setup installed, or TEMPORAL_CLI_PATH). */
  readonly binary?: string;
  /** SQLite file: workflow histories survive server restarts. */
  readonly dbFile: string;
  readonly ip?: string;
  readonly port: number;
  /** Web UI port; null runs headless. */
  readonly uiPort: number | null;
  /** Server log file; default: inherit nothing (ignored). */
  readonly logFile?: string;
  /** Start it in its own process group, to outlive this process (the `id3 server` case). */
  readonly detached?: boolean;
  /** How long finished workflows are kept (the dev server's default namespace keeps 24 h). */
  readonly retention?: string;
  readonly startupTimeoutMs?: number;
}

export interface RunningDevServer {
  readonly address: string;
  readonly uiUrl: string | undefined;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (for tests that run their own server). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when a Temporal frontend answers at `address`. */
export async function isServerHealthy(address: string, timeoutMs = 2000): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs });
    await connection.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

async function run(binary: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/**
 * Start `temporal server start-dev` bound to 127.0.0.1 with SQLite persistence, the Web UI and
 * the search attributes the workflows use, then wait until it answers and raise the namespace
 * retention. The real server — tests use this too.
 */
export async function startDevServer(o: DevServerOptions): Promise<RunningDevServer> {
  const binary = o.binary ?? temporalCliPath();
  if (!existsSync(binary)) {
    throw new Error(`Temporal CLI not found at ${binary}: run 'npm run setup' (or set TEMPORAL_CLI_PATH)`);
  }
  const ip = o.ip ?? '127.0.0.1';
  const address = `${ip}:${o.port}`;
  mkdirSync(dirname(o.dbFile), { recursive: true });
  const args = [
    'server',
    'start-dev',
    '--ip',
    ip,
    '--port',
    String(o.port),
    '--db-filename',
    o.dbFile,
    '--search-attribute',
    `${STAGE_SEARCH_ATTRIBUTE}=Keyword`,
    '--search-attribute',
    `${RUN_SEARCH_ATTRIBUTE}=Keyword`,
    '--log-level',
    'warn',
  ];
  if (o.uiPort === null) args.push('--headless');
  else args.push('--ui-port', String(o.uiPort));
  let stdio: ('ignore' | number)[] = ['ignore', 'ignore', 'ignore'];
  if (o.logFile) {
    mkdirSync(dirname(o.logFile), { recursive: true });
    const fd = openSync(o.logFile, 'a');
    stdio = ['ignore', fd, fd];
  }
  const child = spawn(binary, args, { stdio, detached: o.detached ?? false });
  if (o.detached) child.unref();
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));

  const deadline = Date.now() + (o.startupTimeoutMs ?? 60_000);
  while (!(await isServerHealthy(address, 1000))) {
    if (exited !== undefined)
      throw new Error(`temporal server exited with ${exited} before becoming healthy${o.logFile ? ` (see ${o.logFile})` : ''}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `temporal server at ${address} not healthy after ${o.startupTimeoutMs ?? 60_000} ms${o.logFile ? ` (see ${o.logFile})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const retention = await run(binary, [
    'operator',
    'namespace',
    'update',
    '--namespace',
    'default',
    '--retention',
    o.retention ?? '720h',
    '--address',
    address,
  ]);
  if (retention.code !== 0) throw new Error(`could not set namespace retention: ${retention.output.trim()}`);

  return {
    address,
    uiUrl: o.uiPort === null ? undefined : `http://${ip}:${o.uiPort}`,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const closed = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await closed;
      clearTimeout(timer);
    },
  };
}
