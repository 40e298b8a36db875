import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowFailedError } from '@temporalio/client';
import { describeProgress, formatTimeLeft, isInvalidInput } from '@id3/core';
import {
  TASK_QUEUE,
  runsToStart,
  stageWorkflowId,
  type ExperimentInput,
  type ExperimentResult,
  type PipelineInput,
  type PipelineResult,
  type ProgressView,
  type StageSummary,
} from './contracts';
import { BACKGROUND_STAGES_ENV, hasAutogroups } from './activities';
import { experimentResultsPaths, planExperiment, publishedFolderOf, rebuildExperimentReport } from './experiment';
import { saveExperimentProgress } from './experiment-progress';
import { DEFAULT_UI_PORT, ID3_BIN, runsDir, stateDir, temporalAddress, temporalNamespace } from './paths';
import { planRun } from './pipeline-config';
import { isServerHealthy, startDevServer } from './server';
import { stageCommandMain } from './stage-command';
import { backgroundStagesFromEnv, createId3Worker } from './worker';

const USAGE = `id3 — ID³ synthetic face-recognition data, end to end

Usage:
  id3 demo                         start what is not running, run the demo pipeline, print progress
  id3 run [options]                run the pipeline (or one stage) through Temporal
      --profile NAME               profile in profiles/ (default demo)
      --set SECTION.FIELD=VALUE    override a config value (repeatable; VALUE parsed as JSON if it can be)
      --stage NAME                 run only this stage (repeatable)
      --run-name NAME              run directory name (default: profile + config hash)
      --force                      re-run stages even if their outputs are current
      --no-wait                    start and print the Web UI link, do not follow
  id3 experiment NAME [options]    run experiments/NAME.json: every row × seed as its own pipeline run,
                                   results in <runs dir>/NAME/results.json + report.md as rows finish
      --max-parallel-rows N        rows at once (default 1), --force, --no-wait
      --max-parallel-shards N      shards of one stage queued at once (default 16); with rows side by side on few
                                   workers, the number of workers, so one row's shards do not queue ahead of
                                   every activity of the other row
      --seed S                     run only this seed of the file now (repeatable; other seeds' results are kept)
      --row NAME                   run only this row of the file now (repeatable; other rows' results are kept)
      --report-only                rebuild report.md from the recorded results and the hand-written reading.md
                                   (in the publish folder, else beside results.json); runs nothing, but fills in
                                   fields added since an entry was recorded from its run where that is here
      --save-progress              pack the runs' unfinished sampling shards into <publish>/progress/ (to commit;
                                   the next experiment start unpacks them, e.g. on a fresh checkout); runs nothing
  id3 stage NAME [options]         run one stage in this process, without Temporal
      --profile NAME | --config FILE, --set ..., --run-name NAME | --run-dir DIR, --force
      --plan-only                  only say whether it is current and which of its shards are left
      --shard ID                   run only this shard of a sharded stage (eval)
  id3 server [--foreground]        start the Temporal dev server (127.0.0.1:7233, Web UI :8233, SQLite in .id3/)
  id3 worker [--runs-dir DIR]      run a worker for the '${TASK_QUEUE}' task queue (foreground); workers on
                                   several machines share one runs directory (mounted anywhere)
  id3 status                       server, worker, recent runs and what each running one is doing now
  id3 stop                         stop the background server and worker started by id3

Environment: ID3_BACKEND=auto|tensorflow|webgpu|wasm|cpu, ID3_STATE_DIR, ID3_RUNS_DIR, ID3_EXTRA_STAGES, TEMPORAL_ADDRESS,
TEMPORAL_CLI_PATH, ID3_CACHE_DIR (eval's embedding and crop cache; a worker's stages default to .id3/cache/eval),
ID3_BACKGROUND_STAGES (read by id3 worker: comma-separated stages that take only the CPU others leave, e.g. sample),
ID3_MAX_CONCURRENT_STAGES (stage processes per worker, default 1),
ID3_CHECKPOINT_MINUTES (fr-train's timed checkpoints, default 5, 0 = off).`;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** A mistake on the command line: said in one line (no stack trace), exit code 2 like an unknown command. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function parseSet(values: string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of values ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set ${item}: expected SECTION.FIELD=VALUE`);
    const path = item.slice(0, eq).split('.');
    const raw = item.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      /* a plain string */
    }
    let node = out;
    path.slice(0, -1).forEach((key) => (node = (node[key] ??= {}) as Record<string, unknown>));
    node[path[path.length - 1]] = value;
  }
  return out;
}

const pidFile = (name: string): string => join(stateDir(), `${name}.pid`);

function alivePid(name: string): number | undefined {
  const file = pidFile(name);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

function uiPort(): number {
  return Number(process.env.ID3_UI_PORT ?? DEFAULT_UI_PORT);
}

function uiLink(workflowId?: string): string {
  const [host] = temporalAddress().split(':');
  const base = `http://${host}:${uiPort()}/namespaces/${temporalNamespace()}/workflows`;
  return workflowId ? `${base}/${encodeURIComponent(workflowId)}` : base;
}

