/**
 * Ship a trained generator (issue 9 §3): copy a finished train-diffusion stage's model — EMA
 * weights, generator.json, the identity-space artefact when it is conditioned in a whitened
 * space — with its figures into models/<name>/, and write its model card (card.json + README.md).
 * Refuses a folder over 20 MB. A pipeline then samples from it with `sample.model: "models/<name>"`
 * and fine-tunes from it with `train-diffusion.init: "models/<name>"`.
 *
 *   npm run ship:generator -- --run .id3/runs/<run> --name <name> [--description TEXT] [--out models/<name>] [--force]
 */
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isInvalidInput } from '@id3/core';
import { formatBytes, shipGenerator } from '@id3/diffusion';

const ROOT = resolve(__dirname, '..');

function main(): void {
  const { values: args } = parseArgs({
    options: {
      run: { type: 'string' },
      name: { type: 'string' },
      description: { type: 'string', default: '' },
      out: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  if (!args.run || !args.name) {
    console.error('usage: npm run ship:generator -- --run <runDir> --name <name> [--description TEXT] [--out models/<name>] [--force]');
    process.exit(2);
  }
  const out = resolve(ROOT, args.out ?? `models/${args.name}`);
  const shipped = shipGenerator({
    runDir: resolve(args.run),
    name: args.name,
    out,
    description: args.description || `ID³ generator trained in run ${args.run}.`,
    overwrite: args.force,
  });
  const c = shipped.card;
  const f3 = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(3));
  // models/<name> inside the repository (what configs name), else the absolute path.
  const where = shipped.dir.startsWith(`${ROOT}/`) ? relative(ROOT, shipped.dir) : shipped.dir;
  console.log(`wrote ${where}/ (${formatBytes(shipped.totalBytes)}):`);
  for (const f of shipped.files) console.log(`  ${f.file.padEnd(28)} ${formatBytes(f.bytes).padStart(10)}`);
  console.log(
    `${c.steps} steps, ${(c.trainSeconds / 60).toFixed(1)} min (${c.timing.basis}); κ = ${c.trainer.identity.enabled ? c.trainer.identity.scale : 0}; ` +
      `held-out (${c.heldOut.evalCount}, ${c.heldOut.on}): identity gap ${f3(c.heldOut.identityGap)} (real ${f3(c.heldOut.realIdentityGap)}), ` +
      `yaw r ${f3(c.heldOut.yawCorrelation)} (real ${f3(c.heldOut.realYawCorrelation)}), age r ${f3(c.heldOut.ageCorrelation)} (real ${f3(c.heldOut.realAgeCorrelation)})`,
  );
  console.log(`use it: --set sample.model=${where}   (fine-tune: --set train-diffusion.init=${where})`);
}

try {
  main();
} catch (err) {
  console.error(`ship:generator: ${(err as Error).message}`);
  process.exit(isInvalidInput(err) ? 65 : 1);
}
