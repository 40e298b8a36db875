import sharp from 'sharp';
import type { RgbImage } from '@id3/faces';

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
