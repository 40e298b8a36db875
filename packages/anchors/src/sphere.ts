import { Rng } from '@id3/core';

/** Pure helpers on row-major [n, d] Float32Arrays of points on the unit sphere. */

export function normaliseRows(x: Float32Array, dim: number): Float32Array {
  for (let i = 0; i < x.length; i += dim) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += x[i + k] * x[i + k];
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let k = 0; k < dim; k++) x[i + k] *= inv;
  }
  return x;
}

/** n points drawn uniformly on S^{dim-1} (normalised Gaussians). */
export function randomUnitVectors(n: number, dim: number, rng: Rng): Float32Array {
  return normaliseRows(rng.fillNormal(new Float32Array(n * dim)), dim);
}

export const degrees = (radians: number): number => (radians * 180) / Math.PI;

/** Angle in degrees for a cosine, clamped against rounding just outside [-1, 1]. */
export const angleDeg = (cos: number): number => degrees(Math.acos(Math.min(1, Math.max(-1, cos))));
