import { Rng, initBackend } from '@id3/core';
import { nearestNeighbours, pairwiseStats, randomUnitVectors, tammesAnchors } from '../index';
import { tf } from '@id3/core';

// Exact (all-pairs) settings for tiny N on S²: every other point is a neighbour.
const onSphere = (n: number) => ({
  n,
  dim: 3,
  seed: 0,
  iterations: 2000,
  refreshEvery: 1_000_000,
  stepStart: 0.1,
  stepEnd: 1e-4,
  sharpnessStart: 10,
  sharpnessEnd: 3000,
});

describe('tammesAnchors on S² (known optima)', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it.each([
    [4, 109.4712], // tetrahedron: arccos(-1/3)
    [6, 90], // octahedron
    [12, 63.4349], // icosahedron: arctan(2)
  ])('N = %i reaches the optimum %f° within 0.05°', async (n, optimum) => {
    const { points } = await tammesAnchors(onSphere(n));
    expect(Math.abs(pairwiseStats(points, n, 3).minAngleDeg - optimum)).toBeLessThan(0.05);
  });

  it('N = 24 reaches at least 43.5° (optimum 43.69°, snub cube)', async () => {
    const { points } = await tammesAnchors(onSphere(24));
    expect(pairwiseStats(points, 24, 3).minAngleDeg).toBeGreaterThanOrEqual(43.5);
  });

  it('returns unit vectors, deterministically for a seed', async () => {
    const opts = { n: 300, dim: 16, seed: 3, iterations: 60, neighbours: 8, refreshEvery: 10 };
    const a = await tammesAnchors(opts);
    const b = await tammesAnchors(opts);
    const c = await tammesAnchors({ ...opts, seed: 4 });
    expect(Array.from(a.points)).toEqual(Array.from(b.points));
    expect(Array.from(a.points)).not.toEqual(Array.from(c.points));
    for (let i = 0; i < 300; i++) {
      let s = 0;
      for (let k = 0; k < 16; k++) s += a.points[i * 16 + k] ** 2;
      expect(Math.abs(Math.sqrt(s) - 1)).toBeLessThan(1e-5);
    }
  });

  it('the k-nearest version beats random points by a wide margin in high dimension', async () => {
    const n = 1000;
    const dim = 64;
    const random = pairwiseStats(randomUnitVectors(n, dim, new Rng(0)), n, dim);
    const { points } = await tammesAnchors({ n, dim, seed: 0, iterations: 100, neighbours: 16, refreshEvery: 10 });
    const tammes = pairwiseStats(points, n, dim);
    expect(tammes.minAngleDeg).toBeGreaterThan(random.minAngleDeg + 10);
    expect(tammes.meanNearestCos).toBeLessThan(random.meanNearestCos);
  });

  it('a run resumed from a checkpoint ends exactly where an uninterrupted run ends', async () => {
    const opts = { n: 200, dim: 8, seed: 1, iterations: 40, neighbours: 8, refreshEvery: 10 };
    const straight = await tammesAnchors(opts);
    const saved: { step: number; points: Float32Array }[] = [];
    await tammesAnchors(opts, {
      checkpoint: { every: 20, save: (step, points) => void saved.push({ step, points: Float32Array.from(points) }) },
    });
    expect(saved.map((s) => s.step)).toEqual([20]);
    const resumed = await tammesAnchors(opts, { resume: saved[0] });
    expect(Array.from(resumed.points)).toEqual(Array.from(straight.points));
  });

  it('zero iterations return the seeded Gaussian start, normalised (the random-anchors baseline)', async () => {
    // Table 1's random-anchors row sets anchors.iterations = 0: its anchors must be exactly the
    // random unit vectors the Tammes run would have started from, and never moved.
    const { points, last } = await tammesAnchors({ n: 50, dim: 8, seed: 7, iterations: 0 });
    expect(last).toBeUndefined();
    expect(Array.from(points)).toEqual(Array.from(randomUnitVectors(50, 8, new Rng(7))));
    const moved = await tammesAnchors({ n: 50, dim: 8, seed: 7, iterations: 5 });
    expect(pairwiseStats(moved.points, 50, 8).minAngleDeg).toBeGreaterThan(pairwiseStats(points, 50, 8).minAngleDeg);
  });

  it('does not leak tensors across steps', async () => {
    const before = tf.memory().numTensors;
    await tammesAnchors({ n: 100, dim: 8, seed: 0, iterations: 25, neighbours: 8, refreshEvery: 5 });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects nonsense sizes', async () => {
    await expect(tammesAnchors({ n: 1, dim: 3, seed: 0, iterations: 1 })).rejects.toThrow(/n must be an integer ≥ 2/);
  });
});

describe('neighbour lists and pairwise statistics (against brute force)', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  const n = 150;
  const dim = 5;
  const x = randomUnitVectors(n, dim, new Rng(9));
  const cos = (i: number, j: number) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += x[i * dim + k] * x[j * dim + k];
    return s;
  };

  it('nearestNeighbours finds the true k nearest other points, block by block', () => {
    const k = 4;
    const t = tf.tensor2d(x, [n, dim]);
    const idx = nearestNeighbours(t, k, 32);
    t.dispose();
    for (let i = 0; i < n; i++) {
      const brute = Array.from({ length: n }, (_, j) => j)
        .filter((j) => j !== i)
        .sort((a, b) => cos(i, b) - cos(i, a))
        .slice(0, k);
      expect(new Set(idx.subarray(i * k, (i + 1) * k))).toEqual(new Set(brute));
    }
  });

  it('pairwiseStats matches a brute-force scan', () => {
    const s = pairwiseStats(x, n, dim, { bins: 10, blockRows: 37 });
    let max = -Infinity;
    let sum = 0;
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++) {
        max = Math.max(max, cos(i, j));
        sum += cos(i, j);
      }
    expect(s.maxCos).toBeCloseTo(max, 5);
    expect(s.meanCos).toBeCloseTo(sum / ((n * (n - 1)) / 2), 5);
    expect(s.histogram.reduce((a, b) => a + b, 0)).toBe((n * (n - 1)) / 2);
    expect(s.minAngleDeg).toBeCloseTo((Math.acos(max) * 180) / Math.PI, 3);
  });
});
