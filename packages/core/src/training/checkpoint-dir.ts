import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../run-store';

/** What every checkpoint's state.json records; a trainer adds its own fields. */
export interface CheckpointStateBase {
  /** The trainer's checkpoint format; others' checkpoints are skipped. */
  readonly format: string;
  readonly step: number;
  /** Hash of everything that must match for a resume to be exact (configs, data). */
  readonly key: string;
}

export interface CheckpointEntry {
  readonly name: string;
  readonly step: number;
}

/** Written last, so a checkpoint directory with it is complete. */
export const CHECKPOINT_STATE_FILE = 'state.json';

/** A checkpoint directory's name: zero-padded so they sort by step. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(9, '0')}`;
}

/** Complete checkpoint directories under root, oldest first. */
export function listCheckpoints(root: string): CheckpointEntry[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((n) => /^step-\d{9}$/.test(n) && existsSync(join(root, n, CHECKPOINT_STATE_FILE)))
    .map((name) => ({ name, step: Number(name.slice(5)) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Write checkpoint `state.step` under root atomically: `writeFiles` fills a temp directory, the
 * state JSON goes in last, then one rename makes it visible. Afterwards only the newest `keep`
 * checkpoints remain. Returns the checkpoint's path.
 */
export async function writeCheckpoint(
  root: string,
  state: CheckpointStateBase,
  o: { readonly keep: number; readonly writeFiles: (dir: string) => void | Promise<void> },
): Promise<string> {
  mkdirSync(root, { recursive: true });
  const name = checkpointName(state.step);
  const final = join(root, name);
  const tmp = join(root, `.tmp-${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  await o.writeFiles(tmp);
  writeJsonAtomic(join(tmp, CHECKPOINT_STATE_FILE), state);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  pruneCheckpoints(root, o.keep);
  return final;
}

/** Delete all but the newest `keep` checkpoints. */
export function pruneCheckpoints(root: string, keep: number): void {
  for (const old of listCheckpoints(root).slice(0, -keep)) rmSync(join(root, old.name), { recursive: true, force: true });
}

/** Rename root to `<root>.stale-<time>` (kept for a human, out of the new run's way). */
export function moveCheckpointsAside(root: string, now: Date = new Date()): string {
  const aside = `${root}.stale-${now.toISOString().replace(/[:.]/g, '-')}`;
  renameSync(root, aside);
  return aside;
}

export type ResumeOutcome = { readonly step: number; readonly path: string } | { readonly ignored: string } | undefined;

/**
 * Resume from the newest usable checkpoint under root: unreadable ones and other formats are
 * skipped; the first of this format whose key differs (config or data changed) moves the whole
 * directory aside and the run starts fresh ({ ignored }), so old checkpoints are never resumed
 * nor pruned over the new run's. On a match, `load` restores the trainer from the directory.
 */
export function resumeCheckpoint<S extends CheckpointStateBase>(
  root: string,
  want: { readonly format: string; readonly key: string },
  load: (dir: string, state: S) => void,
): ResumeOutcome {
  const list = listCheckpoints(root);
  for (let i = list.length - 1; i >= 0; i--) {
    const path = join(root, list[i].name);
    let state: S;
    try {
      state = JSON.parse(readFileSync(join(path, CHECKPOINT_STATE_FILE), 'utf8')) as S;
    } catch {
      continue;
    }
    if (state.format !== want.format) continue;
    if (state.key !== want.key) {
      const aside = moveCheckpointsAside(root);
      return { ignored: `${path} was written for another config or dataset; moved the old checkpoints to ${aside}` };
    }
    load(path, state);
    return { step: state.step, path };
  }
  return undefined;
}
