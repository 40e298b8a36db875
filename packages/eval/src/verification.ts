/**
 * Face verification metrics, following the insightface protocol (recognition/_evaluation_/
 * verification.py): squared L2 distance between L2-normalised embeddings, thresholds 0…4 in
 * steps of 0.01, 10 folds; in each fold the threshold that maximises accuracy on the other nine
 * folds is applied to the held-out fold. TAR at a fixed FAR uses the same folds, the threshold
 * being interpolated on the training folds' FAR curve (thresholds in steps of 0.001).
 * Pure functions on Float32Arrays: no tensors, testable with known answers.
 */

export interface VerificationOptions {
  /** Number of folds when `foldOf` is not given: contiguous equal chunks (KFold, no shuffle). */
  readonly folds?: number;
  /** Fold index per pair, when the benchmark defines its own folds (e.g. CFP's splits). */
  readonly foldOf?: ArrayLike<number>;
  /** Threshold grid for accuracy (default 0…4 step 0.01). */
  readonly thresholdStep?: number;
  /** FAR target for TAR@FAR (default 1e-3). */
  readonly farTarget?: number;
}

export interface VerificationResult {
  readonly pairs: number;
  readonly folds: number;
  /** Mean and standard deviation (population, as numpy's std) of the per-fold accuracies. */
  readonly accuracy: number;
  readonly accuracyStd: number;
  readonly foldAccuracies: readonly number[];
  /** Threshold chosen for each fold on the other folds. */
  readonly thresholds: readonly number[];
  /** TAR at FAR = farTarget: mean ± std over folds, and the mean FAR actually reached. */
  readonly tar: number;
  readonly tarStd: number;
  readonly far: number;
  readonly farTarget: number;
  /** ROC over all pairs (threshold sweep): points sorted by FAR. */
  readonly roc: readonly { readonly threshold: number; readonly tpr: number; readonly fpr: number }[];
  readonly auc: number;
  /** Equal error rate and the distance threshold where it occurs. */
  readonly eer: number;
  readonly eerThreshold: number;
}

/** Squared L2 distances between L2-normalised rows of a and b ([n, dim] each). */
export function pairDistances(a: Float32Array, b: Float32Array, dim: number): Float64Array {
  if (a.length !== b.length || a.length % dim !== 0) {
    throw new RangeError(`pairDistances: embeddings of ${a.length} and ${b.length} values do not form [n, ${dim}] pairs`);
  }
  const n = a.length / dim;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let na = 0;
    let nb = 0;
    for (let k = 0; k < dim; k++) {
      na += a[i * dim + k] ** 2;
      nb += b[i * dim + k] ** 2;
    }
    const ia = na > 0 ? 1 / Math.sqrt(na) : 0;
    const ib = nb > 0 ? 1 / Math.sqrt(nb) : 0;
    let d = 0;
    for (let k = 0; k < dim; k++) {
      const diff = a[i * dim + k] * ia - b[i * dim + k] * ib;
      d += diff * diff;
    }
    out[i] = d;
  }
  return out;
}

/** Accuracy, TPR and FPR when pairs with distance < threshold are called "same". */
export function rates(
  dist: ArrayLike<number>,
  issame: ArrayLike<boolean>,
  threshold: number,
  idx?: readonly number[],
): { acc: number; tpr: number; fpr: number; tp: number; fp: number; p: number; n: number } {
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  const count = idx ? idx.length : dist.length;
  for (let j = 0; j < count; j++) {
    const i = idx ? idx[j] : j;
    const predict = dist[i] < threshold;
    if (predict && issame[i]) tp++;
    else if (predict) fp++;
    else if (issame[i]) fn++;
    else tn++;
  }
  return {
    acc: (tp + tn) / Math.max(1, count),
    tpr: tp + fn === 0 ? 0 : tp / (tp + fn),
    fpr: fp + tn === 0 ? 0 : fp / (fp + tn),
    tp,
    fp,
    p: tp + fn,
    n: fp + tn,
  };
}

function grid(step: number, max = 4): number[] {
  const n = Math.round(max / step);
  return Array.from({ length: n }, (_, i) => Number((i * step).toFixed(10)));
}

/** Mean and population standard deviation (numpy's default ddof=0), as the protocol reports folds. */
export function meanStd(v: readonly number[]): [number, number] {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return [m, Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length)];
}

