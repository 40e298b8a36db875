import { Rng } from '@id3/core';
import { teacherCalibration, thresholdAtFar } from '@id3/faces';
import {
  drawVerificationPairs,
  flagLeakingIdentities,
  flaggedAbove,
  fractionAtLeast,
  identityLeakage,
  nearestNeighbours,
  quantile,
  summarise,
  unitRows,
} from '../leakage';

function randomRows(n: number, dim: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n * dim }, () => rng.normal());
}

describe('nearestNeighbours', () => {
  it('matches a brute-force search, including a last block of fewer than four queries', () => {
    const rng = new Rng(1);
    const dim = 9;
    const q = randomRows(7, dim, rng);
    const b = randomRows(13, dim, rng);
    const nn = nearestNeighbours(q, b, dim);
    const qu = unitRows(q, dim);
    const bu = unitRows(b, dim);
    for (let i = 0; i < 7; i++) {
      let best = -Infinity;
      let arg = -1;
      for (let j = 0; j < 13; j++) {
        let s = 0;
        for (let k = 0; k < dim; k++) s += qu[i * dim + k] * bu[j * dim + k];
        if (s > best) [best, arg] = [s, j];
      }
      expect(nn.index[i]).toBe(arg);
      expect(nn.cosine[i]).toBeCloseTo(best, 5);
    }
  });

  it('gives index -1 and NaN against an empty base', () => {
    const nn = nearestNeighbours(new Float32Array([1, 0]), new Float32Array(0), 2);
    expect(Array.from(nn.index)).toEqual([-1]);
    expect(Number.isNaN(nn.cosine[0])).toBe(true);
  });
});

describe('leakage on a hand-built case', () => {
  // Training faces are the axes e0 and e1 of R^4.
  const training = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0]);
  const s = Math.SQRT1_2;
  // Identity 0: a copy of training face 0 (scaled: rows are normalised) and an orthogonal image.
  // Identity 1: only directions orthogonal to every training face. Identity 2: 60° from e1.
  const embeddings = new Float32Array([2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, s, s, 0, 0.5, Math.sqrt(3) / 2, 0]);
  const labels = new Int32Array([0, 0, 1, 1, 2]);

  it('flags the identity equal to a training face and not the orthogonal ones', () => {
    const flags = flagLeakingIdentities({ embeddings, labels, dim: 4, identities: 3 }, training, 0.9);
    expect(flags.flagged).toEqual([0]);
    expect(flags.maxCosine[0]).toBeCloseTo(1, 6);
    expect(flags.image[0]).toBe(0);
    expect(flags.training[0]).toBe(0);
    expect(flags.maxCosine[1]).toBeCloseTo(0, 6);
    expect(flags.maxCosine[2]).toBeCloseTo(0.5, 6);
    expect(flags.training[2]).toBe(1);
    expect(Array.from(flags.perImage.index)).toEqual([0, 0, 0, 0, 1]);
  });

  it('flags at the threshold itself (cos ≥ threshold), most similar first', () => {
    const flags = flagLeakingIdentities({ embeddings, labels, dim: 4, identities: 3 }, training, 0.5);
    expect(flags.flagged).toEqual([0, 2]);
    expect(flaggedAbove([0.2, Number.NaN, 0.9, 0.7], 0.7)).toEqual([2, 3]);
  });

  it('leaves an identity without images at NaN and -1', () => {
    const leak = identityLeakage({ index: new Int32Array([1]), cosine: new Float32Array([0.3]) }, new Int32Array([1]), 2);
    expect(Number.isNaN(leak.maxCosine[0])).toBe(true);
    expect(leak.image[0]).toBe(-1);
    expect(leak.maxCosine[1]).toBeCloseTo(0.3, 6);
  });
});

describe('summaries', () => {
  it('computes quantiles as numpy (linear) and skips NaN', () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBeCloseTo(2.5, 12);
    expect(quantile([1, 2, 3, 4], 0.95)).toBeCloseTo(3.85, 12);
    expect(summarise([1, Number.NaN, 3])).toEqual({ count: 2, mean: 2, median: 2, p95: 2.9, max: 3 });
    expect(fractionAtLeast([0.1, 0.5, 0.9, Number.NaN], 0.5)).toBeCloseTo(2 / 3, 12);
  });
});

