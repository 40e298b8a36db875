import { resolve } from 'node:path';

/** The repository root (this file is workflows/src/paths.ts). */
export const REPO_ROOT = resolve(__dirname, '../..');

/** Where id3 keeps its Temporal database, logs, installed CLI and run directories. */
export function stateDir(): string {
  return resolve(process.env.ID3_STATE_DIR ?? resolve(REPO_ROOT, '.id3'));
}

export function runsDir(): string {
  return resolve(process.env.ID3_RUNS_DIR ?? resolve(stateDir(), 'runs'));
}

/** The Temporal CLI binary: TEMPORAL_CLI_PATH, else the one `scripts/setup.sh` installed. */
export function temporalCliPath(): string {
  return process.env.TEMPORAL_CLI_PATH ?? resolve(stateDir(), 'bin', 'temporal');
}

/** The id3 CLI launcher (bin/id3) that activities spawn for each stage. */
export const ID3_BIN = resolve(REPO_ROOT, 'bin', 'id3');

export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';
export const DEFAULT_UI_PORT = 8233;

export function temporalAddress(): string {
  return process.env.TEMPORAL_ADDRESS ?? DEFAULT_TEMPORAL_ADDRESS;
}

export function temporalNamespace(): string {
  return process.env.TEMPORAL_NAMESPACE ?? 'default';
}
