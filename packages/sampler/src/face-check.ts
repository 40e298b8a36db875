import { quantile } from './leakage';
import { headPoseFrom68, landmarksOfCrop, resizeImage, type Point, type RgbImage } from '@id3/faces';

/**
 * A face check that works at the generated resolution. Detectors miss most 32-px faces, but
 * the 68-point landmark net still reads them on the crop upscaled to 112 (the generator's
 * evaluation relies on it for yaw). What separates a face from a blob is then whether those 68
 * points *form a face*: their residual after the best similarity transform (translation,
 * scale, rotation) onto the mean landmark shape of real crops at the same resolution. The
 * threshold is calibrated on real crops (a quantile of their residuals), never guessed.
 */

/** Centred, unit-Frobenius-norm copy of a shape (translation and scale removed). */
export function normaliseShape(points: readonly Point[]): Point[] {
  const n = points.length;
  const cx = points.reduce((a, p) => a + p[0], 0) / n;
  const cy = points.reduce((a, p) => a + p[1], 0) / n;
  const centred = points.map(([x, y]) => [x - cx, y - cy] as Point);
  const norm = Math.sqrt(centred.reduce((a, [x, y]) => a + x * x + y * y, 0));
  if (!(norm > 0)) throw new RangeError('normaliseShape: all points coincide');
  return centred.map(([x, y]) => [x / norm, y / norm] as Point);
}

/** Σ aᵢbᵢᵀ of two point lists: the 2×2 matrix a best rotation of a onto b is read from. */
function crossCovariance(a: readonly Point[], b: readonly Point[]): { sxx: number; sxy: number; syx: number; syy: number } {
  let sxx = 0;
  let sxy = 0;
  let syx = 0;
  let syy = 0;
  for (let i = 0; i < a.length; i++) {
    sxx += a[i][0] * b[i][0];
    sxy += a[i][0] * b[i][1];
    syx += a[i][1] * b[i][0];
    syy += a[i][1] * b[i][1];
  }
  return { sxx, sxy, syx, syy };
}

/**
 * Procrustes distance between two shapes: sqrt(2 − 2·Σσ) of the normalised shapes, Σσ the
 * largest trace reachable by a rotation (no reflection). 0 = same shape up to similarity.
 */
export function procrustesResidual(points: readonly Point[], reference: readonly Point[]): number {
  if (points.length !== reference.length) throw new RangeError(`procrustesResidual: ${points.length} vs ${reference.length} points`);
  const { sxx, sxy, syx, syy } = crossCovariance(normaliseShape(points), normaliseShape(reference));
  // max over rotations θ of tr(R·M) = sqrt((sxx + syy)² + (sxy − syx)²) for 2-D shapes.
  const best = Math.hypot(sxx + syy, sxy - syx);
  return Math.sqrt(Math.max(0, 2 - 2 * best));
}

/** Generalised Procrustes mean of shapes (a few rounds of align-to-mean, average). */
export function meanShape(shapes: readonly (readonly Point[])[], rounds = 4): Point[] {
  if (shapes.length === 0) throw new RangeError('meanShape: no shapes');
  let mean = normaliseShape(shapes[0]);
  for (let round = 0; round < rounds; round++) {
    const acc = mean.map(() => [0, 0]);
    for (const shape of shapes) {
      const s = normaliseShape(shape);
      const { sxx, sxy, syx, syy } = crossCovariance(s, mean);
      const theta = Math.atan2(sxy - syx, sxx + syy); // rotation taking s onto the mean
      const c = Math.cos(theta);
      const sn = Math.sin(theta);
      s.forEach(([x, y], i) => {
        acc[i][0] += (c * x - sn * y) / shapes.length;
        acc[i][1] += (sn * x + c * y) / shapes.length;
      });
    }
    mean = normaliseShape(acc.map(([x, y]) => [x, y] as Point));
  }
  return mean;
}

export interface FaceCheck {
  readonly reference: readonly Point[];
  /** Accept residual ≤ threshold. */
  readonly threshold: number;
  readonly calibration: { readonly images: number; readonly quantile: number; readonly median: number; readonly thresholdResidual: number };
}

export interface FaceReading {
  readonly residual: number;
  /** Head yaw (degrees) from the same landmarks, for the card's attribute read-back. */
  readonly yaw: number;
}

async function upscaled(image: RgbImage): Promise<RgbImage> {
  return image.width >= 112 ? image : resizeImage(image, 112, 112);
}

/** Landmarks of a (small) crop read on its 112-px upscale. */
export async function cropLandmarks(image: RgbImage): Promise<Point[]> {
  return landmarksOfCrop(await upscaled(image));
}

/** Calibrate on real crops at the generated resolution: mean shape and the `quantile` of their residuals. */
export async function calibrateFaceCheck(realCrops: readonly RgbImage[], q: number): Promise<FaceCheck> {
  const shapes: Point[][] = [];
  for (const crop of realCrops) shapes.push(await cropLandmarks(crop));
  const reference = meanShape(shapes);
  const residuals = shapes.map((s) => procrustesResidual(s, reference));
  const threshold = quantile(residuals, q);
  return {
    reference,
    threshold,
    calibration: { images: shapes.length, quantile: q, median: quantile(residuals, 0.5), thresholdResidual: threshold },
  };
}

export async function readFace(image: RgbImage, check: FaceCheck): Promise<FaceReading> {
  const landmarks = await cropLandmarks(image);
  return { residual: procrustesResidual(landmarks, check.reference), yaw: headPoseFrom68(landmarks).yaw };
}
