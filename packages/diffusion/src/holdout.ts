import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidInputError, Rng } from '@id3/core';

/**
 * What a held-out row stands for: another photo ('image', of a person who may be in training too)
 * or a person never trained on ('person': whole identities are held out, which is what the
 * generator meets when it is asked for new people).
 */
export const holdoutBySchema = z.enum(['image', 'person']).default('image');
export type HoldoutBy = z.output<typeof holdoutBySchema>;

/**
 * The prepared rows train-diffusion keeps out of training (its previews and evaluation use
 * them), sorted. By image: a seeded shuffle of 0..n−1, the first `holdout`. By person (`labels`
 * given): the people in a seeded order, taken whole until at least `holdout` rows are out. Anything
 * fitted on "training data" (the identity space) excludes exactly these.
 */
export function heldOutRows(n: number, seed: number, holdout: number, labels?: ArrayLike<number>): number[] {
  const rng = new Rng(seed);
  if (!labels) {
    const order = rng.fork('holdout').shuffle(Array.from({ length: n }, (_, i) => i));
    return order.slice(0, holdout).sort((a, b) => a - b);
  }
  if (labels.length !== n) throw new Error(`heldOutRows: ${labels.length} labels for ${n} rows`);
  const rowsOf = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const rows = rowsOf.get(labels[i]);
    if (rows) rows.push(i);
    else rowsOf.set(labels[i], [i]);
  }
  const people = rng.fork('holdout-person').shuffle([...rowsOf.keys()].sort((a, b) => a - b));
  const held: number[] = [];
  for (const person of people) {
    if (held.length >= holdout) break;
    held.push(...(rowsOf.get(person) ?? []));
  }
  return held.sort((a, b) => a - b);
}

/** The identity label of every prepared row (prepare's index.json), for holding out whole people. */
export function readPreparedLabels(indexPath: string, n: number, field: string): number[] {
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { rows?: { label?: number; path?: string }[] };
  const rows = index.rows ?? [];
  if (rows.length !== n) throw new InvalidInputError(`${indexPath}: ${rows.length} rows but ${n} crops`, { file: indexPath });
  return rows.map((r, i) => {
    if (typeof r.label !== 'number')
      throw new InvalidInputError(
        `${indexPath}: row ${i} (${r.path ?? '?'}) has no identity label, so field '${field}': 'person' cannot hold out whole people — prepare with source.kind 'folders' (one folder per person) or hold out by 'image'`,
        { file: indexPath, field },
      );
    return r.label;
  });
}
