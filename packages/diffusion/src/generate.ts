import sharp from 'sharp';
import { Rng, tf } from '@id3/core';
import { correlation, embedWithFlip, headPoseFrom68, landmarksOfCrop, predictAge, resizeImage, type FaceEmbedder, type RgbImage } from '@id3/faces';
import { GaussianDiffusion, runLoop } from './gaussian-diffusion';
import type { TeacherInput } from './teacher-input';
import type { UNet } from './unet';

/** Conditions for a batch of samples: rows of y (unit, d) and s (scaled attributes). */
export interface Conditions {
  readonly y: Float32Array;
  readonly s: Float32Array;
  readonly count: number;
}

/**
 * Plain conditional DDIM samples for the given conditions (no identity guidance; the sampler
 * stage adds it through the guidance hook), in chunks to bound memory. Values in [-1, 1].
 */
export async function sampleConditions(
  net: UNet, diffusion: GaussianDiffusion, cond: Conditions, o: { ddimSteps: number; eta?: number; seed: number; chunk?: number },
): Promise<Float32Array> {
  const r = net.config.resolution;
  const d = net.config.identityDim;
  const a = net.config.attributeDim;
  const px = r * r * 3;
  const out = new Float32Array(cond.count * px);
  const rng = new Rng(o.seed).fork('sample');
  const chunk = o.chunk ?? 32;
  for (let start = 0; start < cond.count; start += chunk) {
    const n = Math.min(chunk, cond.count - start);
    const y = tf.tensor2d(cond.y.subarray(start * d, (start + n) * d), [n, d]);
    const s = tf.tensor2d(cond.s.subarray(start * a, (start + n) * a), [n, a]);
    try {
      const x = runLoop(diffusion.ddimLoop((xt, t) => net.forward({ xt, t, y, s }), [n, r, r, 3], { steps: o.ddimSteps, eta: o.eta ?? 0, rng }));
      out.set((await x.data()) as Float32Array, start * px);
      x.dispose();
    } finally {
      tf.dispose([y, s]);
    }
    await new Promise((resolve) => setImmediate(resolve)); // let progress timers run
  }
  return out;
}

/** [-1, 1] float images → uint8 RGB images. */
export function toImages(values: Float32Array, size: number): RgbImage[] {
  const px = size * size * 3;
  const images: RgbImage[] = [];
  for (let i = 0; i < values.length / px; i++) {
    const data = new Uint8Array(px);
    for (let k = 0; k < px; k++) data[k] = Math.max(0, Math.min(255, Math.round((values[i * px + k] + 1) * 127.5)));
    images.push({ width: size, height: size, data });
  }
  return images;
}

/** A PNG grid of equal-sized tiles (rows × columns), 2-pixel white gutters, scaled by `scale`. */
export async function gridPng(rows: readonly (readonly RgbImage[])[], scale = 2): Promise<Buffer> {
  const size = rows[0][0].width;
  const cols = Math.max(...rows.map((r) => r.length));
  const gap = 2;
  const W = cols * size + (cols + 1) * gap;
  const H = rows.length * size + (rows.length + 1) * gap;
  const canvas = new Uint8Array(W * H * 3).fill(255);
  rows.forEach((row, ri) =>
    row.forEach((img, ci) => {
      for (let y = 0; y < size; y++) {
        const dst = ((gap + ri * (size + gap) + y) * W + gap + ci * (size + gap)) * 3;
        canvas.set(img.data.subarray(y * size * 3, (y + 1) * size * 3), dst);
      }
    }),
  );
  return sharp(Buffer.from(canvas), { raw: { width: W, height: H, channels: 3 } })
    .resize(W * scale, H * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/** Teacher embeddings of [-1, 1] crops, mapped onto the teacher's input, image + flip summed. */
export async function embedCrops(teacher: FaceEmbedder, input: TeacherInput, values: Float32Array, size: number, chunk = 16): Promise<Float32Array> {
  const px = size * size * 3;
  const n = values.length / px;
  const out = new Float32Array(n * teacher.dim);
  for (let start = 0; start < n; start += chunk) {
    const m = Math.min(chunk, n - start);
    const e = tf.tidy(() => embedWithFlip(teacher, input.apply(tf.tensor4d(values.subarray(start * px, (start + m) * px), [m, size, size, 3]))));
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
