import { ARCFACE_TEMPLATE_112, alignFace, applySimilarity, fitSimilarity, fivePointsFrom68, invertSimilarity, type Point } from '../index';

describe('similarity alignment', () => {
  it('recovers a known rotation, scale and translation exactly', () => {
    const theta = (17 * Math.PI) / 180;
    const s = 2.5;
    const truth = { a: s * Math.cos(theta), b: s * Math.sin(theta), tx: 31, ty: -12 };
    const src: Point[] = [
      [0, 0],
      [10, 2],
      [4, 9],
      [-3, 5],
      [7, -6],
    ];
    const dst = src.map((p) => applySimilarity(truth, p));
    const fit = fitSimilarity(src, dst);
    expect(fit.a).toBeCloseTo(truth.a, 10);
    expect(fit.b).toBeCloseTo(truth.b, 10);
    expect(fit.tx).toBeCloseTo(truth.tx, 10);
    expect(fit.ty).toBeCloseTo(truth.ty, 10);
    const back = applySimilarity(invertSimilarity(fit), dst[2]);
    expect(back[0]).toBeCloseTo(4, 10);
    expect(back[1]).toBeCloseTo(9, 10);
  });

  it('is the least-squares fit under noise (never a reflection)', () => {
    const mirrored = ARCFACE_TEMPLATE_112.map(([x, y]) => [112 - x, y] as Point);
    const fit = fitSimilarity(mirrored, ARCFACE_TEMPLATE_112);
    // A reflection cannot be represented: the best similarity shrinks rather than flips.
    expect(Math.hypot(fit.a, fit.b)).toBeLessThan(1);
  });

  it('warps landmarks of a synthetic image onto the template', () => {
    // A 200×200 image with 5 bright dots placed by a known similarity of the template.
    const m = { a: 1.6 * Math.cos(0.3), b: 1.6 * Math.sin(0.3), tx: 40, ty: 10 };
    const marks = ARCFACE_TEMPLATE_112.map((p) => applySimilarity(m, p));
    const W = 200;
    const data = new Uint8Array(W * W * 3);
    for (const [x, y] of marks) {
      for (let dy = -2; dy <= 2; dy++)
        for (let dx = -2; dx <= 2; dx++) {
          const i = (Math.round(y - 0.5) + dy) * W + Math.round(x - 0.5) + dx;
          data.fill(255, i * 3, i * 3 + 3);
        }
    }
    const { image, residual } = alignFace({ width: W, height: W, data }, marks, 112);
    expect(residual).toBeLessThan(1e-9);
    for (const [x, y] of ARCFACE_TEMPLATE_112) {
      expect(image.data[(Math.floor(y) * 112 + Math.floor(x)) * 3]).toBeGreaterThan(150);
    }
    expect(image.data[(5 * 112 + 5) * 3]).toBe(0);
  });

  it('reduces 68 landmarks to eye centres, nose tip and mouth corners', () => {
    const pts: Point[] = Array.from({ length: 68 }, (_, i) => [i, 2 * i]);
    expect(fivePointsFrom68(pts)).toEqual([
      [38.5, 77],
      [44.5, 89],
      [30, 60],
      [48, 96],
      [54, 108],
    ]);
    expect(() => fivePointsFrom68(pts.slice(1))).toThrow(/68 landmarks/);
  });
});

describe('dlib face chips', () => {
  it('landmarks already on dlib’s mean face give the identity transform', async () => {
    const { DLIB_CHIP_INDICES, alignDlibChip, dlibChipTemplate } = await import('../index');
    expect(DLIB_CHIP_INDICES).toHaveLength(33);
    const template = dlibChipTemplate(150, 0.25);
    const landmarks: Point[] = Array.from({ length: 68 }, () => [0, 0]);
    DLIB_CHIP_INDICES.forEach((idx, k) => (landmarks[idx] = template[k]));
    const data = new Uint8Array(150 * 150 * 3).map((_, i) => i % 251);
    const { transform, residual, image } = alignDlibChip({ width: 150, height: 150, data }, landmarks, 150, 0.25);
    expect(transform.a).toBeCloseTo(1, 9);
    expect(transform.b).toBeCloseTo(0, 9);
    expect(transform.tx).toBeCloseTo(0, 7);
    expect(residual).toBeLessThan(1e-7);
    expect(image.data[(70 * 150 + 80) * 3 + 1]).toBe(data[(70 * 150 + 80) * 3 + 1]);
  });
});