describe('drawVerificationPairs', () => {
  function check(labels: Int32Array, p: ReturnType<typeof drawVerificationPairs>): void {
    const keys = new Set<string>();
    for (let i = 0; i < p.a.length; i++) {
      expect(p.a[i]).toBeLessThan(p.b[i]); // never an image with itself, unordered
      expect(p.same[i]).toBe(labels[p.a[i]] === labels[p.b[i]]);
      keys.add(`${p.a[i]},${p.b[i]}`);
    }
    expect(keys.size).toBe(p.a.length);
  }

  it('takes every pair of a small set', () => {
    const labels = new Int32Array([0, 0, 0, 1, 1, 2]);
    const p = drawVerificationPairs(labels, 100, 100, 7);
    expect(p.available).toEqual({ same: 4, different: 11 });
    expect(p.same.filter(Boolean).length).toBe(4);
    expect(p.same.filter((x) => !x).length).toBe(11);
    check(labels, p);
  });

  it('draws the requested counts from a large set, balanced over folds and deterministic for a seed', () => {
    const labels = Int32Array.from({ length: 5000 }, (_, i) => Math.floor(i / 10)); // 500 × 10
    const p = drawVerificationPairs(labels, 3000, 3000, 42);
    expect(p.available).toEqual({ same: 500 * 45, different: (5000 * 4999) / 2 - 500 * 45 });
    expect(p.same.filter(Boolean).length).toBe(3000);
    expect(p.same.filter((x) => !x).length).toBe(3000);
    check(labels, p);
    for (let f = 0; f < 10; f++) {
      expect(p.same.filter((s, i) => s && p.fold[i] === f).length).toBe(300);
      expect(p.same.filter((s, i) => !s && p.fold[i] === f).length).toBe(300);
    }
    const again = drawVerificationPairs(labels, 3000, 3000, 42);
    expect(Array.from(again.a)).toEqual(Array.from(p.a));
    expect(Array.from(again.b)).toEqual(Array.from(p.b));
    const other = drawVerificationPairs(labels, 3000, 3000, 43);
    expect(Array.from(other.a)).not.toEqual(Array.from(p.a));
  });

  it('draws nothing of a kind the set does not have', () => {
    const p = drawVerificationPairs(new Int32Array([0, 1, 2]), 10, 10, 1);
    expect(p.available.same).toBe(0);
    expect(p.same).toEqual([false, false, false]);
  });
});

describe('teacher calibration', () => {
  it('puts the FAR threshold halfway between the k-th and (k+1)-th highest impostor cosines', () => {
    const impostors = Array.from({ length: 3000 }, (_, i) => i / 3000); // highest 2999/3000, 2998/3000, …
    const genuine = [0.5, 0.99, 0.9995, 1];
    const t = thresholdAtFar(impostors, genuine, 1e-3);
    expect(t.cosine).toBeCloseTo((2997 / 3000 + 2996 / 3000) / 2, 12);
    expect(t.falseAccepts).toBe(3);
    expect(t.far).toBeCloseTo(1e-3, 12);
    expect(t.tar).toBeCloseTo(0.5, 12);
    expect(t.bracket).toEqual({ accepted: 2997 / 3000, rejected: 2996 / 3000 });
  });

  it('returns undefined for a teacher never calibrated', () => {
    expect(teacherCalibration('no-such-teacher')).toBeUndefined();
    expect(teacherCalibration('toString')).toBeUndefined();
  });

  it('has the default teacher calibrated on LFW View 2', () => {
    const c = teacherCalibration('faceapi-dlib-128');
    expect(c).toBeDefined();
    expect(c!.differentPairs).toBe(3000);
    expect(c!.cosine).toBeGreaterThan(0);
    expect(c!.cosine).toBeLessThan(1);
    expect(c!.squaredL2).toBeCloseTo(2 - 2 * c!.cosine, 10);
  });
});
