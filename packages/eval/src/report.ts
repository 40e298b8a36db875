import { binEdges, histogram, histogramSvg, lineChartSvg } from '@id3/core';
import type { VerificationResult } from './verification';

/** The paper's benchmark columns, in its order (ID3-METHOD.md, "Published numbers"). */
export const PAPER_BENCHMARKS = ['LFW', 'CFP-FP', 'CPLFW', 'AgeDB-30', 'CALFW'] as const;
export type PaperBenchmark = (typeof PAPER_BENCHMARKS)[number];

export interface ModelRow {
  readonly model: string;
  readonly results: Partial<Record<PaperBenchmark, VerificationResult>>;
}

const pct = (v: number): string => (100 * v).toFixed(2);

/**
 * A Markdown table in the paper's layout: accuracy % (± std) per benchmark and the average.
 * A benchmark with no data says so; the average is only given over all five.
 */
export function paperTable(rows: readonly ModelRow[]): string {
  const header = `| model | ${PAPER_BENCHMARKS.join(' | ')} | avg |`;
  const rule = `|---|${PAPER_BENCHMARKS.map(() => '---').join('|')}|---|`;
  const lines = rows.map((row) => {
    const cells = PAPER_BENCHMARKS.map((b) => {
      const r = row.results[b];
      return r ? `${pct(r.accuracy)} ± ${pct(r.accuracyStd)}` : 'no data';
    });
    const have = PAPER_BENCHMARKS.filter((b) => row.results[b]);
    const avg =
      have.length === PAPER_BENCHMARKS.length
        ? pct(have.reduce((s, b) => s + row.results[b]!.accuracy, 0) / have.length)
        : `n/a (${have.length} of ${PAPER_BENCHMARKS.length})`;
    return `| ${row.model} | ${cells.join(' | ')} | ${avg} |`;
  });
  return [header, rule, ...lines].join('\n');
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/** ROC curves (TAR against FAR on a log axis) for one model's benchmarks. */
export function rocSvg(title: string, curves: readonly { label: string; result: VerificationResult }[]): string {
  return lineChartSvg({
    title,
    xLabel: 'false accept rate (log scale)',
    yLabel: 'true accept rate',
    logX: { min: 1e-4 },
    xRange: [1e-4, 1],
    yRange: [0, 1],
    series: curves.map((c, i) => ({
      label: `${c.label} (AUC ${c.result.auc.toFixed(4)}, EER ${pct(c.result.eer)}%)`,
      color: COLORS[i % COLORS.length],
      points: c.result.roc.filter((p) => p.fpr > 0).map((p) => ({ x: p.fpr, y: p.tpr })),
    })),
  });
}

/** Genuine and impostor distance histograms with the mean chosen threshold. */
export function scoreHistogramSvg(title: string, dist: ArrayLike<number>, issame: ArrayLike<boolean>, threshold: number): string {
  const bins = 80;
  const genuine: number[] = [];
  const impostor: number[] = [];
  for (let i = 0; i < dist.length; i++) (issame[i] ? genuine : impostor).push(dist[i]);
  const hi = Math.min(4, Math.max(...Array.from(dist)) * 1.05);
  return histogramSvg({
    title,
    xLabel: 'squared L2 distance between normalised embeddings',
    edges: binEdges(0, hi, bins),
    density: true,
    series: [
      { label: `genuine (${genuine.length})`, color: '#2ca02c', counts: histogram(genuine, 0, hi, bins) },
      { label: `impostor (${impostor.length})`, color: '#d62728', counts: histogram(impostor, 0, hi, bins) },
    ],
    markers: [{ x: threshold, label: `threshold ${threshold.toFixed(2)}`, color: 'black' }],
  });
}
