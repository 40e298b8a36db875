import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, initBackend, tf } from '@id3/core';
import { gaussianNoise } from '../gaussian-diffusion';
import { groupNormWith, timestepEmbedding, upsample2x } from '../layers';
import { UNet, unetConfigSchema } from '../unet';

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

const tiny = {
  resolution: 16,
  baseChannels: 8,
  channelMult: [1, 2] as [number, ...number[]],
  resBlocks: 1,
  attentionResolutions: [8],
  groups: 4,
  identityDim: 6,
  attributeDim: 4,
  conditionHidden: [16, 8] as [number, number],
};

function inputs(b: number, r: number, seed: number) {
  const rng = new Rng(seed);
  return {
    xt: gaussianNoise(rng, [b, r, r, 3]) as tf.Tensor4D,
    t: Array.from({ length: b }, (_, i) => (i * 97) % 1000),
    y: gaussianNoise(rng, [b, 6]) as tf.Tensor2D,
    s: gaussianNoise(rng, [b, 4]) as tf.Tensor2D,
  };
}

async function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.max(tf.abs(tf.sub(a, b)));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

describe('layers', () => {
  it('GroupNorm: hand-written gradient equals autodiff of the plain formula', async () => {
    const rng = new Rng(1);
    const x = gaussianNoise(rng, [2, 3, 3, 8]) as tf.Tensor4D;
    const gamma = tf.add(1, gaussianNoise(rng, [8])) as tf.Tensor1D;
    const beta = gaussianNoise(rng, [8]) as tf.Tensor1D;
    const w = gaussianNoise(rng, [2, 3, 3, 8]);
    const reference = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor => {
      const xg = tf.reshape(xi, [2, 9, 4, 2]);
      const { mean, variance } = tf.moments(xg, [1, 3], true);
      return tf.add(tf.mul(tf.reshape(tf.div(tf.sub(xg, mean), tf.sqrt(tf.add(variance, 1e-5))), [2, 3, 3, 8]), g), b);
    };
    const ours = tf.grads((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(groupNormWith(xi as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, 4), w)),
    );
    const auto = tf.grads((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(reference(xi, g, b), w)));
    const [ga, gb] = [ours([x, gamma, beta]), auto([x, gamma, beta])];
    for (let i = 0; i < 3; i++) expect(await maxAbsDiff(ga[i], gb[i])).toBeLessThan(1e-4);
    expect(await maxAbsDiff(groupNormWith(x, gamma, beta, 4), reference(x, gamma, beta))).toBeLessThan(1e-5);
  });

  it('upsample2x repeats each pixel into a 2×2 block', async () => {
    const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    expect(Array.from(await upsample2x(x).data())).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
  });

  it('timestep embedding: [cos, sin] of t·10000^(−i/half)', async () => {
    const e = await timestepEmbedding([0, 10], 4).data();
    expect(Array.from(e.slice(0, 4))).toEqual([1, 1, 0, 0]);
    expect(e[4]).toBeCloseTo(Math.cos(10), 5);
    expect(e[5]).toBeCloseTo(Math.cos(10 / 100), 5);
    expect(e[6]).toBeCloseTo(Math.sin(10), 5);
  });
});

