import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidInputError, Rng, readTensorFile } from '@id3/core';

/**
 * A labelled face dataset in memory: aligned uint8 RGB crops [n, size, size, 3] (the ArcFace
 * template at the training resolution) and a class per row, 0 … classes − 1.
 */
export interface FaceDataset {
  readonly size: number;
  readonly crops: Uint8Array;
  readonly labels: Int32Array;
  readonly classes: number;
  /** The source identity of each class (folder name, record label), for reports. */
  readonly classNames: readonly string[];
}

/** Which identities and how many of their images a training set takes. */
export const identitySelectionSchema = z
  .object({
    /** Drop identities with fewer images than this. */
    minPerIdentity: z.number().int().min(1).default(2),
    /** Keep at most this many images per identity (the first, in source order). */
    perIdentity: z.number().int().positive().optional(),
    /** Keep at most this many identities (the first, in source order). */
    maxIdentities: z.number().int().min(2).optional(),
  })
  .strict();
export type IdentitySelection = z.output<typeof identitySelectionSchema>;

/**
 * Rows to keep and their new class numbers: identities in first-seen order, each with at least
 * `minPerIdentity` images, capped at `perIdentity` images and `maxIdentities` identities.
 */
export function selectIdentities(
  sourceLabels: readonly string[],
  o: IdentitySelection,
): { rows: number[]; labels: Int32Array; classNames: string[] } {
  const byIdentity = new Map<string, number[]>();
  sourceLabels.forEach((label, row) => {
    const list = byIdentity.get(label);
    if (list) list.push(row);
    else byIdentity.set(label, [row]);
  });
  const kept = [...byIdentity.entries()].filter(([, rows]) => rows.length >= o.minPerIdentity).slice(0, o.maxIdentities);
  const rows: number[] = [];
  const labels: number[] = [];
  kept.forEach(([, list], cls) => {
    for (const row of list.slice(0, o.perIdentity)) {
      rows.push(row);
      labels.push(cls);
    }
  });
  return { rows, labels: Int32Array.from(labels), classNames: kept.map(([name]) => name) };
}

/**
 * Hold out `perIdentity` images of each identity that has at least `perIdentity + 2` (so every
 * class keeps ≥ 2 to train on): a validation split of *training* identities, for monitoring only.
 */
export function splitValidation(labels: Int32Array, perIdentity: number, seed: number): { train: number[]; validation: number[] } {
  const byClass = new Map<number, number[]>();
  labels.forEach((c, row) => {
    const list = byClass.get(c);
    if (list) list.push(row);
    else byClass.set(c, [row]);
  });
  const rng = new Rng(seed).fork('validation-split');
  const validation: number[] = [];
  for (const rows of byClass.values()) {
    if (perIdentity === 0 || rows.length < perIdentity + 2) continue;
    validation.push(...rng.shuffle([...rows]).slice(0, perIdentity));
  }
  const held = new Set(validation);
  return {
    train: labels.reduce<number[]>((acc, _, row) => (held.has(row) ? acc : (acc.push(row), acc)), []),
    validation: validation.sort((a, b) => a - b),
  };
}

/** Keep `rows` of a crops array, in order. */
function pickRows(crops: Uint8Array, px: number, rows: readonly number[]): Uint8Array {
  const out = new Uint8Array(rows.length * px);
  rows.forEach((r, i) => out.set(crops.subarray(r * px, (r + 1) * px), i * px));
  return out;
}

/** A finished selection as a dataset, refusing one that cannot train a classifier. */
function toDataset(
  size: number,
  crops: Uint8Array,
  sourceLabels: readonly string[],
  selection: IdentitySelection,
  what: string,
): FaceDataset {
  const { rows, labels, classNames } = selectIdentities(sourceLabels, selection);
  if (classNames.length < 2) {
    throw new InvalidInputError(
      `${what}: ${classNames.length} identit${classNames.length === 1 ? 'y has' : 'ies have'} at least ${selection.minPerIdentity} images; a recognizer needs at least 2`,
      { field: 'fr-train.dataset' },
    );
  }
  const px = size * size * 3;
  return { size, crops: pickRows(crops, px, rows), labels, classes: classNames.length, classNames };
}

/**
 * The prepare stage's crops at one resolution and its index (each row's identity label, from a
 * `folders` source: one folder per person).
 */
export function datasetFromPrepared(cropsPath: string, indexPath: string, selection: IdentitySelection): FaceDataset {
  const { header, values } = readTensorFile(cropsPath);
  if (!(values instanceof Uint8Array) || header.shape.length !== 4 || header.shape[1] !== header.shape[2] || header.shape[3] !== 3) {
    throw new InvalidInputError(`${cropsPath}: expected uint8 crops [n, s, s, 3]`, { file: cropsPath });
  }
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { rows: { label?: number; path: string }[] };
  if (index.rows.length !== header.shape[0]) {
    throw new InvalidInputError(`${indexPath}: ${index.rows.length} rows but ${header.shape[0]} crops`, { file: indexPath });
  }
  const unlabelled = index.rows.findIndex((r) => r.label === undefined);
  if (unlabelled >= 0) {
    throw new InvalidInputError(
      `${indexPath}: row ${unlabelled} (${index.rows[unlabelled].path}) has no identity label — prepare the photos with source.kind 'folders' (one folder per person)`,
      { file: indexPath, field: 'fr-train.dataset' },
    );
  }
  const names = index.rows.map((r) => r.path.split('/').at(-2) ?? String(r.label));
  return toDataset(header.shape[1], values, names, selection, `prepared dataset ${indexPath}`);
}

/** Already-aligned crops with labels (tests, RecordIO readers, the sampler's tensor pack). */
export function datasetFromArrays(
  size: number,
  crops: Uint8Array,
  sourceLabels: readonly string[],
  selection: IdentitySelection,
  what: string,
): FaceDataset {
  if (crops.length !== sourceLabels.length * size * size * 3)
    throw new RangeError(`${what}: ${crops.length} bytes for ${sourceLabels.length} crops of ${size}×${size}`);
  return toDataset(size, crops, sourceLabels, selection, what);
}