async function ensureServer(foreground = false): Promise<void> {
  const address = temporalAddress();
  if (await isServerHealthy(address)) {
    log(`Temporal server already running at ${address} (Web UI ${uiLink()})`);
    return;
  }
  const [ip, port] = address.split(':');
  const dir = stateDir();
  const server = await startDevServer({
    ip,
    port: Number(port),
    uiPort: uiPort(),
    dbFile: join(dir, 'temporal.db'),
    logFile: join(dir, 'temporal.log'),
    detached: !foreground,
  });
  if (server.process.pid) writeFileSync(pidFile('server'), String(server.process.pid));
  log(
    `Temporal server started at ${address} — Web UI ${server.uiUrl} (SQLite ${join(dir, 'temporal.db')}, log ${join(dir, 'temporal.log')})`,
  );
  if (foreground) {
    await new Promise<void>((r) => server.process.once('exit', () => r()));
  }
}

/**
 * Whether a live worker polls the task queue. The server lists pollers for minutes after they
 * stop; a poller's identity is `pid@host` (the SDK default), so one on this host whose process is
 * gone does not count (a worker killed a moment ago would otherwise leave a run with none).
 */
async function hasPollers(client: Client): Promise<boolean> {
  const res = await client.workflowService.describeTaskQueue({
    namespace: temporalNamespace(),
    taskQueue: { name: TASK_QUEUE },
    taskQueueType: 1, // TASK_QUEUE_TYPE_WORKFLOW
  });
  return (res.pollers ?? []).some((p) => {
    const m = /^(\d+)@(.+)$/.exec(p.identity ?? '');
    if (!m || m[2] !== hostname()) return true; // another host: trust the server
    try {
      process.kill(Number(m[1]), 0);
      return true;
    } catch {
      return false;
    }
  });
}

async function ensureWorker(client: Client): Promise<void> {
  if (alivePid('worker')) return;
  // A bad name would only stop the background worker, its error in worker.log, while the run waits.
  backgroundStagesFromEnv();
  if (await hasPollers(client)) {
    log('A worker is already polling the id3 task queue.');
    return;
  }
  const logFile = join(stateDir(), 'worker.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(ID3_BIN, ['worker'], { stdio: ['ignore', fd, fd], detached: true, env: process.env });
  child.unref();
  if (child.pid) writeFileSync(pidFile('worker'), String(child.pid));
  log(`Worker started in the background (pid ${child.pid}, log ${logFile}).`);
}

async function connectClient(): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: temporalAddress() });
  return { client: new Client({ connection, namespace: temporalNamespace() }), connection };
}

async function queryProgress(client: Client, workflowId: string): Promise<ProgressView | undefined> {
  try {
    return await client.workflow.getHandle(workflowId).query<ProgressView>('progress');
  } catch {
    return undefined;
  }
}

