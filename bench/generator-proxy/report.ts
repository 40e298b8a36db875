/**
 * The generator conditioning comparison (issue 9 §2): reads finished (or running) train-diffusion
 * stages of several runs — one recipe each, e.g. of the `generator-proxy` profile — and writes
 * `<out>/report.md`, `<out>/results.json` and `<out>/identity-gap.png` / `<out>/attributes.png`:
 * per recipe, the identity gap and the yaw/age correlations (attributes shuffled between
 * identities) at every checkpoint, against the real photos' own.
 *
 *   node --import tsx bench/generator-proxy/report.ts --run .id3/runs/proxy-a [--run …] [--out docs/generator-proxy]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { lineChartSvg, svgToPng } from '@id3/core';
import type { HeldOutHistoryRow, HeldOutHistorySettings } from '@id3/diffusion';

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

interface TrainConfig {
  condition?: string;
  subset?: number;
  unet?: { conditioning?: string };
  trainer?: { steps?: number; learningRate?: number; identity?: { scale?: number; enabled?: boolean } };
}

/** The knobs that tell recipes apart, in words. */
function recipeOf(c: TrainConfig): string {
  const kappa = c.trainer?.identity?.enabled === false ? 0 : (c.trainer?.identity?.scale ?? 1);
  return [
    `condition ${c.condition ?? 'teacher'}`,
    `blocks ${c.unet?.conditioning ?? 'add'}`,
    `κ ${kappa}`,
    `lr ${c.trainer?.learningRate ?? 'default'}`,
    c.subset !== undefined ? `subset ${c.subset}` : 'all rows',
  ].join(', ');
}

const fmt = (v: number | null | undefined, digits = 3): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { run: { type: 'string', multiple: true }, out: { type: 'string', default: 'docs/generator-proxy' } },
  });
  const runs = (values.run ?? []).map((r) => resolve(r));
  if (runs.length === 0) throw new Error('--run RUN_DIR (repeatable): runs whose train-diffusion stage evaluates at its checkpoints');
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });

  const rows = runs.map((run) => {
    const stageDir = join(run, 'train-diffusion');
    const historyPath = join(stageDir, 'heldout-history.json');
    if (!existsSync(historyPath))
      throw new Error(`${run}: no train-diffusion/heldout-history.json (evaluation.every must be 'checkpoint')`);
    const file = readJson<{ settings: HeldOutHistorySettings; history: HeldOutHistoryRow[] }>(historyPath);
    const config = readJson<{ 'train-diffusion'?: TrainConfig }>(join(run, 'config.json'))['train-diffusion'] ?? {};
    const done = existsSync(join(stageDir, 'manifest.json'));
    const final =
      done && existsSync(join(stageDir, 'evaluation.json'))
        ? readJson<{ metrics: Record<string, number> }>(join(stageDir, 'evaluation.json')).metrics
        : undefined;
    // JSON wrote undefined correlations as null.
    const history = file.history.map(
      (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v ?? Number.NaN])) as unknown as HeldOutHistoryRow,
    );
    const best = history.reduce<HeldOutHistoryRow | undefined>((b, h) => (!b || h.identityGap > b.identityGap ? h : b), undefined);
    return { run: basename(run), recipe: recipeOf(config), settings: file.settings, history, last: history.at(-1), best, final, done };
  });

  const series = (pick: (h: HeldOutHistoryRow) => number) =>
    rows.map((r, i) => ({
      label: r.run,
      color: COLORS[i % COLORS.length],
      points: r.history.map((h) => ({ x: h.step, y: pick(h) })).filter((p) => Number.isFinite(p.y)),
    }));
  const realGap = rows[0].history[0]?.realIdentityGap;
  const gapChart = lineChartSvg({
    title: `Identity gap (own y − another's y, teacher cosine) on ${rows[0].settings.on} rows; real photos ${fmt(realGap)}`,
    xLabel: 'step',
    yLabel: 'identity gap',
    series: series((h) => h.identityGap).filter((s) => s.points.length > 0),
  });
  writeFileSync(join(out, 'identity-gap.png'), await svgToPng(gapChart));
  const attrChart = lineChartSvg({
    title: 'Yaw and age correlation with shuffled attributes (one colour per run and attribute)',
    xLabel: 'step',
    yLabel: 'Pearson r (requested vs read back)',
    series: [
      ...series((h) => h.yawCorrelation).map((s) => ({ ...s, label: `${s.label} yaw` })),
      ...series((h) => h.ageCorrelation).map((s, i) => ({
        ...s,
        label: `${s.label} age`,
        color: COLORS[(i + rows.length) % COLORS.length],
      })),
    ].filter((s) => s.points.length > 0),
  });
  writeFileSync(join(out, 'attributes.png'), await svgToPng(attrChart));

  const results = rows.map((r) => ({
    run: r.run,
    recipe: r.recipe,
    on: r.settings.on,
    subset: r.settings.subset,
    conditions: r.settings.rows.length,
    ddimSteps: r.settings.ddimSteps,
    finished: r.done,
    lastStep: r.last?.step ?? 0,
    last: r.last,
    bestIdentityGap: r.best ? { step: r.best.step, identityGap: r.best.identityGap } : null,
    final: r.final ?? null,
  }));
  writeFileSync(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);

  const lines = [
    '# Generator conditioning: recipes side by side',
    '',
    `Made by \`node --import tsx bench/generator-proxy/report.ts ${runs.map((r) => `--run ${r.replace(`${process.cwd()}/`, '')}`).join(' ')} --out ${values.out}\`.`,
    '',
    `Every checkpoint's EMA weights sample ${rows[0].settings.rows.length} ${rows[0].settings.on} conditions (DDIM ${rows[0].settings.ddimSteps}, fixed seed) with each identity's attributes taken from another row; the identity gap is the teacher cosine of a sample to its own y minus to another row's y, and yaw/age are read back from the samples (68-point pose, face-api age) against the requested (shuffled) values. The real photos give the ceiling.`,
    '',
    '| run | recipe | last step | identity gap (real) | yaw r (real) | age r (real) | best gap (step) |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.run}${r.done ? '' : ' (running)'} | ${r.recipe} | ${r.last?.step ?? 0} | ${fmt(r.last?.identityGap)} (${fmt(r.last?.realIdentityGap)}) | ${fmt(r.last?.yawCorrelation, 2)} (${fmt(r.last?.realYawCorrelation, 2)}) | ${fmt(r.last?.ageCorrelation, 2)} (${fmt(r.last?.realAgeCorrelation, 2)}) | ${fmt(r.best?.identityGap)} (${r.best?.step ?? '–'}) |`,
    ),
    '',
    '![identity gap](identity-gap.png)',
    '',
    '![attributes](attributes.png)',
    '',
  ];
  writeFileSync(join(out, 'report.md'), lines.join('\n'));
  console.log(`wrote ${join(out, 'report.md')}, results.json, identity-gap.png, attributes.png (${rows.length} runs)`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
