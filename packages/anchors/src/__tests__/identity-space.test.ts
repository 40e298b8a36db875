import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@id3/core';
import {
  chooseK,
  fitIdentitySpace,
  fromWhitened,
  meanAndCovariance,
  randomUnitVectors,
  readIdentitySpace,
  requireSameIdentitySpace,
  symmetricEigen,
  toWhitened,
  writeIdentitySpace,
  type IdentitySpaceMap,
} from '../index';

const dot = (a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, n: number): number => {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
  return s;
};

/** A random orthonormal n×n basis (rows), by Gram–Schmidt on Gaussian rows. */
function randomRotation(n: number, rng: Rng): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) q[i * n + k] = rng.normal();
    for (let j = 0; j < i; j++) {
      const p = dot(q, i * n, q, j * n, n);
      for (let k = 0; k < n; k++) q[i * n + k] -= p * q[j * n + k];
    }
    const norm = Math.sqrt(dot(q, i * n, q, i * n, n));
    for (let k = 0; k < n; k++) q[i * n + k] /= norm;
  }
  return q;
}

/** Unit embeddings in a cone around e1 (|μ| ≈ 0.9), anisotropic spread: like a metric-learned teacher's. */
function coneEmbeddings(n: number, dim: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    x[i * dim] = 1;
    for (let a = 1; a < dim; a++) x[i * dim + a] = rng.normal() * (0.4 / a);
    const norm = Math.sqrt(dot(x, i * dim, x, i * dim, dim));
    for (let a = 0; a < dim; a++) x[i * dim + a] /= norm;
  }
  return x;
}

describe('symmetricEigen (cyclic Jacobi)', () => {
  it('solves [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, ±1)/√2', () => {
    const { values, vectors } = symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2);
    expect(values[0]).toBeCloseTo(3, 12);
    expect(values[1]).toBeCloseTo(1, 12);
    expect(Math.abs(vectors[0])).toBeCloseTo(Math.SQRT1_2, 12);
    expect(vectors[0] * vectors[1]).toBeCloseTo(0.5, 12); // same sign: (1, 1)
    expect(vectors[2] * vectors[3]).toBeCloseTo(-0.5, 12); // opposite: (1, −1)
  });

  it('A·v = λ·v and VᵀV = I on a random symmetric 24×24 matrix, values decreasing', () => {
    const n = 24;
    const rng = new Rng(3);
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = i; j < n; j++) {
        a[i * n + j] = rng.normal();
        a[j * n + i] = a[i * n + j];
      }
    const { values, vectors } = symmetricEigen(a, n);
    for (let i = 0; i < n; i++) {
      if (i > 0) expect(values[i]).toBeLessThanOrEqual(values[i - 1]);
      for (let r = 0; r < n; r++) expect(dot(a, r * n, vectors, i * n, n)).toBeCloseTo(values[i] * vectors[i * n + r], 10);
      for (let j = 0; j < n; j++) expect(dot(vectors, i * n, vectors, j * n, n)).toBeCloseTo(i === j ? 1 : 0, 12);
    }
  });

  it('refuses a non-symmetric matrix', () => {
    expect(() => symmetricEigen(Float64Array.from([1, 2, 3, 4]), 2)).toThrow(/not symmetric at \(0, 1\)/);
  });
});

describe('meanAndCovariance + symmetricEigen: a known covariance is recovered from samples', () => {
  it('μ, Σ = Qᵀ·diag(4, 1, 0.25, 0.01)·Q from 40,000 Gaussian samples', () => {
    const dim = 4;
    const lambda = [4, 1, 0.25, 0.01];
    const mu = [1, -2, 0.5, 0];
    const rng = new Rng(7);
    const q = randomRotation(dim, rng);
    const n = 40_000;
    const x = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) {
      const g = lambda.map((l) => Math.sqrt(l) * rng.normal());
      for (let a = 0; a < dim; a++) {
        let s = mu[a];
        for (let j = 0; j < dim; j++) s += q[j * dim + a] * g[j];
        x[i * dim + a] = s;
      }
    }
    const { mean, cov, count } = meanAndCovariance(x, dim);
    expect(count).toBe(n);
    mean.forEach((m, a) => expect(Math.abs(m - mu[a])).toBeLessThan(0.03));
    for (let a = 0; a < dim; a++)
      for (let b = 0; b < dim; b++) {
        let truth = 0;
        for (let j = 0; j < dim; j++) truth += q[j * dim + a] * lambda[j] * q[j * dim + b];
        expect(Math.abs(cov[a * dim + b] - truth)).toBeLessThan(0.06);
      }
    const { values, vectors } = symmetricEigen(cov, dim);
    values.forEach((v, j) => expect(Math.abs(v / lambda[j] - 1)).toBeLessThan(0.04));
    // Each eigenvector is the planted direction (up to sign).
    for (let j = 0; j < dim; j++) expect(Math.abs(dot(vectors, j * dim, q, j * dim, dim))).toBeGreaterThan(0.995);
  });

  it('uses only the listed rows when given', () => {
    const x = Float32Array.from([0, 0, 2, 2, 100, -100, 4, 4]);
    const { mean, cov, count } = meanAndCovariance(x, 2, [0, 1, 3]);
    expect(count).toBe(3);
    expect(Array.from(mean)).toEqual([2, 2]);
    expect(Array.from(cov)).toEqual([4, 4, 4, 4]);
  });
});

