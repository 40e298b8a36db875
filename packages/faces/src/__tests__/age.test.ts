import { initBackend, tf } from '@id3/core';
import { decodeImage, detectAndAlign, loadFaceApiNets, predictAge, readUtkFace, requireDataPath } from '../index';

// Age from face-api's age net against UTKFace's labels, on a fixed, evenly spread subset.
jest.setTimeout(300_000);

describe('age predictor on UTKFace', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it('mean absolute error under 10 years on 120 labelled faces (reported), no tensor leaks', async () => {
    const { records } = readUtkFace(requireDataPath('utkface', 'images'));
    // Every k-th record of the name-sorted list: all ages, deterministic.
    const step = Math.floor(records.length / 120);
    const subset = records.filter((_, i) => i % step === 0).slice(0, 120);
    let abs = 0;
    let n = 0;
    let noFace = 0;
    // Load every net the loop can touch first, so the tensor count below measures leaks only.
    await loadFaceApiNets(['tinyFaceDetector', 'ssdMobilenetv1', 'faceLandmark68Net', 'ageGenderNet']);
    const before = tf.memory().numTensors;
    for (const r of subset) {
      const image = await decodeImage(r.path);
      const found = await detectAndAlign(image, { fallback: 'reject' });
      if (!found.ok || !found.landmarks68) {
        noFace++;
        continue;
      }
      const { age } = await predictAge(image, found.landmarks68);
      abs += Math.abs(age - r.age);
      n++;
    }
    const mae = abs / n;
    console.log(`UTKFace age MAE ${mae.toFixed(2)} years on ${n} faces (${noFace} without a detected face)`);
    expect(n).toBeGreaterThan(100);
    expect(mae).toBeLessThan(10);
    expect(tf.memory().numTensors).toBe(before);
  });
});
