import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidInputError } from '@id3/core';

export interface VerificationPair {
  readonly a: string;
  readonly b: string;
  readonly same: boolean;
  /** Fold as defined by the benchmark (LFW: the 10 sets of 600 lines). */
  readonly fold: number;
  /** 1-based line in the pair list, for error messages. */
  readonly line: number;
}

export interface PairList {
  readonly pairs: readonly VerificationPair[];
  readonly folds: number;
  readonly source: string;
}

const lfwImage = (root: string, name: string, n: string): string => join(root, name, `${name}_${n.padStart(4, '0')}.jpg`);

/**
 * LFW View 2 `pairs.txt`: a header `folds perFold`, then per fold `perFold` same-person lines
 * `name i j` and `perFold` different-person lines `name1 i name2 j` (1-based image numbers).
 * Every malformed line and every missing image is reported with its line number.
 */
export function readLfwPairs(pairsPath: string, imagesRoot: string, o: { checkFiles?: boolean } = {}): PairList {
  const lines = readFileSync(pairsPath, 'utf8').split(/\r?\n/);
  const header = lines[0].trim().split(/\s+/).map(Number);
  if (header.length !== 2 || !header.every((v) => Number.isInteger(v) && v > 0)) {
    throw new InvalidInputError(`${pairsPath}:1: expected a header 'folds pairsPerClass', got '${lines[0]}'`, { file: pairsPath, line: 1 });
  }
  const [folds, perFold] = header;
  const pairs: VerificationPair[] = [];
  const problems: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const text = lines[i].trim();
    if (!text) continue;
    const f = text.split(/\s+/);
    const line = i + 1;
    const index = pairs.length;
    const fold = Math.floor(index / (2 * perFold));
    let pair: VerificationPair | undefined;
    if (f.length === 3 && /^\d+$/.test(f[1]) && /^\d+$/.test(f[2])) {
      pair = { a: lfwImage(imagesRoot, f[0], f[1]), b: lfwImage(imagesRoot, f[0], f[2]), same: true, fold, line };
    } else if (f.length === 4 && /^\d+$/.test(f[1]) && /^\d+$/.test(f[3])) {
      pair = { a: lfwImage(imagesRoot, f[0], f[1]), b: lfwImage(imagesRoot, f[2], f[3]), same: false, fold, line };
    } else {
      problems.push(`${pairsPath}:${line}: expected 'name i j' or 'name1 i name2 j', got '${text}'`);
      continue;
    }
    const expectSame = index % (2 * perFold) < perFold;
    if (pair.same !== expectSame)
      problems.push(`${pairsPath}:${line}: a ${pair.same ? 'same' : 'different'}-person line where the protocol expects the other kind`);
    if (o.checkFiles !== false) {
      for (const p of [pair.a, pair.b]) if (!existsSync(p)) problems.push(`${pairsPath}:${line}: image not found: ${p}`);
    }
    pairs.push(pair);
  }
  if (pairs.length !== folds * perFold * 2) problems.push(`${pairsPath}: ${pairs.length} pairs, header promises ${folds}×2×${perFold}`);
  if (problems.length) {
    throw new InvalidInputError(`${problems.length} problem(s) in the pair list:\n${problems.slice(0, 20).join('\n')}`, {
      file: pairsPath,
    });
  }
  return { pairs, folds, source: pairsPath };
}