function foldIndices(pairs: number, o: VerificationOptions): number[][] {
  if (o.foldOf) {
    if (o.foldOf.length !== pairs) throw new RangeError(`foldOf has ${o.foldOf.length} entries for ${pairs} pairs`);
    const k = Math.max(...Array.from(o.foldOf)) + 1;
    const folds: number[][] = Array.from({ length: k }, () => []);
    for (let i = 0; i < pairs; i++) folds[o.foldOf[i]].push(i);
    return folds;
  }
  const k = o.folds ?? 10;
  if (pairs < k) throw new RangeError(`${pairs} pairs cannot be split into ${k} folds`);
  // sklearn KFold without shuffle: the first (pairs % k) folds get one extra pair.
  const folds: number[][] = [];
  let start = 0;
  for (let f = 0; f < k; f++) {
    const size = Math.floor(pairs / k) + (f < pairs % k ? 1 : 0);
    folds.push(Array.from({ length: size }, (_, j) => start + j));
    start += size;
  }
  return folds;
}

/** Threshold where FAR on `idx` reaches `target`, by linear interpolation of FAR(threshold). */
function thresholdForFar(dist: ArrayLike<number>, issame: ArrayLike<boolean>, idx: number[], target: number, thresholds: number[]): number {
  const fars = thresholds.map((t) => rates(dist, issame, t, idx).fpr);
  // insightface: threshold 0 when the target FAR is never reached on the training folds.
  if (Math.max(...fars) < target) return 0;
  // insightface: interp1d(far_train, thresholds). FAR is non-decreasing in the threshold and
  // mostly flat, so interp1d over its duplicates is ill-defined; we take the first crossing.
  for (let i = 1; i < thresholds.length; i++) {
    if (fars[i] >= target) {
      const [f0, f1] = [fars[i - 1], fars[i]];
      if (f1 === f0) return thresholds[i];
      return thresholds[i - 1] + ((target - f0) / (f1 - f0)) * (thresholds[i] - thresholds[i - 1]);
    }
  }
  return thresholds[0];
}

/** The insightface verification protocol on precomputed distances. */
export function evaluateDistances(dist: ArrayLike<number>, issame: ArrayLike<boolean>, o: VerificationOptions = {}): VerificationResult {
  const pairs = dist.length;
  if (issame.length !== pairs) throw new RangeError(`${pairs} distances but ${issame.length} labels`);
  const thresholds = grid(o.thresholdStep ?? 0.01);
  const farTarget = o.farTarget ?? 1e-3;
  const folds = foldIndices(pairs, o);
  const foldAccuracies: number[] = [];
  const chosen: number[] = [];
  const tars: number[] = [];
  const fars: number[] = [];
  const fine = grid(0.001);
  for (let f = 0; f < folds.length; f++) {
    const test = folds[f];
    const train = folds.filter((_, g) => g !== f).flat();
    let best = 0;
    let bestAcc = -1;
    for (const t of thresholds) {
      const acc = rates(dist, issame, t, train).acc;
      if (acc > bestAcc) {
        bestAcc = acc;
        best = t;
      }
    }
    chosen.push(best);
    foldAccuracies.push(rates(dist, issame, best, test).acc);
    const tFar = thresholdForFar(dist, issame, train, farTarget, fine);
    const r = rates(dist, issame, tFar, test);
    tars.push(r.tpr);
    fars.push(r.fpr);
  }
  const [accuracy, accuracyStd] = meanStd(foldAccuracies);
  const [tar, tarStd] = meanStd(tars);
  const roc = rocCurve(dist, issame);
  const { eer, threshold: eerThreshold } = equalErrorRate(roc);
  return {
    pairs,
    folds: folds.length,
    accuracy,
    accuracyStd,
    foldAccuracies,
    thresholds: chosen,
    tar,
    tarStd,
    far: meanStd(fars)[0],
    farTarget,
    roc,
    auc: areaUnder(roc),
    eer,
    eerThreshold,
  };
}

/** The fold of every pair, exactly as `evaluateDistances` splits them with the same options. */
export function pairFolds(pairs: number, o: VerificationOptions = {}): number[] {
  const fold = new Array<number>(pairs);
  foldIndices(pairs, o).forEach((idx, f) => {
    for (const i of idx) fold[i] = f;
  });
  return fold;
}

