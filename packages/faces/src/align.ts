import type { RgbImage } from './image-io';

/** A 2-D point in pixels (x right, y down). */
export type Point = readonly [number, number];

/**
 * The standard ArcFace 112×112 five-point template (insightface): image-left eye, image-right
 * eye, nose tip, image-left and image-right mouth corners.
 */
export const ARCFACE_TEMPLATE_112: readonly Point[] = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

/**
 * The template for another output size. `padding` widens the crop around the same face: the
 * 112-pixel template occupies the central size/(1 + 2·padding) pixels (0 = the ArcFace crop;
 * networks trained on looser crops, like dlib's, want some).
 */
export function scaledTemplate(size: number, padding = 0): Point[] {
  const inner = size / (1 + 2 * padding);
  const offset = padding * inner;
  return ARCFACE_TEMPLATE_112.map(([x, y]) => [offset + (x * inner) / 112, offset + (y * inner) / 112]);
}

/**
 * 68-point landmarks (iBUG/dlib order, as face-api returns them) → the five template points:
 * eye centres (mean of 36–41 and 42–47), nose tip (30), mouth corners (48, 54).
 */
export function fivePointsFrom68(points: readonly Point[]): Point[] {
  if (points.length !== 68) throw new RangeError(`expected 68 landmarks, got ${points.length}`);
  const mean = (from: number, to: number): Point => {
    let x = 0;
    let y = 0;
    for (let i = from; i <= to; i++) {
      x += points[i][0];
      y += points[i][1];
    }
    const n = to - from + 1;
    return [x / n, y / n];
  };
  return [mean(36, 41), mean(42, 47), points[30], points[48], points[54]];
}

/** Similarity transform dst = s·R·src + t, stored as a = s·cosθ, b = s·sinθ. */
export interface Similarity {
  readonly a: number;
  readonly b: number;
  readonly tx: number;
  readonly ty: number;
}

export function applySimilarity(m: Similarity, [x, y]: Point): Point {
  return [m.a * x - m.b * y + m.tx, m.b * x + m.a * y + m.ty];
}

export function invertSimilarity(m: Similarity): Similarity {
  const d = m.a * m.a + m.b * m.b;
  const a = m.a / d;
  const b = -m.b / d;
  return { a, b, tx: -(a * m.tx - b * m.ty), ty: -(b * m.tx + a * m.ty) };
}

/**
 * Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping `src`
 * onto `dst` — Umeyama's solution, written with complex numbers: with centred points z, w,
 * a + ib = Σ conj(z)·w / Σ|z|², t = mean(w) − (a + ib)·mean(z).
 */
export function fitSimilarity(src: readonly Point[], dst: readonly Point[]): Similarity {
  if (src.length !== dst.length || src.length < 2) throw new RangeError('fitSimilarity needs ≥ 2 matching points');
  const n = src.length;
  const ms = src.reduce<[number, number]>((m, [x, y]) => [m[0] + x / n, m[1] + y / n], [0, 0]);
  const md = dst.reduce<[number, number]>((m, [x, y]) => [m[0] + x / n, m[1] + y / n], [0, 0]);
  let re = 0;
  let im = 0;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const zx = src[i][0] - ms[0];
    const zy = src[i][1] - ms[1];
    const wx = dst[i][0] - md[0];
    const wy = dst[i][1] - md[1];
    // conj(z)·w = (zx − i zy)(wx + i wy)
    re += zx * wx + zy * wy;
    im += zx * wy - zy * wx;
    norm += zx * zx + zy * zy;
  }
  if (norm === 0) throw new RangeError('fitSimilarity: source points coincide');
  const a = re / norm;
  const b = im / norm;
  return { a, b, tx: md[0] - (a * ms[0] - b * ms[1]), ty: md[1] - (b * ms[0] + a * ms[1]) };
}

/**
 * dlib's mean face (points 17–67 of the 68-point layout, in [0, 1]), as used by dlib's
 * get_face_chip_details to cut the 150×150 "face chips" its ResNet face descriptor (face-api's
 * recognition net) was trained on. Public reference data from dlib's interpolation.h.
 */
const DLIB_MEAN_FACE_X = [
  0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004, 0.490127, 0.490127, 0.490127,
  0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428,
  0.793132, 0.858516, 0.79751, 0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721, 0.490127,
  0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127, 0.42689,
];
const DLIB_MEAN_FACE_Y = [
  0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805,
  0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733,
  0.179852, 0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
  0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
];

