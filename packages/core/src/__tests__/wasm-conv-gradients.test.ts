import { initBackend, tf } from '../index';

// Gradients of conv2d through the forward-conv formulation on wasm, checked against the cpu
// backend's own Conv2DBackpropInput/Filter kernels on the same random data.
describe('wasm conv2d gradients', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  afterEach(async () => {
    await tf.setBackend('wasm');
  });

  it('wasm lacks a Conv2DBackpropFilter kernel (why the custom gradient exists)', () => {
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
  });

  function gradsOn(
    backend: string,
    x: Float32Array,
    xs: number[],
    w: Float32Array,
    ws: number[],
    dyScale: Float32Array,
    stride: number,
    pad: 'same' | 'valid',
  ): Promise<[Float32Array, Float32Array]> {
    return (async () => {
      await tf.setBackend(backend);
      const [gx, gw] = tf.tidy(() => {
        const xt = tf.tensor4d(x, xs as [number, number, number, number]);
        const wt = tf.tensor4d(w, ws as [number, number, number, number]);
        // A non-uniform upstream gradient (weights on the output) so every position matters.
        const f = (a: tf.Tensor, b: tf.Tensor) => {
          const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad);
          return tf.sum(tf.mul(y, tf.reshape(tf.tensor1d(dyScale.subarray(0, y.size)), y.shape)));
        };
        return tf.grads(f)([xt, wt]);
      });
      const out: [Float32Array, Float32Array] = [(await gx.data()) as Float32Array, (await gw.data()) as Float32Array];
      gx.dispose();
      gw.dispose();
      return out;
    })();
  }

  const cases: { k: number; stride: number; pad: 'same' | 'valid'; size: number }[] = [];
  for (const k of [1, 3])
    for (const stride of [1, 2])
      for (const pad of ['same', 'valid'] as const) for (const size of [8, 9]) cases.push({ k, stride, pad, size });

  it.each(cases)('kernel $k×$k, stride $stride, $pad, $size×$size input: matches cpu', async ({ k, stride, pad, size }) => {
    const [n, cin, cout] = [2, 3, 4];
    const seeded = (len: number, seed: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.5);
    const xs = [n, size, size, cin];
    const ws = [k, k, cin, cout];
    const x = seeded(n * size * size * cin, 1);
    const w = seeded(k * k * cin * cout, 2);
    const dy = seeded(n * size * size * cout, 3);
    const [cx, cw] = await gradsOn('cpu', x, xs, w, ws, dy, stride, pad);
    const [wx, ww] = await gradsOn('wasm', x, xs, w, ws, dy, stride, pad);
    expect(wx.length).toBe(cx.length);
    expect(ww.length).toBe(cw.length);
    const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    expect(maxAbs(cx)).toBeGreaterThan(0);
    expect(maxAbs(cw)).toBeGreaterThan(0);
    expect(maxDiff(wx, cx)).toBeLessThan(1e-4 * Math.max(1, maxAbs(cx)));
    expect(maxDiff(ww, cw)).toBeLessThan(1e-4 * Math.max(1, maxAbs(cw)));
  });

  it('does not leak tensors', async () => {
    const x = tf.randomNormal([2, 8, 8, 3]);
    const w = tf.randomNormal([3, 3, 3, 4]);
    const step = () =>
      tf.tidy(() =>
        tf
          .grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')))([x, w])
          .forEach((g) => g.dataSync()),
      );
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    w.dispose();
  });
});

describe('wasm depthwise conv input gradient', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });
  afterEach(async () => {
    await tf.setBackend('wasm');
  });

  const cases: { stride: number; pad: 'same' | 'valid'; mult: number; size: number }[] = [];
  for (const stride of [1, 2])
    for (const pad of ['same', 'valid'] as const)
      for (const mult of [1, 2]) for (const size of [8, 9]) cases.push({ stride, pad, mult, size });

  it.each(cases)('3×3, stride $stride, $pad, multiplier $mult, $size×$size: matches cpu', async ({ stride, pad, mult, size }) => {
    const seeded = (len: number, seed: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.5);
    const x = seeded(2 * size * size * 3, 4);
    const w = seeded(3 * 3 * 3 * mult, 5);
    const grad = async (backend: string) => {
      await tf.setBackend(backend);
      const g = tf.tidy(() => {
        const xt = tf.tensor4d(x, [2, size, size, 3]);
        const wt = tf.tensor4d(w, [3, 3, 3, mult]);
        return tf.grad((a: tf.Tensor) => {
          const y = tf.depthwiseConv2d(a as tf.Tensor4D, wt, stride, pad);
          return tf.sum(tf.mul(y, tf.reshape(tf.tensor1d(seeded(y.size, 6)), y.shape)));
        })(xt);
      });
      const v = (await g.data()) as Float32Array;
      g.dispose();
      return v;
    };
    const cpu = await grad('cpu');
    const wasm = await grad('wasm');
    const scale = cpu.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(scale).toBeGreaterThan(0);
    expect(wasm.reduce((m, v, i) => Math.max(m, Math.abs(v - cpu[i])), 0)).toBeLessThan(1e-4 * Math.max(1, scale));
  });
});

// BatchMatMul's gradient with explicit transposes on wasm, against tfjs-core's own gradient on cpu.
describe('wasm matMul gradients', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });
  afterEach(async () => {
    await tf.setBackend('wasm');
  });

  it.each([
    [false, false, [5, 3], [3, 7]],
    [false, true, [5, 3], [7, 3]],
    [true, false, [3, 5], [3, 7]],
    [true, true, [3, 5], [7, 3]],
    [true, false, [40, 9], [40, 2]], // tall pᵀq with a narrow q: the (qᵀp)ᵀ path
    [false, false, [2, 4, 3], [2, 3, 6]], // batched
  ])('transposeA=%s transposeB=%s %j·%j equals the cpu gradient', async (ta, tb, as, bs) => {
    const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
    const a = Float32Array.from({ length: size(as) }, (_, i) => Math.sin(i * 1.3));
    const b = Float32Array.from({ length: size(bs) }, (_, i) => Math.cos(i * 0.7));
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const [ga, gb] = tf.tidy(() => {
        const f = (x: tf.Tensor, y: tf.Tensor) => {
          const out = tf.matMul(x, y, ta, tb);
          return tf.sum(tf.mul(out, tf.reshape(tf.range(0, out.size), out.shape)));
        };
        return tf.grads(f)([tf.tensor(a, as), tf.tensor(b, bs)]);
      });
      const out = [Array.from(await ga.data()), Array.from(await gb.data())];
      tf.dispose([ga, gb]);
      return out;
    };
    const [wa, wb] = await run('wasm');
    const [ca, cb] = await run('cpu');
    wa.forEach((v, i) => expect(v).toBeCloseTo(ca[i], 3));
    wb.forEach((v, i) => expect(v).toBeCloseTo(cb[i], 3));
  });
});
