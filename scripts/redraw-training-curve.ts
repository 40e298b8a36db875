/**
 * Redraw a finished fr-train run's training curves in the current layout (loss above, accuracies
 * on [0, 1] below) from its history.json, into a new file — the stage's own training-curve.png is
 * an output its manifest hashes, so it is never rewritten:
 *
 *   node --import tsx scripts/redraw-training-curve.ts RUN_DIR OUT.png
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { svgToPng } from '@id3/core';
import { frTrainingCurveSvg, type FrHistoryPoint } from '@id3/fr-train';

async function main(): Promise<void> {
  const [runDir, out] = process.argv.slice(2);
  if (!runDir || !out) throw new Error('usage: redraw-training-curve.ts RUN_DIR OUT.png');
  const file = join(resolve(runDir), 'fr-train', 'history.json');
  if (!existsSync(file)) throw new Error(`${file}: no fr-train history here (is ${runDir} a run directory whose fr-train finished?)`);
  const history = (JSON.parse(readFileSync(file, 'utf8')) as { history?: FrHistoryPoint[] }).history;
  if (!Array.isArray(history) || history.length < 2) throw new Error(`${file}: field 'history': fewer than 2 points to draw`);
  writeFileSync(out, await svgToPng(frTrainingCurveSvg(history)));
  console.log(`${file} → ${out}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
