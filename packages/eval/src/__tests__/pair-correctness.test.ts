import { Rng } from '@id3/core';
import { evaluateDistances, pairCorrectness, pairFolds } from '../index';

/** Mean of `correct` per fold, as the protocol divides: right / max(1, fold size). */
function foldMeans(fold: readonly number[], correct: readonly boolean[], k: number): number[] {
  const right = new Array<number>(k).fill(0);
  const size = new Array<number>(k).fill(0);
  fold.forEach((f, i) => {
    size[f]++;
    if (correct[i]) right[f]++;
  });
  return right.map((r, f) => r / Math.max(1, size[f]));
}

describe('pairCorrectness (per-pair outcomes of the protocol)', () => {
  // The hand-computed case of verification.test.ts: 10 folds of {genuine at 0.2, impostor at 1.0},
  // except fold 3's impostor at 0.1. Every fold's threshold is 0.21, so only pair 7 (fold 3's
  // impostor, called "same") is wrong: fold accuracies [1, 1, 1, 0.5, 1, …].
  const dist = new Float64Array(20);
  const issame: boolean[] = [];
  for (let f = 0; f < 10; f++) {
    dist[2 * f] = 0.2;
    issame.push(true);
    dist[2 * f + 1] = f === 3 ? 0.1 : 1.0;
    issame.push(false);
  }

  it('hand-computed 20-pair case: only pair 7 is wrong; per-fold means = foldAccuracies', () => {
    const r = evaluateDistances(dist, issame);
    const { fold, correct } = pairCorrectness(dist, issame, r);
    expect(fold).toEqual(Array.from({ length: 20 }, (_, i) => Math.floor(i / 2)));
    expect(correct).toEqual(Array.from({ length: 20 }, (_, i) => i !== 7));
    expect(foldMeans(fold, correct, r.folds)).toEqual(r.foldAccuracies);
    expect(r.foldAccuracies).toEqual([1, 1, 1, 0.5, 1, 1, 1, 1, 1, 1]);
  });

  it('KFold with uneven folds: the first pairs % k folds get one extra pair (sklearn)', () => {
    expect(pairFolds(7, { folds: 3 })).toEqual([0, 0, 0, 1, 1, 2, 2]);
    expect(pairFolds(4, { foldOf: [1, 0, 1, 0] })).toEqual([1, 0, 1, 0]);
  });

  it('noisy distances, interleaved benchmark folds: per-fold means reproduce foldAccuracies exactly', () => {
    const n = 600;
    const rng = new Rng(3);
    const same = Array.from({ length: n }, (_, i) => i % 3 !== 0);
    // Overlapping genuine/impostor distances, so every fold has errors and its own threshold.
    const d = Float64Array.from(same, (s) => Math.min(4, Math.max(0, (s ? 0.9 : 1.5) + 0.4 * rng.normal())));
    const foldOf = Array.from({ length: n }, (_, i) => (i * 7) % 10);
    const r = evaluateDistances(d, same, { foldOf });
    const { fold, correct } = pairCorrectness(d, same, r, { foldOf });
    expect(fold).toEqual(foldOf);
    expect(foldMeans(fold, correct, r.folds)).toEqual(r.foldAccuracies);
    expect(r.foldAccuracies.some((a) => a < 1)).toBe(true);
    const overall = correct.filter(Boolean).length / n; // equal folds of 60: the mean of fold means
    expect(overall).toBeCloseTo(r.accuracy, 12);
  });

  it('refuses distances or fold options other than the result was computed with', () => {
    const n = 600;
    const rng = new Rng(4);
    const same = Array.from({ length: n }, (_, i) => i % 2 === 0);
    const d = Float64Array.from(same, (s) => Math.min(4, Math.max(0, (s ? 0.9 : 1.5) + 0.4 * rng.normal())));
    const foldOf = Array.from({ length: n }, (_, i) => (i * 7) % 10);
    const r = evaluateDistances(d, same, { foldOf });
    expect(() => pairCorrectness(d, same, r)).toThrow(/other distances or fold options/);
    expect(() => pairCorrectness(d.subarray(1), same.slice(1), r, { foldOf: foldOf.slice(1) })).toThrow(RangeError);
    expect(() => pairCorrectness(d, same.slice(1), r, { foldOf })).toThrow(/600 distances but 599 labels/);
  });
});