/** The 68-point indices dlib fits (no eyebrows 17–26, no lower lip 55–59 and 65–67). */
export const DLIB_CHIP_INDICES: readonly number[] = Array.from({ length: 51 }, (_, k) => k + 17).filter(
  (i) => !(i >= 17 && i <= 26) && !(i >= 55 && i <= 59) && !(i >= 65 && i <= 67),
);

/** Template positions of DLIB_CHIP_INDICES in a `size` chip with dlib's `padding`. */
export function dlibChipTemplate(size: number, padding: number): Point[] {
  return DLIB_CHIP_INDICES.map((i) => [
    ((padding + DLIB_MEAN_FACE_X[i - 17]) / (2 * padding + 1)) * size,
    ((padding + DLIB_MEAN_FACE_Y[i - 17]) / (2 * padding + 1)) * size,
  ]);
}

/**
 * The five id3 points (eye centres, nose tip, mouth corners) on dlib's mean face, for cutting a
 * dlib chip from five points only (e.g. a fallback without landmarks).
 */
export function dlibChipTemplate5(size: number, padding: number): Point[] {
  const at = (i: number): Point => [
    ((padding + DLIB_MEAN_FACE_X[i - 17]) / (2 * padding + 1)) * size,
    ((padding + DLIB_MEAN_FACE_Y[i - 17]) / (2 * padding + 1)) * size,
  ];
  const meanOf = (from: number, to: number): Point => {
    const pts = Array.from({ length: to - from + 1 }, (_, k) => at(from + k));
    return [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
  };
  return [meanOf(36, 41), meanOf(42, 47), at(30), at(48), at(54)];
}

/**
 * A dlib face chip from 68 landmarks: the least-squares similarity onto dlib's mean face
 * (get_face_chip_details(shape, size, padding); dlib's recognition example uses 150, 0.25).
 */
export function alignDlibChip(
  image: RgbImage,
  landmarks68: readonly Point[],
  size = 150,
  padding = 0.25,
): { image: RgbImage; transform: Similarity; residual: number } {
  if (landmarks68.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks68.length}`);
  return warpToTemplate(
    image,
    DLIB_CHIP_INDICES.map((i) => landmarks68[i]),
    dlibChipTemplate(size, padding),
    size,
  );
}

/**
 * Warp `image` so that `landmarks` land on the template of a `size`×`size` crop: each output
 * pixel samples the source bilinearly through the inverse transform; outside is black.
 */
export function alignFace(
  image: RgbImage,
  landmarks: readonly Point[],
  size = 112,
  padding = 0,
): { image: RgbImage; transform: Similarity; residual: number } {
  return warpToTemplate(image, landmarks, scaledTemplate(size, padding), size);
}

/** Least-squares similarity from `landmarks` onto `template`, then a bilinear warp. */
export function warpToTemplate(
  image: RgbImage,
  landmarks: readonly Point[],
  template: readonly Point[],
  size: number,
): { image: RgbImage; transform: Similarity; residual: number } {
  const m = fitSimilarity(landmarks, template);
  const inv = invertSimilarity(m);
  const out = new Uint8Array(size * size * 3);
  const { width: W, height: H, data } = image;
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      // pixel centres: sample at (u + 0.5, v + 0.5) in output space
      const [sx, sy] = applySimilarity(inv, [u + 0.5, v + 0.5]);
      const x = sx - 0.5;
      const y = sy - 0.5;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const fx = x - x0;
      const fy = y - y0;
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (const [dx, dy, w] of [
          [0, 0, (1 - fx) * (1 - fy)],
          [1, 0, fx * (1 - fy)],
          [0, 1, (1 - fx) * fy],
          [1, 1, fx * fy],
        ] as const) {
          const xx = x0 + dx;
          const yy = y0 + dy;
          if (w > 0 && xx >= 0 && yy >= 0 && xx < W && yy < H) acc += w * data[(yy * W + xx) * 3 + c];
        }
        out[(v * size + u) * 3 + c] = Math.round(acc);
      }
    }
  }
  let residual = 0;
  landmarks.forEach((p, i) => {
    const [x, y] = applySimilarity(m, p);
    residual += Math.hypot(x - template[i][0], y - template[i][1]) / landmarks.length;
  });
  return { image: { width: size, height: size, data: out }, transform: m, residual };
}
