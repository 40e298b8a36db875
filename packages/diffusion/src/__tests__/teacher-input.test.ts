import { initBackend, tf } from '@id3/core';
import {
  alignDlibChip,
  decodeImage,
  detectAndAlign,
  loadEmbedder,
  readLfwPairs,
  requireDataPath,
  scaledTemplate,
  type FaceEmbedder,
} from '@id3/faces';
import { TeacherInput, fitAxisMap, resampleMatrix } from '../teacher-input';

jest.setTimeout(120_000);

let teacher: FaceEmbedder;
beforeAll(async () => {
  await initBackend('wasm', () => undefined);
  teacher = await loadEmbedder('faceapi-dlib-128');
});

describe('TeacherInput (generator crops → the teacher own input frame)', () => {
  it('fits an exact axis map and builds row-stochastic bilinear matrices inside the crop', () => {
    expect(fitAxisMap([0, 1, 2], [5, 7, 9])).toEqual({ scale: 2, shift: 5 });
    const m = resampleMatrix({ scale: 2, shift: 0 }, 4, 8); // 2× upsampling of 4 pixels
    for (let u = 1; u < 7; u++) expect(m.slice(u * 4, u * 4 + 4).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    // output pixel centre 2.5 ↔ source 1.25 − 0.5 = 0.75: 25% of pixel 0, 75% of pixel 1
    expect(Array.from(m.slice(2 * 4, 3 * 4))).toEqual([0.25, 0.75, 0, 0]);
  });

  it('maps the crop template onto the teacher template (face-api: dlib chip) within 2 pixels (the two templates differ slightly in shape)', () => {
    const input = TeacherInput.forTeacher(teacher, 112);
    const crop = scaledTemplate(112);
    crop.forEach(([x, y], i) => {
      const [tx, ty] = teacher.inputTemplate[i];
      expect(Math.abs(input.mapX.scale * (x + 0.5) + input.mapX.shift - 0.5 - tx)).toBeLessThan(2);
      expect(Math.abs(input.mapY.scale * (y + 0.5) + input.mapY.shift - 0.5 - ty)).toBeLessThan(2);
    });
    input.dispose();
  });

  it('on real LFW faces, the teacher sees the mapped ArcFace crop nearly as it sees its own dlib chip', async () => {
    const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
    const input = TeacherInput.forTeacher(teacher, 112);
    const cosMapped: number[] = [];
    const cosResized: number[] = [];
    for (const pair of list.pairs.slice(0, 6)) {
      const image = await decodeImage(pair.a);
      const aligned = await detectAndAlign(image, { size: 112 });
      if (!aligned.ok || !aligned.landmarks68) throw new Error(`${pair.a}: no landmarks`);
      const chip = alignDlibChip(image, aligned.landmarks68, 150, 0.25).image;
      const [own, mapped, resized] = tf.tidy(() => {
        const crop = tf.sub(tf.div(tf.tensor4d(Float32Array.from(aligned.image.data), [1, 112, 112, 3]), 127.5), 1) as tf.Tensor4D;
        return [
          teacher.embed(tf.tensor4d(Float32Array.from(chip.data), [1, 150, 150, 3])),
          teacher.embed(input.apply(crop)),
          teacher.embed(tf.image.resizeBilinear(tf.tensor4d(Float32Array.from(aligned.image.data), [1, 112, 112, 3]), [150, 150])),
        ];
      });
      const [o, m, r] = (await Promise.all([own.data(), mapped.data(), resized.data()])).map((v) => Array.from(v));
      cosMapped.push(o.reduce((s, v, k) => s + v * m[k], 0));
      cosResized.push(o.reduce((s, v, k) => s + v * r[k], 0));
      tf.dispose([own, mapped, resized]);
    }
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(cosMapped)).toBeGreaterThan(0.97); // measured 0.989 (plain resize: 0.906)
    // a plain resize of the ArcFace crop is a different face framing for this network
    expect(mean(cosMapped)).toBeGreaterThan(mean(cosResized) + 0.05);
    input.dispose();
  });

  it('is differentiable: ∂⟨f(map(x)), y⟩/∂x is finite and non-zero on wasm', async () => {
    const input = TeacherInput.forTeacher(teacher, 32);
    const y = tf.tidy(() => tf.div(tf.ones([1, 128]), Math.sqrt(128)));
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(teacher.embed(input.apply(x as tf.Tensor4D)), y)))(
      tf.randomUniform([1, 32, 32, 3], -1, 1),
    );
    const v = await g.data();
    expect(v.every(Number.isFinite)).toBe(true);
    expect(v.some((x) => x !== 0)).toBe(true);
    tf.dispose([g, y]);
    input.dispose();
  });
});
