import { Rng } from '@id3/core';
import { evaluateDistances, evaluateVerification, pairDistances, rocCurve } from '../index';

describe('evaluateVerification (insightface protocol)', () => {
  it('perfectly separable embeddings → 100%, AUC 1, EER 0', () => {
    const dim = 8;
    const n = 600;
    const rng = new Rng(1);
    const a = rng.fillNormal(new Float32Array(n * dim));
    const b = rng.fillNormal(new Float32Array(n * dim)); // impostors: independent directions
    const issame: boolean[] = [];
    for (let i = 0; i < n; i++) {
      const same = i % 2 === 0;
      issame.push(same);
      // genuine: the same direction at another scale (normalised away) plus a little noise
      if (same) for (let k = 0; k < dim; k++) b[i * dim + k] = a[i * dim + k] * 3 + 1e-3 * b[i * dim + k];
    }
    const r = evaluateVerification(a, b, dim, issame);
    expect(r.accuracy).toBe(1);
    expect(r.accuracyStd).toBe(0);
    expect(r.auc).toBeCloseTo(1, 12);
    expect(r.eer).toBeCloseTo(0, 12);
    expect(r.tar).toBe(1);
    expect(r.folds).toBe(10);
  });

  it('random embeddings → near 50%, AUC near 0.5', () => {
    const dim = 16;
    const n = 6000;
    const rng = new Rng(2);
    const a = rng.fillNormal(new Float32Array(n * dim));
    const b = rng.fillNormal(new Float32Array(n * dim));
    const issame = Array.from({ length: n }, (_, i) => i % 2 === 0);
    const r = evaluateVerification(a, b, dim, issame);
    expect(Math.abs(r.accuracy - 0.5)).toBeLessThan(0.03);
    expect(Math.abs(r.auc - 0.5)).toBeLessThan(0.03);
    expect(r.tar).toBeLessThan(0.02);
  });

  // Hand-computed: 10 folds of 2 pairs {genuine, impostor}. Genuines at squared distance 0.2;
  // impostors at 1.0 except fold 3's, at 0.1 (closer than every genuine).
  //  - Train folds without the stray impostor: any t ∈ (0.2, 1.0] is perfect; the first grid
  //    value is 0.21. With it (17/18 at best), again first best t = 0.21.
  //  - Test: folds ≠ 3 score 1.0; fold 3 calls its impostor "same" → 0.5.
  //    mean 0.95, std sqrt((9·0.05² + 0.45²)/10) = 0.15.
  //  - TAR@FAR=1e-3: folds ≠ 3 train on FAR(t) = 0 up to t = 0.100 and 1/9 from 0.101, so
  //    t ≈ 0.10001 < 0.2 → TAR 0; fold 3 trains on impostors at 1.0 only → t ≈ 1.000001 → TAR 1
  //    (and FAR 1). TAR 0.1 ± 0.3, FAR 0.1.
  //  - ROC over all 20: (0,0) → (0.1,0) → (0.1,1) → (1,1): AUC 0.9; EER 0.1 at t = 0.19.
  const dist = new Float64Array(20);
  const issame: boolean[] = [];
  for (let f = 0; f < 10; f++) {
    dist[2 * f] = 0.2;
    issame.push(true);
    dist[2 * f + 1] = f === 3 ? 0.1 : 1.0;
    issame.push(false);
  }

  it('hand-computed 20-pair case: threshold search, accuracy, TAR@FAR, ROC, AUC, EER', () => {
    const r = evaluateDistances(dist, issame);
    expect(r.thresholds).toEqual(Array(10).fill(0.21));
    expect(r.foldAccuracies).toEqual([1, 1, 1, 0.5, 1, 1, 1, 1, 1, 1]);
    expect(r.accuracy).toBeCloseTo(0.95, 12);
    expect(r.accuracyStd).toBeCloseTo(0.15, 12);
    expect(r.tar).toBeCloseTo(0.1, 12);
    expect(r.tarStd).toBeCloseTo(0.3, 12);
    expect(r.far).toBeCloseTo(0.1, 12);
    expect(r.auc).toBeCloseTo(0.9, 12);
    expect(r.eer).toBeCloseTo(0.1, 12);
    expect(r.eerThreshold).toBeCloseTo(0.19, 12);
    expect(rocCurve(dist, issame)).toEqual([
      { threshold: 0, tpr: 0, fpr: 0 },
      { threshold: 0.1, tpr: 0, fpr: 0.1 },
      { threshold: 0.2, tpr: 1, fpr: 0.1 },
      { threshold: 1.0, tpr: 1, fpr: 1 },
    ]);
  });

  it('benchmark-defined folds (foldOf) are honoured', () => {
    // Put the stray impostor's fold next to a clean fold: fold ids by pair.
    const foldOf = Array.from({ length: 20 }, (_, i) => (i < 4 ? 0 : 1 + Math.floor((i - 4) / 2)));
    const r = evaluateDistances(dist, issame, { foldOf });
    expect(r.folds).toBe(9);
    expect(r.foldAccuracies[0]).toBe(1);
  });

  it('squared L2 of normalised embeddings lies in [0, 4]; mismatched shapes are refused', () => {
    const d = pairDistances(Float32Array.from([1, 0, 0, 2]), Float32Array.from([-1, 0, 0, 5]), 2);
    expect(Array.from(d)).toEqual([4, 0]);
    expect(() => pairDistances(new Float32Array(4), new Float32Array(6), 2)).toThrow(/do not form/);
    expect(() => evaluateDistances([0.1, 0.2], [true])).toThrow(/2 distances but 1 labels/);
  });
});
