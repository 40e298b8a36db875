import { tf } from '@id3/core';
import { scaledTemplate, type FaceEmbedder, type Point } from '@id3/faces';

/**
 * Maps the generator's ArcFace-aligned crops (side `cropSize`, values in [-1, 1]) onto a teacher's
 * own input frame (0–255, its template), differentiably: the teacher must see faces the way it
 * was trained (face-api's dlib network scores 78% on LFW from ArcFace crops, 98% from its chips).
 *
 * Both templates are upright, so the map is an axis-aligned scale + shift, fitted per axis by
 * least squares on the five points; bilinear resampling along each axis is then a fixed matrix
 * and the warp is two matrix products, out = R_y · X · R_xᵀ per channel (outside the crop:
 * black, as in alignment). Matrix products have gradients on every backend, unlike
 * resizeBilinear or image.transform on wasm.
 */
export interface AxisMap {
  /** teacher = scale · crop + shift, in pixel-centre coordinates (x + 0.5). */
  readonly scale: number;
  readonly shift: number;
}

export function fitAxisMap(from: readonly number[], to: readonly number[]): AxisMap {
  const n = from.length;
  const mf = from.reduce((a, b) => a + b, 0) / n;
  const mt = to.reduce((a, b) => a + b, 0) / n;
  let cov = 0;
  let varF = 0;
  for (let i = 0; i < n; i++) {
    cov += (from[i] - mf) * (to[i] - mt);
    varF += (from[i] - mf) ** 2;
  }
  const scale = cov / varF;
  return { scale, shift: mt - scale * mf };
}

/** [outSize, inSize] bilinear resampling matrix for teacher = scale · crop + shift. */
export function resampleMatrix(map: AxisMap, inSize: number, outSize: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  for (let u = 0; u < outSize; u++) {
    const src = (u + 0.5 - map.shift) / map.scale - 0.5;
    const i0 = Math.floor(src);
    const f = src - i0;
    if (i0 >= 0 && i0 < inSize) m[u * inSize + i0] += 1 - f;
    if (i0 + 1 >= 0 && i0 + 1 < inSize) m[u * inSize + i0 + 1] += f;
  }
  return m;
}

export class TeacherInput {
  readonly mapX: AxisMap;
  readonly mapY: AxisMap;
  private readonly rxT: tf.Tensor2D;
  private readonly ryT: tf.Tensor2D;

  constructor(
    readonly cropSize: number,
    readonly teacherSize: number,
    teacherTemplate: readonly Point[],
  ) {
    const crop = scaledTemplate(cropSize);
    this.mapX = fitAxisMap(
      crop.map((p) => p[0]),
      teacherTemplate.map((p) => p[0]),
    );
    this.mapY = fitAxisMap(
      crop.map((p) => p[1]),
      teacherTemplate.map((p) => p[1]),
    );
    this.rxT = tf.tidy(() => tf.transpose(tf.tensor2d(resampleMatrix(this.mapX, cropSize, teacherSize), [teacherSize, cropSize])));
    this.ryT = tf.tidy(() => tf.transpose(tf.tensor2d(resampleMatrix(this.mapY, cropSize, teacherSize), [teacherSize, cropSize])));
  }

  static forTeacher(teacher: FaceEmbedder, cropSize: number): TeacherInput {
    return new TeacherInput(cropSize, teacher.inputSize, teacher.inputTemplate);
  }

  /** [b, s, s, 3] in [-1, 1] → [b, S, S, 3] in 0–255 on the teacher's template. */
  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, s] = x.shape;
      const S = this.teacherSize;
      const pixels = tf.mul(tf.add(x, 1), 127.5);
      const rows = tf.reshape(tf.transpose(pixels, [0, 3, 1, 2]), [b * 3 * s, s]); // [b·c·y, x]
      const alongX = tf.reshape(tf.matMul(rows, this.rxT), [b * 3, s, S]); // [b·c, y, u]
      const cols = tf.reshape(tf.transpose(alongX, [0, 2, 1]), [b * 3 * S, s]); // [b·c·u, y]
      const both = tf.reshape(tf.matMul(cols, this.ryT), [b, 3, S, S]); // [b, c, u, v]
      return tf.transpose(both, [0, 3, 2, 1]) as tf.Tensor4D; // [b, v, u, c]
    });
  }

  dispose(): void {
    this.rxT.dispose();
    this.ryT.dispose();
  }
}
