import { tf } from '@id3/core';
import { histogram } from '@id3/core';

/** Summary of all pairwise cosines of a point set (each unordered pair once). */
export interface PairwiseStats {
  readonly n: number;
  readonly dim: number;
  /** Largest cosine between two distinct points, and its angle: the Tammes objective. */
  readonly maxCos: number;
  readonly minAngleDeg: number;
  readonly meanCos: number;
  /** Mean over points of the cosine to the nearest other point. */
  readonly meanNearestCos: number;
  /** Cosine to the nearest other point, per point. */
  readonly nearestCos: Float32Array;
  /** Histogram of all pairwise cosines over [-1, 1]. */
  readonly histogram: Float64Array;
  readonly bins: number;
}

/**
 * Exact pairwise statistics, computed block by block so N = 10,000 at d = 512 never holds the
 * whole N×N Gram matrix (a block of `blockRows` rows at a time).
 */
export function pairwiseStats(
  points: Float32Array,
  n: number,
  dim: number,
  opts: { bins?: number; blockRows?: number } = {},
): PairwiseStats {
  const bins = opts.bins ?? 200;
  const blockRows = opts.blockRows ?? 512;
  const hist = new Float64Array(bins);
  const nearest = new Float32Array(n).fill(-Infinity);
  let sum = 0;
  let maxCos = -Infinity;
  const all = tf.tensor2d(points, [n, dim]);
  // matMul against a transposed copy: on wasm, matMul(a, b, false, true) is ~9× slower.
  const allT = tf.transpose(all);
  try {
    for (let start = 0; start < n; start += blockRows) {
      const rows = Math.min(blockRows, n - start);
      const gram = tf.tidy(() => tf.matMul(tf.slice(all, [start, 0], [rows, dim]), allT));
      const g = gram.dataSync() as Float32Array;
      gram.dispose();
      for (let r = 0; r < rows; r++) {
        const i = start + r;
        const row = g.subarray(r * n, (r + 1) * n);
        let best = -Infinity;
        for (let j = 0; j < n; j++) if (j !== i && row[j] > best) best = row[j];
        nearest[i] = best;
        // Upper triangle only, so every unordered pair counts once.
        const upper = row.subarray(i + 1);
        histogram(upper, -1, 1, bins, hist);
        for (let j = 0; j < upper.length; j++) {
          sum += upper[j];
          if (upper[j] > maxCos) maxCos = upper[j];
        }
      }
    }
  } finally {
    all.dispose();
    allT.dispose();
  }
  const pairs = (n * (n - 1)) / 2;
  let nearestSum = 0;
  for (let i = 0; i < n; i++) nearestSum += nearest[i];
  return {
    n,
    dim,
    maxCos,
    minAngleDeg: (Math.acos(Math.min(1, Math.max(-1, maxCos))) * 180) / Math.PI,
    meanCos: sum / pairs,
    meanNearestCos: nearestSum / n,
    nearestCos: nearest,
    histogram: hist,
    bins,
  };
}
