import sharp from 'sharp';
import { initBackend } from '@id3/core';
import {
  correlation,
  decodeImage,
  decodeImageBytes,
  detectAndAlign,
  headPoseFrom68,
  landmarksOfCrop,
  readLfwPairs,
  requireDataPath,
  resizeImage,
  type RgbImage,
} from '../index';
import { readFileSync } from 'node:fs';

// Pose from real landmarks (face-api's 68-point net on a real LFW photo).
jest.setTimeout(120_000);

async function poseOf(image: RgbImage) {
  const r = await detectAndAlign(image, { fallback: 'reject' });
  if (!r.ok || !r.landmarks68) throw new Error('no face');
  return headPoseFrom68(r.landmarks68);
}

async function variant(bytes: Buffer, edit: (s: sharp.Sharp) => sharp.Sharp): Promise<RgbImage> {
  return decodeImageBytes(await edit(sharp(bytes)).jpeg({ quality: 95 }).toBuffer(), 'variant');
}

describe('head pose on a real face', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  const bytes = readFileSync(requireDataPath('lfw', 'lfw-deepfunneled', 'Colin_Powell', 'Colin_Powell_0001.jpg'));

  it('a horizontally flipped face negates yaw and roll and keeps pitch', async () => {
    const pose = await poseOf(await decodeImageBytes(bytes, 'original'));
    const flipped = await poseOf(await variant(bytes, (s) => s.flop()));
    expect(Math.abs(flipped.yaw + pose.yaw)).toBeLessThan(3);
    expect(Math.abs(flipped.roll + pose.roll)).toBeLessThan(3);
    expect(Math.abs(flipped.pitch - pose.pitch)).toBeLessThan(3);
  });

  it('an image rotated in plane by 15° changes roll by 15°', async () => {
    const pose = await poseOf(await decodeImageBytes(bytes, 'original'));
    const rotated = await poseOf(await variant(bytes, (s) => s.rotate(15, { background: '#000' })));
    expect(Math.abs(rotated.roll - pose.roll - 15)).toBeLessThan(3);
  });

  it('landmarksOfCrop reads head pose from 32-pixel aligned crops (no detector) close to the full-resolution pose', async () => {
    const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
    const full: number[] = [];
    const small: number[] = [];
    for (const pair of list.pairs.slice(0, 160).filter((_, i) => i % 8 === 0)) {
      const r = await detectAndAlign(await decodeImage(pair.a), { size: 112, fallback: 'reject' });
      if (!r.ok || !r.landmarks68) continue;
      full.push(headPoseFrom68(r.landmarks68).yaw);
      const crop = await resizeImage(await resizeImage(r.image, 32, 32), 112, 112);
      small.push(headPoseFrom68(await landmarksOfCrop(crop)).yaw);
    }
    expect(full.length).toBeGreaterThanOrEqual(15);
    expect(correlation(full, small)).toBeGreaterThan(0.85); // measured 0.94 on 38 LFW faces
  });
});