/**
 * Per-pair outcome of the protocol: pair i is right when (dist < the threshold chosen for its fold
 * on the other folds) agrees with issame — the same rule `rates` applies, so the mean of `correct`
 * over each fold is that fold's accuracy. This is what a paired test (McNemar) compares between
 * two models on the same pairs. `dist` and `o` must be those `result` was computed from; a
 * mismatch is refused rather than silently giving other numbers.
 */
export function pairCorrectness(
  dist: ArrayLike<number>,
  issame: ArrayLike<boolean>,
  result: Pick<VerificationResult, 'pairs' | 'thresholds' | 'foldAccuracies'>,
  o: VerificationOptions = {},
): { fold: number[]; correct: boolean[] } {
  const pairs = dist.length;
  if (issame.length !== pairs) throw new RangeError(`${pairs} distances but ${issame.length} labels`);
  if (result.pairs !== pairs) throw new RangeError(`pairCorrectness: ${pairs} distances for a result over ${result.pairs} pairs`);
  const fold = pairFolds(pairs, o);
  const k = result.thresholds.length;
  if (fold.some((f) => f >= k)) throw new RangeError(`pairCorrectness: the fold options give more folds than the result's ${k}`);
  const correct = fold.map((f, i) => dist[i] < result.thresholds[f] === issame[i]);
  // Same integer counts as `rates` (acc = right / max(1, size)), so the comparison is exact.
  const right = new Array<number>(k).fill(0);
  const size = new Array<number>(k).fill(0);
  fold.forEach((f, i) => {
    size[f]++;
    if (correct[i]) right[f]++;
  });
  for (let f = 0; f < k; f++) {
    const acc = right[f] / Math.max(1, size[f]);
    if (acc !== result.foldAccuracies[f])
      throw new RangeError(
        `pairCorrectness: fold ${f} scores ${acc} per pair but the result says ${result.foldAccuracies[f]}: other distances or fold options than the result's`,
      );
  }
  return { fold, correct };
}

/** Full-resolution ROC: one point per distinct distance (pairs with d < t are "same"). */
export function rocCurve(dist: ArrayLike<number>, issame: ArrayLike<boolean>): { threshold: number; tpr: number; fpr: number }[] {
  const order = Array.from({ length: dist.length }, (_, i) => i).sort((a, b) => dist[a] - dist[b]);
  let P = 0;
  for (let i = 0; i < issame.length; i++) if (issame[i]) P++;
  const N = dist.length - P;
  const points = [{ threshold: 0, tpr: 0, fpr: 0 }];
  let tp = 0;
  let fp = 0;
  for (let j = 0; j < order.length; j++) {
    const i = order[j];
    if (issame[i]) tp++;
    else fp++;
    // Emit once per distinct distance: ties move together.
    if (j === order.length - 1 || dist[order[j + 1]] !== dist[i]) {
      points.push({ threshold: dist[i], tpr: P ? tp / P : 0, fpr: N ? fp / N : 0 });
    }
  }
  return points;
}

export function areaUnder(roc: readonly { tpr: number; fpr: number }[]): number {
  let area = 0;
  for (let i = 1; i < roc.length; i++) area += ((roc[i].fpr - roc[i - 1].fpr) * (roc[i].tpr + roc[i - 1].tpr)) / 2;
  return area;
}

/** EER: where FAR = FRR (1 − TPR), interpolated between ROC points. */
export function equalErrorRate(roc: readonly { threshold: number; tpr: number; fpr: number }[]): { eer: number; threshold: number } {
  for (let i = 1; i < roc.length; i++) {
    const d0 = roc[i - 1].fpr - (1 - roc[i - 1].tpr);
    const d1 = roc[i].fpr - (1 - roc[i].tpr);
    if (d0 <= 0 && d1 >= 0) {
      const w = d1 === d0 ? 0 : -d0 / (d1 - d0);
      return {
        eer: roc[i - 1].fpr + w * (roc[i].fpr - roc[i - 1].fpr),
        threshold: roc[i - 1].threshold + w * (roc[i].threshold - roc[i - 1].threshold),
      };
    }
  }
  return { eer: 0.5, threshold: Number.NaN };
}

/** Embeddings in, the protocol out: `a[i]` and `b[i]` form pair i. */
export function evaluateVerification(
  a: Float32Array,
  b: Float32Array,
  dim: number,
  issame: ArrayLike<boolean>,
  o: VerificationOptions = {},
): VerificationResult {
  return evaluateDistances(pairDistances(a, b, dim), issame, o);
}
