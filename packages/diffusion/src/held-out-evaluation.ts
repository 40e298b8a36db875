// Read-outs of samples generated for held-out conditions: identity (teacher cosines to the
// requested y) and attributes (yaw and age read back), as the train-diffusion stage reports them.
import { tf } from '@id3/core';
import {
  correlation,
  embedWithFlip,
  headPoseFrom68,
  landmarksOfCrop,
  predictAge,
  resizeImage,
  type FaceEmbedder,
  type RgbImage,
} from '@id3/faces';
import type { TeacherInput } from './teacher-input';

/** Teacher embeddings of [-1, 1] crops, mapped onto the teacher's input, image + flip summed. */
export async function embedCrops(
  teacher: FaceEmbedder,
  input: TeacherInput,
  values: Float32Array,
  size: number,
  chunk = 16,
): Promise<Float32Array> {
  const px = size * size * 3;
  const n = values.length / px;
  const out = new Float32Array(n * teacher.dim);
  for (let start = 0; start < n; start += chunk) {
    const m = Math.min(chunk, n - start);
    const e = tf.tidy(() =>
      embedWithFlip(teacher, input.apply(tf.tensor4d(values.subarray(start * px, (start + m) * px), [m, size, size, 3]))),
    );
    out.set((await e.data()) as Float32Array, start * teacher.dim);
    e.dispose();
  }
  return out;
}

/** Pearson correlation; undefined (NaN) for fewer than 3 pairs. */
export function pearson(a: readonly number[], b: readonly number[]): number {
  return a.length < 3 ? Number.NaN : correlation(a, b);
}

export interface AttributeReadout {
  readonly yaw: number[];
  readonly age: number[];
}

/**
 * Yaw (68-point head pose) and age (face-api) read back from face crops, upscaled to 112: the
 * landmark net runs on the crop itself (see landmarksOfCrop), the age net on its landmark box.
 */
export async function readAttributes(images: readonly RgbImage[]): Promise<AttributeReadout> {
  const yaw: number[] = [];
  const age: number[] = [];
  for (const img of images) {
    const big = img.width >= 112 ? img : await resizeImage(img, 112, 112);
    const landmarks = await landmarksOfCrop(big);
    yaw.push(headPoseFrom68(landmarks).yaw);
    age.push((await predictAge(big, landmarks)).age);
  }
  return { yaw, age };
}

/** Mean of ⟨e_i, y_i⟩ (matched) and of ⟨e_i, y_{i+shift}⟩ (mismatched conditions). */
export function identityConsistency(e: Float32Array, y: Float32Array, dim: number, shift = 1): { matched: number; mismatched: number } {
  const n = e.length / dim;
  let matched = 0;
  let mismatched = 0;
  for (let i = 0; i < n; i++) {
    const j = (i + shift) % n;
    let dm = 0;
    let dx = 0;
    for (let k = 0; k < dim; k++) {
      dm += e[i * dim + k] * y[i * dim + k];
      dx += e[i * dim + k] * y[j * dim + k];
    }
    matched += dm;
    mismatched += dx;
  }
  return { matched: matched / n, mismatched: mismatched / n };
}
