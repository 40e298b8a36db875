import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InvalidInputError, readTensorFile, sha256, writeJsonAtomic, writeTensorFile } from '@id3/core';

/**
 * The identity space: a truncated whitening of the teacher's embeddings (our adaptation of ID³,
 * see ID3-METHOD.md "The identity space"). A metric-learned teacher such as dlib's puts every
 * real face in a narrow cone, so Tammes anchors spread over its whole sphere are nobody. In the
 * whitened coordinates w = Λ^{-1/2}·Vᵀ·(f − μ) (V, Λ: the leading k eigenvectors and eigenvalues
 * of the embeddings' covariance) real faces of different people point in unrelated directions,
 * which is what Tammes placement assumes.
 *
 *   forward  f (teacher sphere) → z = normalize(w), a unit vector in R^k
 *   backward z → the point where the ray μ + t·V·Λ^{1/2}·z (t > 0) meets the teacher's unit
 *            sphere: a real face lies on that sphere, so this is where a face whose whitened
 *            direction is z sits (μ is inside the ball: a mean of unit vectors).
 *
 * backward(forward(f)) = f for every f whose offset from μ lies in the kept subspace, and
 * forward(backward(z)) = z for every unit z.
 */
export interface IdentitySpaceMap {
  /** The teacher's embedding size. */
  readonly dim: number;
  /** Kept directions. */
  readonly k: number;
  /** μ, [dim]. */
  readonly mean: Float64Array;
  /** The kept eigenvectors as rows, [k, dim], by decreasing eigenvalue. */
  readonly basis: Float64Array;
  /** Every eigenvalue of the covariance, decreasing, [dim]. */
  readonly eigenvalues: Float64Array;
  /** Fraction of the total variance in the kept directions. */
  readonly varianceKept: number;
}

/** How many directions to keep: a fixed k, or the fewest reaching a fraction of the variance. */
export interface KeepOptions {
  readonly k?: number;
  readonly variance?: number;
  /**
   * Directions whose eigenvalue is below this fraction of the largest are never kept: whitening
   * would divide by ~0 and blow up noise (rank deficiency, float rounding).
   */
  readonly conditionFloor?: number;
}

export const IDENTITY_SPACE_FORMAT = 'id3-identity-space';
export const IDENTITY_SPACE_VERSION = 1;
const DEFAULT_VARIANCE = 0.95;
const DEFAULT_CONDITION_FLOOR = 1e-6;

