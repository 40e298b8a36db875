import { checkEmbedderFor } from '../stage';
import { Rng } from '@id3/core';
import { makeSchedule } from '@id3/diffusion';
import { scaleAttributes, unscaleAttributes, type Point } from '@id3/faces';
import { attributeSpecSchema, drawAttributes, meanAttributes, type AttributePool } from '../attributes';
import { meanShape, normaliseShape, procrustesResidual } from '../face-check';
import { quantile } from '../leakage';
import { guidedTimesteps, x0GuidanceCoefficient } from '../guidance';
import { attributeRng, imageSeed } from '../seeds';

describe('image seeds', () => {
  it('are a pure function of (run seed, identity, slot, attempt) and differ between any two images', () => {
    expect(imageSeed(7, 3, 2, 0)).toBe(imageSeed(7, 3, 2, 0));
    const seen = new Set<number>();
    for (let i = 0; i < 20; i++) for (let j = 0; j < 10; j++) for (let a = 0; a < 3; a++) seen.add(imageSeed(7, i, j, a));
    expect(seen.size).toBe(600);
    expect(imageSeed(8, 3, 2, 0)).not.toBe(imageSeed(7, 3, 2, 0));
    expect(attributeRng(7, 3, 2).nextUint32()).toBe(attributeRng(7, 3, 2).nextUint32());
  });
});

describe('attributes', () => {
  // Three training rows (scaled): ages 20, 40, 60; yaw −30, 0, 30; row 1 held out.
  const raw = [
    [20, 0, -30, 0],
    [40, 5, 0, 0],
    [60, -5, 30, 10],
  ];
  const pool: AttributePool = { scaled: Float32Array.from(raw.flatMap(scaleAttributes)), width: 4, rows: [0, 2] };

  it('empirical: every draw is one of the generator’s training rows, never a held-out one', () => {
    const spec = attributeSpecSchema.parse({ kind: 'empirical' });
    const rng = new Rng(1);
    const seen = new Set<number>();
    for (let k = 0; k < 50; k++) {
      const age = Math.round(unscaleAttributes(Array.from(drawAttributes(spec, pool, rng)))[0]);
      seen.add(age);
    }
    expect([...seen].sort()).toEqual([20, 60]);
  });

  it('ranges: the listed attribute is uniform in its raw range, the others come from a training row', () => {
    const spec = attributeSpecSchema.parse({ kind: 'ranges', ranges: { yaw: [-45, 45] } });
    const rng = new Rng(2);
    const yaws: number[] = [];
    for (let k = 0; k < 400; k++) {
      const [age, , yaw] = unscaleAttributes(Array.from(drawAttributes(spec, pool, rng)));
      expect([20, 60]).toContain(Math.round(age));
      yaws.push(yaw);
    }
    expect(Math.min(...yaws)).toBeGreaterThanOrEqual(-45);
    expect(Math.max(...yaws)).toBeLessThanOrEqual(45);
    expect(Math.min(...yaws)).toBeLessThan(-40);
    expect(Math.max(...yaws)).toBeGreaterThan(40);
    expect(() => attributeSpecSchema.parse({ kind: 'ranges', ranges: { yaw: [10, -10] } })).toThrow(/lo ≤ hi/);
    expect(() => attributeSpecSchema.parse({ kind: 'ranges', ranges: { height: [1, 2] } })).toThrow();
  });

  it('mean: every image gets the training rows’ mean', () => {
    const spec = attributeSpecSchema.parse({ kind: 'mean' });
    const s = unscaleAttributes(Array.from(drawAttributes(spec, pool, new Rng(3))));
    expect(s[0]).toBeCloseTo(40, 4);
    expect(s[2]).toBeCloseTo(0, 4);
    expect(s[3]).toBeCloseTo(5, 4);
    expect(Array.from(meanAttributes(pool))).toEqual(Array.from(drawAttributes(spec, pool, new Rng(4))));
  });
});

