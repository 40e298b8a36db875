import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidInputError } from '@id3/core';
import type { PairList, VerificationPair } from './lfw';

/** A CFP pair list file (`index path` per line, 1-based index) → index → absolute path. */
function readIndexList(path: string, protocolDir: string): Map<number, string> {
  const out = new Map<number, string>();
  readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const text = raw.trim();
      if (!text) return;
      const m = /^(\d+)\s+(\S+)$/.exec(text);
      if (!m) throw new InvalidInputError(`${path}:${i + 1}: expected 'index path', got '${text}'`, { file: path, line: i + 1 });
      out.set(Number(m[1]), resolve(protocolDir, m[2]));
    });
  return out;
}

/**
 * The CFP protocol (Sengupta et al.): `Protocol/Pair_list_{F,P}.txt` list the frontal and profile
 * images; `Protocol/Split/{FP,FF}/NN/{same,diff}.txt` hold pairs `i,j` — in FP, i indexes the
 * frontal list and j the profile list; in FF both index the frontal list. Folds = the splits.
 */
export function readCfpPairs(root: string, split: 'FP' | 'FF', o: { checkFiles?: boolean } = {}): PairList {
  const protocol = join(root, 'Protocol');
  const frontal = readIndexList(join(protocol, 'Pair_list_F.txt'), protocol);
  const second = split === 'FP' ? readIndexList(join(protocol, 'Pair_list_P.txt'), protocol) : frontal;
  const splitDir = join(protocol, 'Split', split);
  if (!existsSync(splitDir)) throw new InvalidInputError(`CFP split folder missing: ${splitDir}`, { file: splitDir });
  const folds = readdirSync(splitDir)
    .filter((d) => /^\d+$/.test(d))
    .sort();
  const pairs: VerificationPair[] = [];
  const problems: string[] = [];
  folds.forEach((foldName, fold) => {
    for (const kind of ['same', 'diff'] as const) {
      const file = join(splitDir, foldName, `${kind}.txt`);
      readFileSync(file, 'utf8')
        .split(/\r?\n/)
        .forEach((raw, i) => {
          const text = raw.trim();
          if (!text) return;
          const m = /^(\d+)\s*,\s*(\d+)$/.exec(text);
          const line = i + 1;
          if (!m) return void problems.push(`${file}:${line}: expected 'i,j', got '${text}'`);
          const a = frontal.get(Number(m[1]));
          const b = second.get(Number(m[2]));
          if (!a) return void problems.push(`${file}:${line}: index ${m[1]} not in Pair_list_F.txt`);
          if (!b)
            return void problems.push(`${file}:${line}: index ${m[2]} not in ${split === 'FP' ? 'Pair_list_P.txt' : 'Pair_list_F.txt'}`);
          if (o.checkFiles !== false) for (const p of [a, b]) if (!existsSync(p)) problems.push(`${file}:${line}: image not found: ${p}`);
          pairs.push({ a, b, same: kind === 'same', fold, line });
        });
    }
  });
  if (problems.length)
    throw new InvalidInputError(`${problems.length} problem(s) in the CFP protocol:\n${problems.slice(0, 20).join('\n')}`, {
      file: splitDir,
    });
  return { pairs, folds: folds.length, source: splitDir };
}
