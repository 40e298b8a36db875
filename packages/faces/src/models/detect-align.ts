import { tf } from '@id3/core';
import { alignDlibChip, alignFace, dlibChipTemplate5, fivePointsFrom68, scaledTemplate, warpToTemplate, type Point } from '../align';
import type { RgbImage } from '../image-io';
import { loadFaceApiNets, type FaceApiDetection } from './face-api';

export type DetectorName = 'tiny' | 'ssd';

export interface AlignOptions {
  /** Output crop side (the ArcFace template is scaled to it). */
  readonly size?: number;
  /** Extra margin around the crop, as a fraction of it (see scaledTemplate / dlibChipTemplate). */
  readonly padding?: number;
  /**
   * Which template: 'arcface' (5 points → the ArcFace 112 layout, the dataset crops) or
   * 'dlib' (68 points → dlib's mean face, the chips face-api's recognition net expects).
   */
  readonly template?: 'arcface' | 'dlib';
  readonly detector?: DetectorName;
  /** Minimum detector score. */
  readonly minScore?: number;
  /**
   * When no face is found: 'center-crop' assumes a pre-aligned, centred face (LFW-style sets)
   * and places the template over the central `fallbackFraction` of the image; 'reject' fails.
   */
  readonly fallback?: 'center-crop' | 'reject';
  readonly fallbackFraction?: number;
}

export type AlignResult =
  | {
      readonly ok: true;
      readonly image: RgbImage;
      readonly method: 'landmarks' | 'center-crop';
      readonly score: number;
      readonly points: readonly Point[];
      readonly landmarks68?: readonly Point[];
    }
  | { readonly ok: false; readonly reason: string };

/** The fallback's five points: the template over the central square of the image. */
export function centredTemplatePoints(width: number, height: number, fraction: number): Point[] {
  const side = fraction * Math.min(width, height);
  const ox = (width - side) / 2;
  const oy = (height - side) / 2;
  return scaledTemplate(side).map(([x, y]) => [ox + x, oy + y]);
}

/**
 * Detect faces (face-api's tiny detector or SSD), keep the one nearest the image centre (the
 * subject of a benchmark photo), fit the 68-point landmark net, reduce to five points and warp
 * onto the ArcFace template.
 */
export async function detectAndAlign(image: RgbImage, o: AlignOptions = {}): Promise<AlignResult> {
  const size = o.size ?? 112;
  const detector = o.detector ?? 'tiny';
  const api = await loadFaceApiNets([detector === 'tiny' ? 'tinyFaceDetector' : 'ssdMobilenetv1', 'faceLandmark68Net']);
  const options =
    detector === 'tiny'
      ? new api.TinyFaceDetectorOptions({ inputSize: 320, scoreThreshold: o.minScore ?? 0.3 })
      : new api.SsdMobilenetv1Options({ minConfidence: o.minScore ?? 0.3, maxResults: 10 });
  const detect = async (img: RgbImage, withOptions: unknown): Promise<FaceApiDetection[]> => {
    const input = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
    try {
      return await api.detectAllFaces(input, withOptions).withFaceLandmarks();
    } finally {
      input.dispose();
    }
  };
  let found = await detect(image, options);
  let shift = 0;
  if (found.length === 0) {
    // The tiny detector misses some faces SSD finds (~1% of LFW): a second, slower try.
    await loadFaceApiNets(['ssdMobilenetv1']);
    const ssd = new api.SsdMobilenetv1Options({ minConfidence: o.minScore ?? 0.3, maxResults: 10 });
    found = await detect(image, ssd);
    if (found.length === 0) {
      // Tightly cropped faces (UTKFace-style, the face filling the frame) are missed by both:
      // give the detector context by framing the image in a black border.
      shift = Math.round(0.25 * Math.max(image.width, image.height));
      found = await detect(withBorder(image, shift), options);
      if (found.length === 0) found = await detect(withBorder(image, shift), ssd);
    }
  }
  if (found.length > 0) {
    const cx = image.width / 2 + shift;
    const cy = image.height / 2 + shift;
    const best = found.reduce((a, b) => {
      const da = Math.hypot(a.detection.box.x + a.detection.box.width / 2 - cx, a.detection.box.y + a.detection.box.height / 2 - cy);
      const db = Math.hypot(b.detection.box.x + b.detection.box.width / 2 - cx, b.detection.box.y + b.detection.box.height / 2 - cy);
      return db < da ? b : a;
    });
    const landmarks68 = best.landmarks.positions.map((p) => [p.x - shift, p.y - shift] as Point);
    const points = fivePointsFrom68(landmarks68);
    const aligned =
      o.template === 'dlib' ? alignDlibChip(image, landmarks68, size, o.padding ?? 0.25) : alignFace(image, points, size, o.padding ?? 0);
    return { ok: true, image: aligned.image, method: 'landmarks', score: best.detection.score, points, landmarks68 };
  }
  if ((o.fallback ?? 'center-crop') === 'reject') return { ok: false, reason: 'no face detected' };
  const points = centredTemplatePoints(image.width, image.height, o.fallbackFraction ?? 0.5);
  const image2 =
    o.template === 'dlib'
      ? warpToTemplate(image, points, dlibChipTemplate5(size, o.padding ?? 0.25), size).image
      : alignFace(image, points, size, o.padding ?? 0).image;
  return { ok: true, image: image2, method: 'center-crop', score: 0, points };
}

/** The image framed by a black border of `border` pixels on every side. */
export function withBorder(image: RgbImage, border: number): RgbImage {
  const width = image.width + 2 * border;
  const height = image.height + 2 * border;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < image.height; y++) {
    data.set(image.data.subarray(y * image.width * 3, (y + 1) * image.width * 3), ((y + border) * width + border) * 3);
  }
  return { width, height, data };
}

/**
 * The 68 landmarks of an image that already is a face crop (an aligned crop, a generated
 * sample), from face-api's landmark net alone: no detector, which misses most faces below
 * ~64 pixels (9 of 38 LFW crops at 32×32 upscaled), while the landmark net still reads head
 * pose from them (yaw correlates 0.94 with the full-resolution pose on the same 38).
 */
export async function landmarksOfCrop(image: RgbImage): Promise<Point[]> {
  const api = await loadFaceApiNets(['faceLandmark68Net']);
  const input = tf.tensor3d(image.data, [image.height, image.width, 3], 'int32');
  try {
    const found = await api.nets.faceLandmark68Net.detectLandmarks(input);
    return found.positions.map((p) => [p.x, p.y] as Point);
  } finally {
    input.dispose();
  }
}
