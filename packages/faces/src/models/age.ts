import { tf } from '@id3/core';
import type { Point } from '../align';
import type { RgbImage } from '../image-io';
import { loadFaceApiNets } from './face-api';

/**
 * The face crop face-api's attribute nets were trained on: the bounding box of the 68 landmarks
 * grown by 20% (face-api's alignMinBbox), clamped to the image.
 */
export function landmarkBox(landmarks68: readonly Point[], width: number, height: number): { x: number; y: number; w: number; h: number } {
  const xs = landmarks68.map((p) => p[0]);
  const ys = landmarks68.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const padX = (x1 - x0) * 0.1;
  const padY = (y1 - y0) * 0.1;
  const x = Math.max(0, Math.floor(x0 - padX));
  const y = Math.max(0, Math.floor(y0 - padY));
  return { x, y, w: Math.min(width, Math.ceil(x1 + padX)) - x, h: Math.min(height, Math.ceil(y1 + padY)) - y };
}

/**
 * Age in years from face-api's age/gender net, on the landmark box of a detected face (or on a
 * given box, e.g. the whole image of a pre-aligned crop).
 */
export async function predictAge(
  image: RgbImage,
  face: readonly Point[] | { x: number; y: number; w: number; h: number },
): Promise<{ age: number; gender: 'male' | 'female'; genderProbability: number }> {
  const api = await loadFaceApiNets(['ageGenderNet']);
  const box = Array.isArray(face)
    ? landmarkBox(face as readonly Point[], image.width, image.height)
    : (face as { x: number; y: number; w: number; h: number });
  const crop = tf.tidy(
    () => tf.slice(tf.tensor3d(image.data, [image.height, image.width, 3], 'int32'), [box.y, box.x, 0], [box.h, box.w, 3]) as tf.Tensor3D,
  );
  try {
    const r = await api.nets.ageGenderNet.predictAgeAndGender(crop);
    return { age: r.age, gender: r.gender === 'female' ? 'female' : 'male', genderProbability: r.genderProbability };
  } finally {
    crop.dispose();
  }
}
