import { Rng } from '@id3/core';
import { randomUnitVectors, sampleIdentities } from '../index';

describe('sampleIdentities (Algorithm 3, step 2)', () => {
  const dim = 32;
  const n = 20;
  const anchors = randomUnitVectors(n, dim, new Rng(2));

  it.each([
    [0.5, 0.7],
    [0.7, 0.9],
  ])('every y_ij is a unit vector with cos(y_ij, w_i) in [%f, %f]', (lb, ub) => {
    const m = 50;
    const ids = sampleIdentities(anchors, dim, { m, lb, ub, seed: 1 });
    expect(ids.embeddings.length).toBe(n * m * dim);
    let lo = Infinity;
    let hi = -Infinity;
    for (let r = 0; r < n * m; r++) {
      const label = ids.labels[r];
      expect(label).toBe(Math.floor(r / m));
      let c = 0;
      let norm = 0;
      for (let k = 0; k < dim; k++) {
        c += ids.embeddings[r * dim + k] * anchors[label * dim + k];
        norm += ids.embeddings[r * dim + k] ** 2;
      }
      expect(Math.abs(Math.sqrt(norm) - 1)).toBeLessThan(1e-5);
      expect(c).toBeGreaterThanOrEqual(lb - 1e-5);
      expect(c).toBeLessThanOrEqual(ub + 1e-5);
      expect(Math.abs(c - ids.anchorCos[r])).toBeLessThan(1e-4);
      lo = Math.min(lo, c);
      hi = Math.max(hi, c);
    }
    // Uniform in the band: both ends are reached.
    expect(lo).toBeLessThan(lb + 0.02);
    expect(hi).toBeGreaterThan(ub - 0.02);
  });

  it('the orthogonal parts point in all directions (their mean is near zero)', () => {
    const m = 2000;
    const ids = sampleIdentities(anchors.subarray(0, dim), dim, { m, lb: 0.6, ub: 0.6, seed: 3 });
    const mean = new Float64Array(dim);
    for (let r = 0; r < m; r++) for (let k = 0; k < dim; k++) mean[k] += (ids.embeddings[r * dim + k] - 0.6 * anchors[k]) / m;
    for (let k = 0; k < dim; k++) expect(Math.abs(mean[k])).toBeLessThan(0.05);
  });

  it('is deterministic for a seed', () => {
    const a = sampleIdentities(anchors, dim, { m: 3, lb: 0.5, ub: 0.7, seed: 9 });
    const b = sampleIdentities(anchors, dim, { m: 3, lb: 0.5, ub: 0.7, seed: 9 });
    expect(Array.from(a.embeddings)).toEqual(Array.from(b.embeddings));
  });

  it('rejects an empty or inverted band', () => {
    expect(() => sampleIdentities(anchors, dim, { m: 1, lb: 0.9, ub: 0.5, seed: 0 })).toThrow(/lb ≤ ub/);
    expect(() => sampleIdentities(anchors, dim, { m: 0, lb: 0.5, ub: 0.7, seed: 0 })).toThrow(/m must be/);
  });
});
