/**
 * Accuracy of verification pairs binned by their head-pose difference |yaw_a − yaw_b|. LFW is
 * mostly frontal, so its overall accuracy says little about pose; the pairs with the largest yaw
 * difference are where the variety of the training attributes should show. Pure functions: the
 * per-pair correctness is the protocol's own (each pair under its fold's threshold), only grouped.
 */

/** Accuracy over one group of pairs. */
export interface PoseBin {
  /** `[0, 10)`, `[20, ∞)`, or `top 25%`. */
  readonly label: string;
  /** Inclusive lower bound of |Δyaw| in degrees (the top group: the smallest value it holds; Infinity when empty). */
  readonly min: number;
  /** Exclusive upper bound (Infinity for the open last bin and the top group). */
  readonly max: number;
  readonly pairs: number;
  readonly correct: number;
  /** correct / pairs; null for an empty group. */
  readonly accuracy: number | null;
}

export interface PoseBinnedAccuracy {
  /** Pairs whose yaw difference is known (both images had landmarks). */
  readonly known: number;
  /** Pairs without one (an image without landmarks): in no group. */
  readonly unknown: number;
  /** The pairs with the largest yaw difference (`topFraction` of the known ones, ties kept together). */
  readonly top: PoseBin;
  /** Which pairs those are, in pair order. */
  readonly topIndices: readonly number[];
  /** The fixed bins, [edges[i], edges[i+1]) and [edges[last], ∞). */
  readonly bins: readonly PoseBin[];
}

export interface PoseBinOptions {
  /** Bin edges in degrees, strictly increasing from 0 (default [0, 10, 20]). */
  readonly edges?: readonly number[];
  /** Fraction of the known pairs with the largest difference (default 0.25: the top quartile). */
  readonly topFraction?: number;
}

/**
 * Per pair |yaw_a − yaw_b| in degrees, rounded to 0.01 (far below the estimator's error) as the
 * pairs file stores it; null when either side has no yaw.
 */
export function yawDifferences(yawA: readonly (number | null)[], yawB: readonly (number | null)[]): (number | null)[] {
  if (yawA.length !== yawB.length) throw new RangeError(`yawDifferences: ${yawA.length} a sides for ${yawB.length} b sides`);
  return yawA.map((a, i) => {
    const b = yawB[i];
    return a === null || b === null ? null : Number(Math.abs(a - b).toFixed(2));
  });
}

export const DEFAULT_POSE_EDGES: readonly number[] = [0, 10, 20];

/**
 * The pairs with the largest yaw difference: k = ceil(fraction × known pairs), and every pair at
 * least as large as the k-th largest value (so tied pairs are all in or all out, whatever their
 * order in the file, and the set may exceed k by the ties). Indices in pair order.
 */
export function largestPoseDifference(
  yawDifference: readonly (number | null)[],
  fraction = 0.25,
): { threshold: number | null; indices: number[] } {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`largestPoseDifference: fraction must be in (0, 1], got ${fraction}`);
  const known = yawDifference.filter((d): d is number => d !== null);
  if (known.some((d) => !Number.isFinite(d) || d < 0))
    throw new RangeError('largestPoseDifference: yaw differences must be finite and ≥ 0 (or null)');
  if (known.length === 0) return { threshold: null, indices: [] };
  const k = Math.ceil(fraction * known.length);
  const threshold = [...known].sort((a, b) => b - a)[k - 1];
  const indices: number[] = [];
  yawDifference.forEach((d, i) => {
    if (d !== null && d >= threshold) indices.push(i);
  });
  return { threshold, indices };
}

const group = (label: string, min: number, max: number, picked: readonly number[], correct: readonly boolean[]): PoseBin => {
  const right = picked.filter((i) => correct[i]).length;
  return { label, min, max, pairs: picked.length, correct: right, accuracy: picked.length ? right / picked.length : null };
};

/** Accuracy of the already-decided per-pair `correct` within the top group and each fixed bin. */
export function poseBinnedAccuracy(
  yawDifference: readonly (number | null)[],
  correct: readonly boolean[],
  o: PoseBinOptions = {},
): PoseBinnedAccuracy {
  if (yawDifference.length !== correct.length)
    throw new RangeError(`poseBinnedAccuracy: ${yawDifference.length} yaw differences for ${correct.length} pairs`);
  const edges = o.edges ?? DEFAULT_POSE_EDGES;
  if (edges.length === 0 || edges[0] !== 0 || edges.some((e, i) => i > 0 && !(e > edges[i - 1])))
    throw new RangeError(`poseBinnedAccuracy: edges must increase strictly from 0, got [${edges.join(', ')}]`);
  const fraction = o.topFraction ?? 0.25;
  const { threshold, indices } = largestPoseDifference(yawDifference, fraction);
  const known = yawDifference.filter((d) => d !== null).length;
  const bins = edges.map((lo, b) => {
    const hi = b + 1 < edges.length ? edges[b + 1] : Infinity;
    const picked: number[] = [];
    yawDifference.forEach((d, i) => {
      if (d !== null && d >= lo && d < hi) picked.push(i);
    });
    return group(`[${lo}, ${hi === Infinity ? '∞' : hi})`, lo, hi, picked, correct);
  });
  const top = group(`top ${Math.round(100 * fraction)}%`, threshold ?? Infinity, Infinity, indices, correct);
  return { known, unknown: yawDifference.length - known, top, topIndices: indices, bins };
}
