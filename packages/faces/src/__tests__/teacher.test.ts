import { initBackend, tf } from '@id3/core';
import { alignForEmbedder, decodeImage, detectAndAlign, embedImage, loadEmbedder, readLfwPairs, requireDataPath } from '../index';

// The pretrained teacher on real LFW images through id3's detection and dlib-chip alignment.
jest.setTimeout(180_000);

describe.each([
  ['face-api (dlib ResNet, 128-d) on dlib chips', 'faceapi-dlib-128', 128],
  ['MobileFace (256-d) on ArcFace crops', 'mobileface-256', 256],
])('%s, on real LFW pairs', (_title, name, dim) => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it('detects, aligns and embeds: genuine pairs are far closer than impostors, without leaking tensors', async () => {
    const teacher = await loadEmbedder(name);
    expect(teacher.dim).toBe(dim);
    const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
    const pairs = [...list.pairs.slice(0, 8), ...list.pairs.slice(300, 308)];
    const embedOne = async (path: string) => {
      const image = await decodeImage(path);
      const found = await detectAndAlign(image);
      if (!found.ok) throw new Error(`${path}: ${found.reason}`);
      expect(found.method).toBe('landmarks');
      return embedImage(teacher, alignForEmbedder(image, found, teacher));
    };
    await embedOne(pairs[0].a); // warm-up: model weights become resident
    const before = tf.memory().numTensors;
    const cos: { same: boolean; c: number }[] = [];
    for (const p of pairs) {
      const [a, b] = [await embedOne(p.a), await embedOne(p.b)];
      expect(Math.abs(a.reduce((s, v) => s + v * v, 0) - 1)).toBeLessThan(1e-4);
      cos.push({ same: p.same, c: a.reduce((s, v, i) => s + v * b[i], 0) });
    }
    expect(tf.memory().numTensors).toBe(before);
    const mean = (same: boolean) => cos.filter((x) => x.same === same).reduce((s, x) => s + x.c, 0) / 8;
    expect(mean(true) - mean(false)).toBeGreaterThan(0.1);
    // Most genuine pairs beat most impostors (AUC over these 64 comparisons).
    let wins = 0;
    for (const g of cos.filter((x) => x.same)) for (const i of cos.filter((x) => !x.same)) wins += g.c > i.c ? 1 : 0;
    expect(wins / 64).toBeGreaterThan(0.9);
  });
});

describe.each(['faceapi-dlib-128', 'mobileface-256'])('%s teacher is differentiable', (name) => {
  it('the gradient of ⟨f(x), y⟩ with respect to the input pixels is finite and non-zero', async () => {
    await initBackend('wasm', () => undefined);
    const teacher = await loadEmbedder(name);
    const s = teacher.inputSize;
    const x = tf.randomUniform([2, s, s, 3], 0, 255, 'float32', 1) as tf.Tensor4D;
    const y = tf.tidy(() => tf.div(tf.ones([2, teacher.dim]), Math.sqrt(teacher.dim)));
    const g = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(teacher.embed(input as tf.Tensor4D), y)))(x);
    const values = (await g.data()) as Float32Array;
    expect(g.shape).toEqual([2, s, s, 3]);
    expect(values.every(Number.isFinite)).toBe(true);
    expect(values.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeGreaterThan(0);
    tf.dispose([x, y, g]);
  });
});