describe('chooseK', () => {
  const values = [4, 3, 2, 1]; // total 10
  it('keeps the fewest directions reaching the variance fraction', () => {
    expect(chooseK(values, { variance: 0.7 })).toBe(2);
    expect(chooseK(values, { variance: 0.71 })).toBe(3);
    expect(chooseK(values, { variance: 1 })).toBe(4);
    expect(chooseK(values, {})).toBe(4); // 0.95 by default
  });
  it('a fixed k wins; ill-conditioned directions are never kept', () => {
    expect(chooseK(values, { k: 1, variance: 0.99 })).toBe(1);
    expect(chooseK([1, 0.5, 1e-9], { variance: 1 })).toBe(2);
    expect(() => chooseK([1, 0.5, 1e-9], { k: 3 })).toThrow(/only 2 directions are well-conditioned/);
    expect(() => chooseK(values, { k: 5 })).toThrow(/k must be an integer in 1\.\.4/);
  });
});

describe('fitIdentitySpace, toWhitened, fromWhitened', () => {
  const dim = 12;
  const x = coneEmbeddings(6000, dim, 1);

  it('whitened coordinates of the fitting data have mean 0 and identity covariance; directions are unit', () => {
    const map = fitIdentitySpace(x, dim, { variance: 1 });
    expect(map.k).toBe(dim);
    expect(map.varianceKept).toBeCloseTo(1, 12);
    const w = toWhitened(map, x, false);
    const { mean, cov } = meanAndCovariance(w, map.k);
    mean.forEach((m) => expect(Math.abs(m)).toBeLessThan(1e-6));
    for (let a = 0; a < map.k; a++) for (let b = 0; b < map.k; b++) expect(cov[a * map.k + b]).toBeCloseTo(a === b ? 1 : 0, 4);
    const z = toWhitened(map, x.subarray(0, 50 * dim));
    for (let i = 0; i < 50; i++) expect(dot(z, i * map.k, z, i * map.k, map.k)).toBeCloseTo(1, 5);
  });

  it('round trip: backward(forward(f)) = f when every direction is kept', () => {
    const map = fitIdentitySpace(x, dim, { variance: 1 });
    const f = x.subarray(0, 200 * dim);
    const back = fromWhitened(map, toWhitened(map, f));
    for (let i = 0; i < f.length; i++) expect(back[i]).toBeCloseTo(f[i], 5);
  });

  it('round trip with k < dim: f comes back as its direction from μ within the kept subspace, on the sphere', () => {
    const map = fitIdentitySpace(x, dim, { k: 4 });
    expect(map.k).toBe(4);
    expect(map.varianceKept).toBeGreaterThan(0.5);
    expect(map.varianceKept).toBeLessThan(1);
    const f = x.subarray(0, 100 * dim);
    const back = fromWhitened(map, toWhitened(map, f));
    for (let i = 0; i < 100; i++) {
      // Expected: μ + t·P(f − μ), P the projection on the kept eigenvectors, t > 0 putting it on the sphere.
      const p = new Float64Array(dim);
      for (let j = 0; j < map.k; j++) {
        let c = 0;
        for (let a = 0; a < dim; a++) c += map.basis[j * dim + a] * (f[i * dim + a] - map.mean[a]);
        for (let a = 0; a < dim; a++) p[a] += c * map.basis[j * dim + a];
      }
      const dd = dot(p, 0, p, 0, dim);
      const md = dot(map.mean, 0, p, 0, dim);
      const mm = dot(map.mean, 0, map.mean, 0, dim);
      const t = (-md + Math.sqrt(md * md + dd * (1 - mm))) / dd;
      expect(dot(back, i * dim, back, i * dim, dim)).toBeCloseTo(1, 5);
      for (let a = 0; a < dim; a++) expect(back[i * dim + a]).toBeCloseTo(map.mean[a] + t * p[a], 5);
      // Points of the fitting set are close to their projection (most variance is kept).
      expect(dot(back, i * dim, f, i * dim, dim)).toBeGreaterThan(0.9);
    }
  });

  it('forward(backward(z)) = z for any whitened direction; backward points are unit teacher embeddings', () => {
    const map = fitIdentitySpace(x, dim, { k: 5 });
    const z = randomUnitVectors(300, map.k, new Rng(9));
    const y = fromWhitened(map, z);
    for (let i = 0; i < 300; i++) expect(dot(y, i * dim, y, i * dim, dim)).toBeCloseTo(1, 5);
    const again = toWhitened(map, y);
    for (let i = 0; i < z.length; i++) expect(again[i]).toBeCloseTo(z[i], 4);
  });

  it('Tammes-like spread in z lands in the data cone in teacher space (random unit vectors do not)', () => {
    const map = fitIdentitySpace(x, dim, { variance: 0.95 });
    const meanCosToMu = (e: Float32Array): number => {
      const norm = Math.hypot(...map.mean);
      let s = 0;
      for (let i = 0; i < e.length / dim; i++) s += dot(e, i * dim, map.mean, 0, dim) / norm;
      return (s * dim) / e.length;
    };
    const placed = fromWhitened(map, randomUnitVectors(500, map.k, new Rng(4)));
    const real = meanCosToMu(x);
    expect(Math.abs(meanCosToMu(placed) - real)).toBeLessThan(0.05);
    expect(meanCosToMu(randomUnitVectors(500, dim, new Rng(4)))).toBeLessThan(0.5);
  });

  it('refuses embeddings whose mean is not inside the unit ball', () => {
    expect(() => fitIdentitySpace(Float32Array.from([2, 0, 2, 0.1, 2, -0.1]), 2)).toThrow(/mean embedding has norm/);
  });
});