/** Mean and sample covariance (float64) of the rows of x ([n, dim]), or of `rows` only. */
export function meanAndCovariance(
  x: Float32Array,
  dim: number,
  rows?: ArrayLike<number>,
): { mean: Float64Array; cov: Float64Array; count: number } {
  const pick = rows ?? { length: x.length / dim };
  const index = (i: number): number => (rows ? rows[i] : i);
  const count = pick.length;
  if (count < 2) throw new RangeError(`identity space: need at least 2 embeddings, got ${count}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < count; i++) {
    const o = index(i) * dim;
    for (let a = 0; a < dim; a++) mean[a] += x[o + a];
  }
  for (let a = 0; a < dim; a++) mean[a] /= count;
  // Upper triangle accumulated on centred rows (two passes: no catastrophic cancellation).
  const cov = new Float64Array(dim * dim);
  const c = new Float64Array(dim);
  for (let i = 0; i < count; i++) {
    const o = index(i) * dim;
    for (let a = 0; a < dim; a++) c[a] = x[o + a] - mean[a];
    for (let a = 0; a < dim; a++) {
      const ca = c[a];
      const row = a * dim;
      for (let b = a; b < dim; b++) cov[row + b] += ca * c[b];
    }
  }
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b] / (count - 1);
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
  }
  return { mean, cov, count };
}

/**
 * Eigen-decomposition of a symmetric n×n matrix (row-major) by cyclic Jacobi rotations, in
 * float64: values decreasing, vectors as rows (row i belongs to values[i]), orthonormal.
 * Jacobi is slower than QR for large n but simple and accurate to the last digits; at the
 * teacher's 128 or 512 dimensions it takes milliseconds to a second.
 */
export function symmetricEigen(
  matrix: Float64Array,
  n: number,
  opts: { maxSweeps?: number } = {},
): { values: Float64Array; vectors: Float64Array; sweeps: number } {
  if (matrix.length !== n * n) throw new RangeError(`symmetricEigen: ${matrix.length} values are not ${n}×${n}`);
  const a = Float64Array.from(matrix);
  for (let p = 0; p < n; p++) {
    for (let q = p + 1; q < n; q++) {
      const x = a[p * n + q];
      const y = a[q * n + p];
      if (Math.abs(x - y) > 1e-9 * (Math.abs(x) + Math.abs(y) + 1e-300))
        throw new RangeError(`symmetricEigen: matrix is not symmetric at (${p}, ${q}): ${x} vs ${y}`);
    }
  }
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const maxSweeps = opts.maxSweeps ?? 100;
  let sweeps = 0;
  for (; sweeps < maxSweeps; sweeps++) {
    let off = 0;
    let diag = 0;
    for (let p = 0; p < n; p++) {
      diag += a[p * n + p] ** 2;
      for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        // The rotation that zeroes a[p][q] (Numerical Recipes' jacobi, smaller of the two angles).
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  // Columns of v are the eigenvectors; return them as rows, by decreasing eigenvalue.
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j] - a[i * n + i]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((col, row) => {
    values[row] = a[col * n + col];
    for (let k = 0; k < n; k++) vectors[row * n + k] = v[k * n + col];
  });
  return { values, vectors, sweeps };
}

/** Number of directions to keep (see KeepOptions); at least 1. */
export function chooseK(eigenvalues: ArrayLike<number>, opts: KeepOptions = {}): number {
  const n = eigenvalues.length;
  const floor = (opts.conditionFloor ?? DEFAULT_CONDITION_FLOOR) * Math.max(eigenvalues[0], 0);
  let usable = 0;
  while (usable < n && eigenvalues[usable] > floor) usable++;
  if (usable === 0) throw new RangeError('identity space: the covariance is zero (all embeddings equal)');
  if (opts.k !== undefined) {
    if (!Number.isInteger(opts.k) || opts.k < 1 || opts.k > n)
      throw new RangeError(`identity space: k must be an integer in 1..${n}, got ${opts.k}`);
    if (opts.k > usable)
      throw new RangeError(
        `identity space: k=${opts.k} but only ${usable} directions are well-conditioned (eigenvalue > ${floor.toExponential(2)})`,
      );
    return opts.k;
  }
  const target = opts.variance ?? DEFAULT_VARIANCE;
  if (!(target > 0 && target <= 1)) throw new RangeError(`identity space: variance must be in (0, 1], got ${target}`);
  let total = 0;
  for (let i = 0; i < n; i++) total += Math.max(eigenvalues[i], 0);
  let kept = 0;
  for (let k = 0; k < usable; k++) {
    kept += eigenvalues[k];
    // A small tolerance so that a target of exactly the variance of k directions keeps k.
    if (kept >= target * total * (1 - 1e-12)) return k + 1;
  }
  return usable;
}

/** Fit μ and the truncated whitening on embeddings x ([n, dim], or the listed rows). */
export function fitIdentitySpace(x: Float32Array, dim: number, opts: KeepOptions & { rows?: ArrayLike<number> } = {}): IdentitySpaceMap {
  const { mean, cov } = meanAndCovariance(x, dim, opts.rows);
  const norm = Math.hypot(...mean);
  if (!(norm < 1)) throw new RangeError(`identity space: the mean embedding has norm ${norm} (need < 1: are the embeddings unit vectors?)`);
  const { values, vectors } = symmetricEigen(cov, dim);
  const k = chooseK(values, opts);
  let total = 0;
  let kept = 0;
  for (let i = 0; i < dim; i++) total += Math.max(values[i], 0);
  for (let i = 0; i < k; i++) kept += values[i];
  return { dim, k, mean, basis: vectors.slice(0, k * dim), eigenvalues: values, varianceKept: kept / total };
}

/**
 * Whitened coordinates w = Λ^{-1/2}·Vᵀ·(f − μ) of every row of x ([n, dim] → [n, k]), normalised
 * to unit length unless `unit` is false.
 */
export function toWhitened(map: IdentitySpaceMap, x: Float32Array, unit = true): Float32Array {
  const { dim, k, mean, basis, eigenvalues } = map;
  if (x.length % dim !== 0) throw new RangeError(`identity space: ${x.length} values are not rows of ${dim}`);
  const n = x.length / dim;
  const out = new Float32Array(n * k);
  const c = new Float64Array(dim);
  const w = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < dim; a++) c[a] = x[i * dim + a] - mean[a];
    let sq = 0;
    for (let j = 0; j < k; j++) {
      let s = 0;
      const row = j * dim;
      for (let a = 0; a < dim; a++) s += basis[row + a] * c[a];
      w[j] = s / Math.sqrt(eigenvalues[j]);
      sq += w[j] * w[j];
    }
    const inv = unit ? (sq > 0 ? 1 / Math.sqrt(sq) : 0) : 1;
    for (let j = 0; j < k; j++) out[i * k + j] = w[j] * inv;
  }
  return out;
}

/**
 * Whitened directions z ([n, k], any length) → unit teacher embeddings ([n, dim]): for each, the
 * point where the ray from μ along V·Λ^{1/2}·z meets the unit sphere (the positive root of
 * |μ + t·d|² = 1; it exists and is unique because |μ| < 1).
 */
export function fromWhitened(map: IdentitySpaceMap, z: Float32Array): Float32Array {
  const { dim, k, mean, basis, eigenvalues } = map;
  if (z.length % k !== 0) throw new RangeError(`identity space: ${z.length} values are not rows of k=${k}`);
  const n = z.length / k;
  const out = new Float32Array(n * dim);
  const d = new Float64Array(dim);
  let mm = 0;
  for (let a = 0; a < dim; a++) mm += mean[a] * mean[a];
  for (let i = 0; i < n; i++) {
    d.fill(0);
    for (let j = 0; j < k; j++) {
      const s = z[i * k + j] * Math.sqrt(eigenvalues[j]);
      const row = j * dim;
      for (let a = 0; a < dim; a++) d[a] += s * basis[row + a];
    }
    let dd = 0;
    let md = 0;
    for (let a = 0; a < dim; a++) {
      dd += d[a] * d[a];
      md += mean[a] * d[a];
    }
    if (!(dd > 0)) throw new RangeError(`identity space: row ${i} of the whitened points is zero (no direction)`);
    const t = (-md + Math.sqrt(md * md + dd * (1 - mm))) / dd;
    let sq = 0;
    for (let a = 0; a < dim; a++) {
      const y = mean[a] + t * d[a];
      out[i * dim + a] = y;
      sq += y * y;
    }
    // Already on the sphere up to rounding; renormalise so float32 rows are unit to the last bit.
    const inv = 1 / Math.sqrt(sq);
    for (let a = 0; a < dim; a++) out[i * dim + a] *= inv;
  }
  return out;
}

// ── the artefact ──────────────────────────────────────────────────────────────────────────────

/** `identity-space.json`: what was fitted, on what, and where the numbers are. */
export interface IdentitySpaceHeader {
  readonly format: typeof IDENTITY_SPACE_FORMAT;
  readonly version: typeof IDENTITY_SPACE_VERSION;
  /** The registered face embedder whose embeddings this map whitens. */
  readonly teacher: string;
  readonly dim: number;
  readonly k: number;
  readonly variance: { readonly kept: number; readonly target?: number };
  /** All eigenvalues of the fitted covariance, decreasing (the kept ones scale the whitening). */
  readonly eigenvalues: readonly number[];
  readonly fit: {
    readonly count: number;
    /** sha256 of the fitting embeddings (float32, row-major). */
    readonly dataSha256: string;
    /** How the embeddings were made (e.g. the path f(x̂0) takes, at which resolution). */
    readonly source: string;
  };
  /** The id3 tensor file holding μ (row 0) and the kept eigenvectors (rows 1..k), float32 [k + 1, dim]. */
  readonly map: { readonly file: string; readonly sha256: string };
}

export interface LoadedIdentitySpace {
  readonly map: IdentitySpaceMap;
  readonly header: IdentitySpaceHeader;
  readonly path: string;
  /** sha256 of the header file (which carries the map's hash): the artefact's identity. */
  readonly sha256: string;
}

/** The map as stored (float32): fits are rounded through this so writer and readers use the same numbers. */
function mapFromStored(header: IdentitySpaceHeader, stored: Float32Array): IdentitySpaceMap {
  const { dim, k } = header;
  return {
    dim,
    k,
    mean: Float64Array.from(stored.subarray(0, dim)),
    basis: Float64Array.from(stored.subarray(dim, (k + 1) * dim)),
    eigenvalues: Float64Array.from(header.eigenvalues),
    varianceKept: header.variance.kept,
  };
}

/**
 * Write `<dir>/<name>.json` (the header) and `<dir>/<name>-map.{json,bin}` (μ and the basis);
 * returns what a reader gets back (the map as stored, float32-rounded).
 */
export function writeIdentitySpace(
  dir: string,
  map: IdentitySpaceMap,
  info: { teacher: string; count: number; dataSha256: string; source: string; varianceTarget?: number },
  name = 'identity-space',
): LoadedIdentitySpace {
  const stored = new Float32Array((map.k + 1) * map.dim);
  stored.set(map.mean, 0);
  stored.set(map.basis.subarray(0, map.k * map.dim), map.dim);
  const tensorPath = writeTensorFile(join(dir, `${name}-map`), 'float32', [map.k + 1, map.dim], stored, {
    what: 'identity space: row 0 = mean embedding μ, rows 1..k = kept covariance eigenvectors (decreasing eigenvalue)',
  });
  const { header: tensorHeader } = readTensorFile(tensorPath);
  const header: IdentitySpaceHeader = {
    format: IDENTITY_SPACE_FORMAT,
    version: IDENTITY_SPACE_VERSION,
    teacher: info.teacher,
    dim: map.dim,
    k: map.k,
    variance: { kept: map.varianceKept, ...(info.varianceTarget !== undefined ? { target: info.varianceTarget } : {}) },
    eigenvalues: Array.from(map.eigenvalues),
    fit: { count: info.count, dataSha256: info.dataSha256, source: info.source },
    map: { file: basename(tensorPath), sha256: tensorHeader.sha256 },
  };
  const path = join(dir, `${name}.json`);
  writeJsonAtomic(path, header);
  return { map: mapFromStored(header, stored), header, path, sha256: sha256(readFileSync(path)) };
}

const refuse = (path: string, field: string, message: string): never => {
  throw new InvalidInputError(`${path}: field '${field}': ${message}`, { file: path, field });
};

/**
 * Read an identity-space artefact, refusing one of another format or version, or — when
 * `expect` says — another teacher or embedding size; every refusal names the file and the field.
 */
export function readIdentitySpace(path: string, expect: { teacher?: string; dim?: number } = {}): LoadedIdentitySpace {
  let bytes: Buffer;
  let header: IdentitySpaceHeader;
  try {
    bytes = readFileSync(path);
    header = JSON.parse(bytes.toString('utf8')) as IdentitySpaceHeader;
  } catch (err) {
    throw new InvalidInputError(`${path}: cannot read the identity-space artefact: ${(err as Error).message}`, { file: path });
  }
  if (header?.format !== IDENTITY_SPACE_FORMAT)
    refuse(path, 'format', `expected '${IDENTITY_SPACE_FORMAT}', found ${JSON.stringify(header?.format)}`);
  if (header.version !== IDENTITY_SPACE_VERSION)
    refuse(path, 'version', `this code reads version ${IDENTITY_SPACE_VERSION}, the artefact is version ${JSON.stringify(header.version)}`);
  if (expect.teacher !== undefined && header.teacher !== expect.teacher)
    refuse(path, 'teacher', `fitted on '${header.teacher}' embeddings, but this run's teacher is '${expect.teacher}'`);
  if (expect.dim !== undefined && header.dim !== expect.dim)
    refuse(path, 'dim', `the artefact whitens ${header.dim}-d embeddings, this run's are ${expect.dim}-d`);
  if (!Number.isInteger(header.dim) || header.dim < 1) refuse(path, 'dim', `not a positive integer: ${JSON.stringify(header.dim)}`);
  if (!Number.isInteger(header.k) || header.k < 1 || header.k > header.dim)
    refuse(path, 'k', `must be an integer in 1..${header.dim}, found ${JSON.stringify(header.k)}`);
  if (!Array.isArray(header.eigenvalues) || header.eigenvalues.length !== header.dim || !(header.eigenvalues[header.k - 1] > 0))
    refuse(path, 'eigenvalues', `need ${header.dim} values with the ${header.k} kept ones positive`);
  const tensorPath = join(dirname(path), header.map?.file ?? '');
  const { header: th, values } = readTensorFile(tensorPath);
  if (th.sha256 !== header.map.sha256) refuse(path, 'map.sha256', `${tensorPath} holds other data than the artefact was written with`);
  if (!(values instanceof Float32Array) || th.shape.length !== 2 || th.shape[0] !== header.k + 1 || th.shape[1] !== header.dim)
    refuse(path, 'map', `${tensorPath} is [${th.shape.join(', ')}] ${th.dtype}, expected float32 [${header.k + 1}, ${header.dim}]`);
  const map = mapFromStored(header, values as Float32Array);
  if (!(Math.hypot(...map.mean) < 1)) refuse(path, 'map', 'the mean embedding μ must lie inside the unit ball');
  return { map, header, path, sha256: sha256(bytes) };
}

/**
 * Refuse data made in another identity space: `recorded` is the artefact hash a file's header
 * carries (e.g. anchors' meta.identitySpace), `artefact` the one this stage reads.
 */
export function requireSameIdentitySpace(recorded: unknown, file: string, artefact: LoadedIdentitySpace): void {
  if (recorded !== artefact.sha256) {
    throw new InvalidInputError(
      `${file}: made in identity space ${JSON.stringify(recorded)}, but this run's identity space is ${artefact.sha256} (${artefact.path}): re-run the stage that wrote ${basename(file)}`,
      { file },
    );
  }
}