describe('where guidance applies', () => {
  const ts = [900, 800, 700, 600, 500, 400, 300, 200, 100, 0];
  it('the last fraction of the trajectory, every k-th step counted back from the final one', () => {
    expect([...guidedTimesteps(ts, 1000, { scale: 1, every: 1, lastFraction: 1 })]).toEqual(ts);
    expect([...guidedTimesteps(ts, 1000, { scale: 1, every: 2, lastFraction: 0.5 })]).toEqual([400, 200, 0]);
    expect([...guidedTimesteps(ts, 1000, { scale: 1, every: 3, lastFraction: 1 })]).toEqual([900, 600, 300, 0]);
    expect(guidedTimesteps(ts, 1000, { scale: 0, every: 1, lastFraction: 1 }).size).toBe(0);
  });

  it('the x̂0-gradient coefficient is −w·sqrt(1−ᾱ_t)·γ_t / sqrt(ᾱ_t)', () => {
    const schedule = makeSchedule({ steps: 1000 });
    const t = 500;
    const a = schedule.alphasCumprod[t];
    const gamma = 0.5 * (1 - 1 / (1 + Math.exp(-0.5)));
    expect(x0GuidanceCoefficient(schedule, t, 2)).toBeCloseTo((-2 * Math.sqrt(1 - a) * gamma) / Math.sqrt(a), 12);
    expect(x0GuidanceCoefficient(schedule, t, 0)).toBeCloseTo(0, 15);
  });
});

describe('the landmark face check', () => {
  // A face-like 6-point shape and a similarity transform of it.
  const shape: Point[] = [
    [30, 40],
    [70, 40],
    [50, 60],
    [35, 80],
    [65, 80],
    [50, 95],
  ];
  const transform = (p: readonly Point[], scale: number, angle: number, dx: number, dy: number): Point[] =>
    p.map(([x, y]) => [scale * (Math.cos(angle) * x - Math.sin(angle) * y) + dx, scale * (Math.sin(angle) * x + Math.cos(angle) * y) + dy]);

  it('a shape moved, scaled and rotated has residual 0; a different shape does not', () => {
    expect(procrustesResidual(transform(shape, 2.5, 0.4, -10, 7), shape)).toBeLessThan(1e-7);
    const scrambled: Point[] = [shape[3], shape[1], shape[5], shape[0], shape[4], shape[2]];
    expect(procrustesResidual(scrambled, shape)).toBeGreaterThan(0.3);
    // A mirror image is not reachable by a rotation.
    expect(
      procrustesResidual(
        shape.map(([x, y]) => [x, -y] as Point),
        shape,
      ),
    ).toBeGreaterThan(0.05);
  });

  it('normalised shapes are centred with unit norm; the mean of rotated copies is the shape', () => {
    const n = normaliseShape(shape);
    expect(n.reduce((a, p) => a + p[0], 0)).toBeCloseTo(0, 12);
    expect(n.reduce((a, p) => a + p[0] ** 2 + p[1] ** 2, 0)).toBeCloseTo(1, 12);
    const copies = [0, 0.3, -0.5, 1.1].map((a, k) => transform(shape, 1 + k, a, k * 3, -k));
    expect(procrustesResidual(meanShape(copies), shape)).toBeLessThan(1e-6);
  });

  it('quantile interpolates linearly', () => {
    expect(quantile([3, 1, 2, 4], 0.5)).toBeCloseTo(2.5, 12);
    expect(quantile([1, 2, 3, 4, 5], 0.99)).toBeCloseTo(4.96, 12);
  });
});

describe('checkEmbedderFor: the card reads the images with a model that is not the teacher', () => {
  it("'auto' picks MobileFace, or face-api's net when MobileFace is the teacher; a name or null is kept", () => {
    expect(checkEmbedderFor('auto', 'faceapi-dlib-128')).toBe('mobileface-256');
    expect(checkEmbedderFor('auto', 'mobileface-256')).toBe('faceapi-dlib-128');
    expect(checkEmbedderFor('faceapi-dlib-128', 'iresnet-x')).toBe('faceapi-dlib-128');
    expect(checkEmbedderFor(null, 'faceapi-dlib-128')).toBeNull();
  });
});