describe('the identity-space artefact', () => {
  const dim = 12;
  const x = coneEmbeddings(3000, dim, 2);
  const fit = (): IdentitySpaceMap => fitIdentitySpace(x, dim, { variance: 0.9 });
  const info = { teacher: 'faceapi-dlib-128', count: 3000, dataSha256: 'ab'.repeat(32), source: 'test cone', varianceTarget: 0.9 };

  it('round trip: the loaded map equals the written one (float32) and maps identically', () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-space-'));
    const map = fit();
    const written = writeIdentitySpace(dir, map, info);
    const loaded = readIdentitySpace(written.path, { teacher: 'faceapi-dlib-128', dim });
    expect(loaded.sha256).toBe(written.sha256);
    expect(loaded.header).toMatchObject({ format: 'id3-identity-space', version: 1, teacher: 'faceapi-dlib-128', dim, k: map.k });
    expect(loaded.header.fit).toEqual({ count: 3000, dataSha256: info.dataSha256, source: 'test cone' });
    expect(loaded.header.variance).toEqual({ kept: map.varianceKept, target: 0.9 });
    for (let i = 0; i < map.basis.length; i++) expect(loaded.map.basis[i]).toBeCloseTo(map.basis[i], 6);
    expect(Array.from(toWhitened(loaded.map, x.subarray(0, 10 * dim)))).toEqual(
      Array.from(toWhitened(written.map, x.subarray(0, 10 * dim))),
    );
  });

  it('refuses another format, version, teacher or dimension, naming the file and the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-space-'));
    const { path } = writeIdentitySpace(dir, fit(), info);
    expect(() => readIdentitySpace(path, { teacher: 'mobileface-256' })).toThrow(
      new RegExp(`${path}: field 'teacher': fitted on 'faceapi-dlib-128' embeddings, but this run's teacher is 'mobileface-256'`),
    );
    expect(() => readIdentitySpace(path, { dim: 128 })).toThrow(new RegExp(`${path}: field 'dim': .*12-d.*128-d`));
    const header = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const variant = (name: string, patch: Record<string, unknown>): string => {
      const p = join(dir, `${name}.json`);
      writeFileSync(p, JSON.stringify({ ...header, ...patch }));
      return p;
    };
    const other = variant('other-format', { format: 'id3-tensor/1' });
    expect(() => readIdentitySpace(other)).toThrow(new RegExp(`${other}: field 'format': expected 'id3-identity-space'`));
    const v2 = variant('v2', { version: 2 });
    expect(() => readIdentitySpace(v2)).toThrow(new RegExp(`${v2}: field 'version'`));
    const badK = variant('bad-k', { k: 99 });
    expect(() => readIdentitySpace(badK)).toThrow(new RegExp(`${badK}: field 'k'`));
    const wrongMap = variant('wrong-map', { map: { file: 'identity-space-map.json', sha256: '00'.repeat(32) } });
    expect(() => readIdentitySpace(wrongMap)).toThrow(new RegExp(`${wrongMap}: field 'map.sha256'`));
  });

  it('refuses a corrupted map (the tensor file hash)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-space-'));
    const { path } = writeIdentitySpace(dir, fit(), info);
    const bin = join(dir, 'identity-space-map.bin');
    const bytes = readFileSync(bin);
    bytes[5] ^= 0xff;
    writeFileSync(bin, bytes);
    expect(() => readIdentitySpace(path)).toThrow(/identity-space-map\.bin: content hash does not match/);
  });

  it('requireSameIdentitySpace refuses data recorded under another artefact', () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-space-'));
    const space = writeIdentitySpace(dir, fit(), info);
    expect(() => requireSameIdentitySpace(space.sha256, '/x/anchors-whitened.json', space)).not.toThrow();
    expect(() => requireSameIdentitySpace('f00', '/x/anchors-whitened.json', space)).toThrow(
      /\/x\/anchors-whitened\.json: made in identity space "f00", but this run's identity space is [0-9a-f]{64}/,
    );
  });
});
