/**
 * The real-data baseline's report (issue 11 §2): reads finished runs of the `celeba` profile (or
 * any run with fr-train and eval on LFW) and writes `docs/real-baseline/`: results.json (one object
 * per trained model), report.md, and each model's training curve and ROC.
 *
 *   node --import tsx bench/real-baseline/report.ts --run .id3/runs/celeba-baseline [--run …] [--out docs/real-baseline] [--benchmark LFW]
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { StageManifest } from '@id3/core';
import { mcnemar, type PairResults } from '@id3/eval';

interface ModelCard {
  backbone: { depth: number; width: number; resolution: number; embeddingDim: number };
  head: { kind: string; margin: number; scale: number };
  dataset: {
    kind: string;
    identities: number;
    trainImages: number;
    validationImages: number;
    select: { perIdentity?: number; minPerIdentity?: number };
  };
  steps: number;
  trainSeconds: number;
  /** Step the last training process resumed from (0 = trained in one go): trainSeconds covers only the steps after it. */
  resumedFromStep: number;
  validationAccuracy: number;
}

interface Verification {
  pairs: number;
  accuracy: number;
  accuracyStd: number;
  tar: number;
  auc: number;
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** The photos a run prepared, as its prepare config names them (e.g. 'folders data:celeba/images'). */
function describeSource(prepare: StageManifest): string {
  const source = (prepare.config as { source?: { kind?: string; path?: string } }).source ?? {};
  return [source.kind, source.path].filter(Boolean).join(' ');
}

function main(): void {
  const { values } = parseArgs({
    options: {
      run: { type: 'string', multiple: true },
      out: { type: 'string', default: 'docs/real-baseline' },
      benchmark: { type: 'string', default: 'LFW' },
    },
  });
  const given = values.run ?? [];
  const runs = given.map((r) => resolve(r));
  if (runs.length === 0) throw new Error('--run RUN_DIR (repeatable): a run with fr-train and eval completed');
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  const rows = runs.map((run) => {
    for (const stage of ['prepare', 'fr-train', 'eval']) {
      if (!existsSync(join(run, stage, 'manifest.json')))
        throw new Error(`${run}: stage '${stage}' has not completed (no ${stage}/manifest.json)`);
    }
    const train = readJson<StageManifest>(join(run, 'fr-train', 'manifest.json'));
    const card = readJson<ModelCard>(join(run, train.outputs.card.path));
    const evaluation = readJson<StageManifest>(join(run, 'eval', 'manifest.json'));
    const results = readJson<{ model: string; results: Record<string, Verification> }>(join(run, evaluation.outputs.results.path)).results;
    const lfw = results[values.benchmark];
    if (!lfw) throw new Error(`${run}: eval has no benchmark named '${values.benchmark}' (it has: ${Object.keys(results).join(', ')})`);
    const name = basename(run);
    if (train.outputs.curve) copyFileSync(join(run, train.outputs.curve.path), join(out, `${name}-training-curve.png`));
    copyFileSync(join(run, evaluation.outputs.roc.path), join(out, `${name}-roc.png`));
    const images = card.dataset.trainImages + card.dataset.validationImages;
    const pairsOutput = evaluation.outputs[`pairs_${values.benchmark.replace(/[^A-Za-z0-9]/g, '')}`];
    const pairs = pairsOutput ? readJson<PairResults>(join(run, pairsOutput.path)) : undefined;
    return {
      pairs,
      run: name,
      dataset: describeSource(readJson<StageManifest>(join(run, 'prepare', 'manifest.json'))),
      resolution: card.backbone.resolution,
      identities: card.dataset.identities,
      // What was trained on (train + validation photos per person, rounded); the cap only when every person reached it.
      imagesPerIdentity: Math.round(images / card.dataset.identities),
      imagesPerIdentityCap: card.dataset.select.perIdentity ?? null,
      images,
      trainImages: card.dataset.trainImages,
      backbone: `IResNet-${card.backbone.depth} ×${card.backbone.width}, ${card.backbone.embeddingDim}-d`,
      head: `${card.head.kind} (s = ${card.head.scale.toFixed(2)}, m = ${card.head.margin})`,
      steps: card.steps,
      trainSeconds: card.trainSeconds,
      resumedFromStep: train.metrics.resumedFromStep ?? 0,
      validationAccuracy: card.validationAccuracy,
      lfwPairs: lfw.pairs,
      lfwAccuracy: lfw.accuracy,
      lfwStd: lfw.accuracyStd,
      lfwTarAtFar1e3: lfw.tar,
      lfwAuc: lfw.auc,
    };
  });
  // Paired McNemar of each model against the first on the same pairs (discordant b: first right, c: this right).
  const first = rows[0].pairs;
  const models = rows.map(({ pairs, ...r }, i) => {
    if (i === 0 || !first || !pairs) return { ...r, mcnemarVsFirst: null };
    if (JSON.stringify(first.issame) !== JSON.stringify(pairs.issame))
      throw new Error(`${r.run}: not the same ${values.benchmark} pairs as ${rows[0].run}`);
    const m = mcnemar(first.correct, pairs.correct);
    return { ...r, mcnemarVsFirst: { versus: rows[0].run, b: m.b, c: m.c, pExact: m.pExact } };
  });
  writeFileSync(
    join(out, 'results.json'),
    `${JSON.stringify({ date: new Date().toISOString(), benchmark: values.benchmark, models }, null, 2)}\n`,
  );
  const pct = (v: number): string => (100 * v).toFixed(2);
  const md = [
    '# Real-data baseline',
    '',
    `Face recognizers trained on real photos and scored on ${values.benchmark} (insightface protocol, 10 folds, at the training resolution). Made by \`node --import tsx bench/real-baseline/report.ts ${given.map((r) => `--run ${r}`).join(' ')}\`.`,
    '',
    `| run | photos | identities × images | resolution | backbone | head | steps | train time | validation acc. | ${values.benchmark} acc. | TAR@FAR=1e-3 | AUC |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...models.map(
      (r) =>
        `| ${r.run} | ${r.dataset} | ${r.identities} × ${r.imagesPerIdentityCap !== null && r.imagesPerIdentityCap > r.imagesPerIdentity ? `${(r.images / r.identities).toFixed(1)} on average (${r.images} photos, cap ${r.imagesPerIdentityCap})` : r.imagesPerIdentity} | ${r.resolution}×${r.resolution} | ${r.backbone} | ${r.head} | ${r.steps} | ${(r.trainSeconds / 60).toFixed(1)} min${r.resumedFromStep ? ` (steps ${r.resumedFromStep}–${r.steps}; resumed)` : ''} | ${pct(r.validationAccuracy)} | **${pct(r.lfwAccuracy)} ± ${pct(r.lfwStd)}** | ${pct(r.lfwTarAtFar1e3)} | ${r.lfwAuc.toFixed(4)} |`,
    ),
    '',
    ...models.flatMap((r) =>
      r.mcnemarVsFirst
        ? [
            `${r.run} vs ${r.mcnemarVsFirst.versus} on the same ${values.benchmark} pairs (McNemar): ${r.mcnemarVsFirst.b} pairs only ${r.mcnemarVsFirst.versus} gets right, ${r.mcnemarVsFirst.c} only ${r.run}; exact p = ${r.mcnemarVsFirst.pExact.toPrecision(2)}.`,
            '',
          ]
        : [],
    ),
    'Validation accuracy: closed-set identification of held-out photos of the training people (monitoring only; no model is selected on it or on the benchmark — each is its last checkpoint after a fixed schedule).',
    '',
    ...models.flatMap((r) => [`![${r.run} training curve](${r.run}-training-curve.png) ![${r.run} ROC](${r.run}-roc.png)`, '']),
  ].join('\n');
  writeFileSync(join(out, 'report.md'), md);
  console.log(md);
}

main();
