/**
 * How far apart the anchors a row actually samples are: the sample stage uses the first `count`
 * of the anchors stage's N, so the anchors stage's own statistics (over all N) can overstate
 * what spacing a row gets. Prints the Tammes objective over the first n anchors, for each n,
 * in the placement space (whitened identity space) and on the teacher's sphere:
 *
 *   node --import tsx scripts/anchor-spacing.ts RUN_DIR [N ...]      (default N: 203 1000)
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initBackend, readTensorFile } from '@id3/core';
import { normaliseRows, pairwiseStats } from '@id3/anchors';

const FILES = [
  ['placement space (whitened)', 'anchors-whitened.json'],
  ["teacher's sphere", 'anchors.json'],
] as const;

async function main(): Promise<void> {
  const [runDir, ...counts] = process.argv.slice(2);
  if (!runDir) throw new Error('usage: anchor-spacing.ts RUN_DIR [N ...]');
  const ns = (counts.length ? counts : ['203', '1000']).map((text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 2) throw new Error(`N '${text}': expected an integer ≥ 2`);
    return n;
  });
  await initBackend('cpu');
  console.log('| anchors | space | first n | min angle (°) | mean nearest cos |');
  console.log('|---|---|---|---|---|');
  for (const [space, file] of FILES) {
    const path = join(resolve(runDir), 'anchors', file);
    if (!existsSync(path)) throw new Error(`${path}: no anchors here (is ${runDir} a run directory whose anchors stage finished?)`);
    const { header, values } = readTensorFile(path);
    const [total, dim] = header.shape;
    if (!(values instanceof Float32Array) || header.shape.length !== 2) throw new Error(`${path}: expected a float32 [N, d] tensor`);
    for (const n of ns) {
      if (n > total) throw new Error(`N ${n}: ${path} holds only ${total} anchors`);
      // Unit rows first, so the dot products are cosines whatever the file's scaling.
      const stats = pairwiseStats(normaliseRows(values.slice(0, n * dim), dim), n, dim);
      console.log(`| ${runDir} | ${space} | ${n} | ${stats.minAngleDeg.toFixed(1)} | ${stats.meanNearestCos.toFixed(3)} |`);
    }
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
