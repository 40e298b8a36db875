import { Rng } from '@id3/core';

export interface IdentitySamplingOptions {
  /** Embeddings per anchor (images per identity). */
  readonly m: number;
  /** cos(y_ij, w_i) is drawn uniformly from [lb, ub]. */
  readonly lb: number;
  readonly ub: number;
  readonly seed: number;
}

export interface IdentityEmbeddings {
  /** Row-major [n·m, dim] unit vectors; rows i·m … i·m+m−1 belong to anchor i. */
  readonly embeddings: Float32Array;
  /** Anchor index of each row. */
  readonly labels: Int32Array;
  /** The drawn cos(y_ij, w_i) per row. */
  readonly anchorCos: Float32Array;
}

export function validateIdentityOptions(o: IdentitySamplingOptions): void {
  if (!Number.isInteger(o.m) || o.m < 1) throw new RangeError(`identities: m must be an integer ≥ 1, got ${o.m}`);
  if (!(o.lb >= -1 && o.lb <= o.ub && o.ub <= 1)) throw new RangeError(`identities: need -1 ≤ lb ≤ ub ≤ 1, got [${o.lb}, ${o.ub}]`);
}

/**
 * ID³ Algorithm 3, step 2: for every anchor w_i draw m embeddings
 *   y_ij = c·w_i + sqrt(1 − c²)·v_ij,  c ~ U[lb, ub],  v_ij a uniform unit vector ⟂ w_i,
 * so each identity's embeddings lie in a spherical band around its anchor.
 */
export function sampleIdentities(anchors: Float32Array, dim: number, o: IdentitySamplingOptions): IdentityEmbeddings {
  validateIdentityOptions(o);
  if (anchors.length % dim !== 0) throw new RangeError(`identities: ${anchors.length} anchor values are not a multiple of dim ${dim}`);
  const n = anchors.length / dim;
  const rng = new Rng(o.seed);
  const embeddings = new Float32Array(n * o.m * dim);
  const labels = new Int32Array(n * o.m);
  const anchorCos = new Float32Array(n * o.m);
  const v = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    const w = i * dim;
    for (let j = 0; j < o.m; j++) {
      const row = i * o.m + j;
      // v: Gaussian, minus its component along w, normalised (uniform on the great sphere ⟂ w).
      let proj = 0;
      for (let k = 0; k < dim; k++) {
        v[k] = rng.normal();
        proj += v[k] * anchors[w + k];
      }
      let norm = 0;
      for (let k = 0; k < dim; k++) {
        v[k] -= proj * anchors[w + k];
        norm += v[k] * v[k];
      }
      const inv = 1 / Math.sqrt(norm);
      const c = rng.range(o.lb, o.ub);
      const s = Math.sqrt(Math.max(0, 1 - c * c));
      // Renormalise the result too, so float32 rounding of the anchor cannot leave |y| ≠ 1.
      let ynorm = 0;
      for (let k = 0; k < dim; k++) {
        const y = c * anchors[w + k] + s * v[k] * inv;
        embeddings[row * dim + k] = y;
        ynorm += y * y;
      }
      const yinv = 1 / Math.sqrt(ynorm);
      for (let k = 0; k < dim; k++) embeddings[row * dim + k] *= yinv;
      labels[row] = i;
      anchorCos[row] = c;
    }
  }
  return { embeddings, labels, anchorCos };
}