describe('UNet', () => {
  it('validates its config with the field named', () => {
    expect(() => unetConfigSchema.parse({ ...tiny, resolution: 18, channelMult: [1, 2, 2] })).toThrow(/resolution/);
    expect(() => unetConfigSchema.parse({ ...tiny, baseChannels: 6 })).toThrow(/groups/);
  });

  it('is deterministic per seed, outputs ε-shaped tensors, starts at zero output (zero-initialised head)', async () => {
    const a = UNet.create(tiny, 7);
    const b = UNet.create(tiny, 7);
    const c = UNet.create(tiny, 8);
    expect(a.parameterCount()).toBe(b.parameterCount());
    expect(await a.flatWeights()).toEqual(await b.flatWeights());
    expect(await a.flatWeights()).not.toEqual(await c.flatWeights());
    const inp = inputs(2, 16, 3);
    const out = tf.tidy(() => a.forward(inp));
    expect(out.shape).toEqual([2, 16, 16, 3]);
    expect(await maxAbsDiff(out, tf.zerosLike(out))).toBe(0);
    tf.dispose([out, inp.xt, inp.y, inp.s]);
    [a, b, c].forEach((n) => n.dispose());
  });

  it('save → load round trip gives identical outputs; a tampered layout is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'id3-unet-'));
    try {
      const net = UNet.create(tiny, 1);
      // Perturb every weight so the zero-initialised layers are exercised too.
      const w = await net.flatWeights();
      const rng = new Rng(2);
      net.setFlatWeights(w.map((v) => v + 0.05 * rng.normal()));
      const path = await net.save(join(dir, 'weights'));
      const back = UNet.load(path);
      expect(back.config).toEqual(net.config);
      const inp = inputs(3, 16, 4);
      const [o1, o2] = [tf.tidy(() => net.forward(inp)), tf.tidy(() => back.forward(inp))];
      expect(await maxAbsDiff(o1, o2)).toBe(0);
      expect(await maxAbsDiff(o1, tf.zerosLike(o1))).toBeGreaterThan(0);
      tf.dispose([o1, o2, inp.xt, inp.y, inp.s]);
      back.dispose();
      net.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('scale-shift (FiLM) maps the embedding to 2 × channels per block; weights saved without the knob load as additive', async () => {
    const film = UNet.create({ ...tiny, conditioning: 'scale-shift' }, 1);
    const add = UNet.create(tiny, 1);
    const emb = (n: UNet) => n.layout().find((l) => l.name.startsWith('down.0.0.emb'))?.shape;
    expect(emb(add)?.at(-1)).toBe(8);
    expect(emb(film)?.at(-1)).toBe(16);
    expect(add.config.conditioning).toBe('add');
    const parsed = unetConfigSchema.parse({ ...tiny });
    expect(parsed.conditioning).toBe('add');
    film.dispose();
    add.dispose();
  });

  describe.each(['add', 'scale-shift'] as const)('conditioning %s', (conditioning) => {
    it(`${conditioning}: has finite, non-zero gradients for every parameter (after a perturbation) on wasm`, async () => {
      const net = UNet.create({ ...tiny, conditioning }, 1);
      const rng = new Rng(5);
      net.setFlatWeights((await net.flatWeights()).map((v) => v + 0.02 * rng.normal()));
      const inp = inputs(2, 16, 6);
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(net.forward(inp))) as tf.Scalar, net.variables);
      for (const [name, g] of Object.entries(grads)) {
        const v = await g.data();
        expect({ name, finite: v.every(Number.isFinite) }).toEqual({ name, finite: true });
        expect({ name, nonZero: v.some((x) => x !== 0) }).toEqual({ name, nonZero: true });
      }
      tf.dispose([value, ...Object.values(grads), inp.xt, inp.y, inp.s]);
      net.dispose();
    });

    it(`${conditioning}: a dropped condition (keepCondition 0) ignores y and s`, async () => {
      const net = UNet.create({ ...tiny, conditioning }, 1);
      const rng = new Rng(5);
      net.setFlatWeights((await net.flatWeights()).map((v) => v + 0.05 * rng.normal()));
      const a = inputs(1, 16, 6);
      const b = { ...a, y: gaussianNoise(rng, [1, 6]) as tf.Tensor2D };
      const keep0 = tf.zeros([1, 1]) as tf.Tensor2D;
      const keep1 = tf.ones([1, 1]) as tf.Tensor2D;
      const dropped = [
        tf.tidy(() => net.forward({ ...a, keepCondition: keep0 })),
        tf.tidy(() => net.forward({ ...b, keepCondition: keep0 })),
      ];
      const kept = [tf.tidy(() => net.forward({ ...a, keepCondition: keep1 })), tf.tidy(() => net.forward({ ...b, keepCondition: keep1 }))];
      expect(await maxAbsDiff(dropped[0], dropped[1])).toBe(0);
      expect(await maxAbsDiff(kept[0], kept[1])).toBeGreaterThan(1e-6);
      tf.dispose([...dropped, ...kept, keep0, keep1, a.xt, a.y, a.s, b.y]);
      net.dispose();
    });
  });
});