/** Follow a workflow: print its progress (pipeline stage + the stage's own detail) until it ends. */
async function follow<T>(client: Client, workflowId: string, isPipeline: boolean): Promise<T> {
  const handle = client.workflow.getHandle(workflowId);
  let lastLine = '';
  let done = false;
  const printer = (async () => {
    while (!done) {
      const top = await queryProgress(client, workflowId);
      const detail = isPipeline && top?.stage ? await queryProgress(client, stageWorkflowId(workflowId, top.stage)) : top;
      const view = detail ?? top;
      if (view) {
        const line = describeProgress({
          stage: view.stage ?? 'pipeline',
          phase: view.phase,
          step: view.step,
          total: view.total,
          metrics: view.metrics,
          message: view.message,
        });
        if (line !== lastLine) log(line);
        lastLine = line;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  try {
    return (await handle.result()) as T;
  } finally {
    done = true;
    await printer;
  }
}

function printSummaries(stages: readonly StageSummary[]): void {
  for (const s of stages) {
    const metrics = Object.entries(s.metrics)
      .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(5)}`)
      .join(' ');
    log(`  ${s.stage}: ${s.skipped ? 'skipped (outputs current)' : `done in ${(s.durationMs / 1000).toFixed(1)} s`} — ${metrics}`);
    log(`    manifest ${s.manifestPath}`);
  }
}

async function runCommand(values: Record<string, unknown>): Promise<number> {
  const input: PipelineInput = {
    profile: (values.profile as string | undefined) ?? 'demo',
    overrides: parseSet(values.set as string[] | undefined),
    runName: values['run-name'] as string | undefined,
    stages: values.stage as string[] | undefined,
    force: Boolean(values.force),
  };
  // Validate here first: a bad config fails in a second, naming the field, before anything starts.
  const plan = planRun(input);
  await ensureServer();
  const { client, connection } = await connectClient();
  try {
    await ensureWorker(client);
    const single = input.stages?.length === 1 ? input.stages[0] : undefined;
    const workflowId = single ? `id3-${plan.runName}--${single}` : `id3-${plan.runName}`;
    try {
      if (single)
        await client.workflow.start('stage', {
          taskQueue: TASK_QUEUE,
          workflowId,
          args: [{ ...input, stage: single }],
          staticSummary: `${single} (run ${plan.runName})`,
        });
      else
        await client.workflow.start('pipeline', {
          taskQueue: TASK_QUEUE,
          workflowId,
          args: [input],
          staticSummary: `pipeline: ${plan.stages.join(' → ')} (run ${plan.runName})`,
        });
      log(`Started workflow ${workflowId} (run directory ${plan.runDir})`);
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      log(`Workflow ${workflowId} is already running for this config: following it.`);
    }
    log(`Web UI: ${uiLink(workflowId)}`);
    if (values['no-wait']) return 0;
    return await exitCodeOf(workflowId, async () => {
      if (single) {
        const summary = await follow<StageSummary>(client, workflowId, false);
        log(`Stage finished (run ${plan.runName}):`);
        printSummaries([summary]);
      } else {
        const result = await follow<PipelineResult>(client, workflowId, true);
        log(`Pipeline finished: run ${result.runName} in ${result.runDir}`);
        printSummaries(result.stages);
      }
      log(`Web UI: ${uiLink(workflowId)}`);
    });
  } finally {
    await connection.close();
  }
}

/** Follow a workflow to its end: 0, or 1 with the failure and the Web UI link when it failed. */
async function exitCodeOf(workflowId: string, followIt: () => Promise<void>): Promise<number> {
  try {
    await followIt();
    return 0;
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    log(`Workflow ${workflowId} failed: ${err.cause?.message ?? err.message}`);
    log(`Web UI: ${uiLink(workflowId)}`);
    return 1;
  }
}

async function experimentCommand(positionals: string[], values: Record<string, unknown>): Promise<number> {
  const name = positionals[1];
  if (!name) throw new UsageError('id3 experiment NAME: which experiment (a file in experiments/)?');
  if (values['report-only']) {
    for (const report of rebuildExperimentReport(name)) log(`rebuilt ${report}`);
    return 0;
  }
  if (values['save-progress']) {
    const plan = planExperiment({ name });
    const published = publishedFolderOf(plan);
    if (!published) throw new UsageError(`experiment '${name}': no 'publish' folder in its file, so nowhere to carry unfinished work`);
    const { packed, cleared } = saveExperimentProgress(plan, published);
    for (const row of cleared) log(`cleared ${join(published, 'progress', row)}: every run of row '${row}' is recorded`);
    for (const p of packed) log(`packed ${p.run} ${p.stage} shard ${p.shard} (${p.items} finished item(s)${p.done ? ', shard done' : ''})`);
    log(
      `${packed.length} shard(s) packed into ${join(published, 'progress')}${packed.length ? ': commit it to carry them' : ' (nothing grew)'}`,
    );
    return 0;
  }
  const parallel = values['max-parallel-rows'] === undefined ? undefined : Number(values['max-parallel-rows']);
  if (parallel !== undefined && !(Number.isInteger(parallel) && parallel >= 1))
    throw new UsageError('--max-parallel-rows: a positive integer');
  const shardsAtOnce = values['max-parallel-shards'] === undefined ? undefined : Number(values['max-parallel-shards']);
  if (shardsAtOnce !== undefined && !(Number.isInteger(shardsAtOnce) && shardsAtOnce >= 1))
    throw new UsageError('--max-parallel-shards: a positive integer');
  const seeds = (values.seed as string[] | undefined)?.map(Number);
  if (seeds?.some((x) => !Number.isInteger(x) || x < 0)) throw new UsageError('--seed: a non-negative integer');
  const rows = values.row as string[] | undefined;
  const input: ExperimentInput = {
    name,
    ...(seeds ? { seeds } : {}),
    ...(rows ? { rows } : {}),
    ...(parallel ? { maxParallelRows: parallel } : {}),
    ...(shardsAtOnce ? { timing: { maxParallelShards: shardsAtOnce } } : {}),
    ...(values.force ? { force: true } : {}),
  };
  // Validate every row here first: a bad row fails in seconds, naming the file and field.
  const plan = planExperiment(input);
  for (const p of plan.pending) log(`pending (not run): ${p.row}: ${p.why}`);
  const runs = runsToStart(plan, input);
  if (plan.adopted?.length) log(`adopted (recorded in the results, run directories not here, not rerun): ${plan.adopted.join(', ')}`);
  await ensureServer();
  const { client, connection } = await connectClient();
  const workflowId = `id3-experiment-${name}`;
  const paths = experimentResultsPaths(name);
  try {
    await ensureWorker(client);
    try {
      await client.workflow.start('experiment', {
        taskQueue: TASK_QUEUE,
        workflowId,
        args: [input],
        staticSummary: `experiment ${name}: ${runs.length} run(s)`,
      });
      log(
        `Started workflow ${workflowId}: ${runs.length} run(s) (${[...new Set(runs.map((r) => r.row))].join(', ')} × seeds ${[...new Set(runs.map((r) => r.seed))].join(', ')})`,
      );
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      // The running execution keeps the rows and seeds it was started with.
      if (seeds || rows)
        throw new UsageError(
          `experiment workflow ${workflowId} is already running (with the rows and seeds it was started with): --row/--seed need a new execution; wait for it or cancel it in the Web UI (${uiLink(workflowId)})`,
        );
      log(`Workflow ${workflowId} is already running: following it.`);
    }
    log(`Results (written as rows finish): ${paths.results} and ${paths.report}`);
    log(`Web UI: ${uiLink(workflowId)}`);
    if (values['no-wait']) return 0;
    return await exitCodeOf(workflowId, async () => {
      const result = await follow<ExperimentResult>(client, workflowId, false);
      log(`Experiment ${result.name} finished: ${result.runs.length} run(s) in ${runsDir()}`);
      if (existsSync(paths.report)) process.stdout.write(readFileSync(paths.report, 'utf8'));
    });
  } finally {
    await connection.close();
  }
}

async function stageCommand(positionals: string[], values: Record<string, unknown>): Promise<number> {
  const stage = positionals[1];
  if (!stage) throw new UsageError('id3 stage NAME: which stage?');
  let configPath = values.config as string | undefined;
  let runDir = values['run-dir'] as string | undefined;
  if (!configPath) {
    const plan = planRun({
      profile: (values.profile as string | undefined) ?? 'demo',
      overrides: parseSet(values.set as string[] | undefined),
      runName: values['run-name'] as string | undefined,
      stages: [stage],
    });
    configPath = plan.configPath;
    runDir ??= plan.runDir;
  }
  if (!runDir) throw new UsageError('id3 stage: --config needs --run-dir');
  return stageCommandMain({
    stage,
    configPath: resolve(configPath),
    runDir: resolve(runDir),
    force: Boolean(values.force),
    jsonProgress: Boolean(values['json-progress']),
    exitWithParent: Boolean(values['exit-with-parent']),
    mode: values['plan-only'] ? { kind: 'plan' } : values.shard ? { kind: 'shard', shard: values.shard as string } : { kind: 'run' },
  });
}

async function workerCommand(): Promise<number> {
  const { worker, backgroundStages, close } = await createId3Worker({ address: temporalAddress(), namespace: temporalNamespace() });
  log(`id3 worker polling task queue '${TASK_QUEUE}' at ${temporalAddress()}`);
  if (backgroundStages.length)
    log(
      `${BACKGROUND_STAGES_ENV}: ${backgroundStages.join(', ')} at nice 19${hasAutogroups() ? ', each in an autogroup lowered to 19' : ' (no autogroups on this kernel: nice only)'}`,
    );
  await worker.run(); // returns after SIGINT/SIGTERM (the SDK installs those handlers)
  await close();
  return 0;
}

/** "; whole stage: about 40 min left" for a sharded stage that has timed its shards, else "". */
export function stageTimeLeft(view: Pick<ProgressView, 'finishesAt'>, nowMs: number): string {
  if (!view.finishesAt) return '';
  const seconds = (Date.parse(view.finishesAt) - nowMs) / 1000;
  return seconds > 0 ? `; whole stage: ${formatTimeLeft(seconds)}` : `; whole stage: was expected by ${view.finishesAt}`;
}

async function statusCommand(): Promise<number> {
  const healthy = await isServerHealthy(temporalAddress());
  log(`server: ${healthy ? `running at ${temporalAddress()} — Web UI ${uiLink()}` : 'not running (id3 server)'}`);
  if (!healthy) return 0;
  const { client, connection } = await connectClient();
  try {
    const polling = await hasPollers(client);
    log(`worker: ${polling ? 'polling' : 'none (id3 worker)'}${alivePid('worker') ? ` (background pid ${alivePid('worker')})` : ''}`);
    let count = 0;
    for await (const wf of client.workflow.list({
      query: `WorkflowType = 'pipeline' OR WorkflowType = 'stage' OR WorkflowType = 'experiment'`,
    })) {
      log(`  ${wf.status.name.padEnd(10)} ${wf.type.padEnd(9)} ${wf.workflowId}  ${wf.startTime.toISOString()}`);
      // What a running one is doing now (a query needs a worker to answer it).
      const view = polling && wf.status.name === 'RUNNING' ? await queryProgress(client, wf.workflowId) : undefined;
      if (view) log(`             ${describeProgress({ ...view, stage: view.stage ?? wf.type })}${stageTimeLeft(view, Date.now())}`);
      if (++count >= 15) break;
    }
  } finally {
    await connection.close();
  }
  return 0;
}

function stopCommand(): number {
  for (const name of ['worker', 'server']) {
    const pid = alivePid(name);
    if (pid) {
      process.kill(-pid, 'SIGTERM'); // the process group: the detached process and its children (a background stage has its own group and ends with the worker's shutdown)
      log(`stopped ${name} (pid ${pid})`);
    }
    rmSync(pidFile(name), { force: true });
  }
  return 0;
}

const parseCommandLineUnchecked = (argv: string[]) =>
  parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      profile: { type: 'string' },
      set: { type: 'string', multiple: true },
      stage: { type: 'string', multiple: true },
      'run-name': { type: 'string' },
      'run-dir': { type: 'string' },
      config: { type: 'string' },
      force: { type: 'boolean' },
      'no-wait': { type: 'boolean' },
      foreground: { type: 'boolean' },
      'json-progress': { type: 'boolean' },
      'exit-with-parent': { type: 'boolean' },
      'plan-only': { type: 'boolean' },
      shard: { type: 'string' },
      'runs-dir': { type: 'string' },
      'max-parallel-rows': { type: 'string' },
      'max-parallel-shards': { type: 'string' },
      seed: { type: 'string', multiple: true },
      row: { type: 'string', multiple: true },
      'report-only': { type: 'boolean' },
      'save-progress': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });

/** parseArgs with its complaints (unknown option, missing value) turned into usage errors. */
function parseCommandLine(argv: string[]): ReturnType<typeof parseCommandLineUnchecked> {
  try {
    return parseCommandLineUnchecked(argv);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) throw new UsageError((err as Error).message);
    throw err;
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  mkdirSync(stateDir(), { recursive: true });
  // Where run directories live (stage processes spawned from here inherit it).
  if (values['runs-dir']) process.env.ID3_RUNS_DIR = resolve(values['runs-dir']);
  const command = positionals[0];
  // Help never starts anything (`id3 run --help` used to start the demo run).
  if (values.help) {
    log(USAGE);
    return 0;
  }
  switch (command) {
    case 'demo':
      return runCommand({ ...values, profile: 'demo' });
    case 'run':
      return runCommand(values);
    case 'experiment':
      return experimentCommand(positionals, values);
    case 'stage':
      return stageCommand(positionals, values);
    case 'server':
      await ensureServer(Boolean(values.foreground));
      return 0;
    case 'worker':
      return workerCommand();
    case 'status':
      return statusCommand();
    case 'stop':
      return stopCommand();
    default:
      log(USAGE);
      return command === undefined ? 0 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (err instanceof UsageError) {
        log(`id3: ${err.message} (id3 --help for usage)`);
        process.exit(2);
      }
      log(isInvalidInput(err) ? `id3: invalid input: ${(err as Error).message}` : `id3: ${(err as Error).stack ?? String(err)}`);
      process.exit(isInvalidInput(err) ? 65 : 1);
    },
  );
}
