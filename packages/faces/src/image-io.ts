import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { InvalidInputError } from '@id3/core';

/** A decoded image: interleaved 8-bit RGB, row-major. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/**
 * Netpbm binary greyscale/colour (P5 / P6, maxval ≤ 255) — ORL's .pgm files; sharp's prebuilt
 * libvips has no PPM loader. Header: magic, width, height, maxval, separated by whitespace and
 * `#` comments, then one whitespace byte and the raster.
 */
export function decodeNetpbm(bytes: Uint8Array, source: string): RgbImage {
  let pos = 0;
  const token = (): string => {
    for (;;) {
      while (pos < bytes.length && /\s/.test(String.fromCharCode(bytes[pos]))) pos++;
      if (bytes[pos] === 0x23) while (pos < bytes.length && bytes[pos] !== 0x0a) pos++;
      else break;
    }
    const start = pos;
    while (pos < bytes.length && !/\s/.test(String.fromCharCode(bytes[pos]))) pos++;
    return Buffer.from(bytes.subarray(start, pos)).toString('ascii');
  };
  const magic = token();
  if (magic !== 'P5' && magic !== 'P6') throw new InvalidInputError(`${source}: not a binary PGM/PPM (magic '${magic}')`, { file: source });
  const [width, height, maxval] = [token(), token(), token()].map(Number);
  if (!(width > 0 && height > 0 && maxval > 0 && maxval <= 255)) {
    throw new InvalidInputError(`${source}: bad PGM/PPM header (${width}×${height}, maxval ${maxval})`, { file: source });
  }
  pos += 1;
  const channels = magic === 'P5' ? 1 : 3;
  const need = width * height * channels;
  if (bytes.length - pos < need)
    throw new InvalidInputError(`${source}: truncated image data (${bytes.length - pos} of ${need} bytes)`, { file: source });
  const raster = bytes.subarray(pos, pos + need);
  const data = new Uint8Array(width * height * 3);
  const scale = 255 / maxval;
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.round(raster[i * channels + (channels === 1 ? 0 : c)] * scale);
  }
  return { width, height, data };
}

/** Decode any supported image file (JPEG, PNG, WebP, TIFF, GIF, PGM/PPM) to RGB; errors name the file. */
export async function decodeImage(path: string): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new InvalidInputError(`cannot read image ${path}: ${(err as Error).message}`, { file: path });
  }
  return decodeImageBytes(bytes, path);
}

export async function decodeImageBytes(bytes: Buffer, source: string): Promise<RgbImage> {
  if (bytes.length >= 2 && bytes[0] === 0x50 && (bytes[1] === 0x35 || bytes[1] === 0x36)) return decodeNetpbm(bytes, source);
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    throw new InvalidInputError(`cannot decode image ${source}: ${(err as Error).message}`, { file: source });
  }
}

/** Resize with sharp (Lanczos), RGB in and out. */
export async function resizeImage(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  const { data, info } = await sharp(Buffer.from(image.data), { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}
