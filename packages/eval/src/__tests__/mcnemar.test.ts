import {
  binomialTwoSidedP,
  chiSquare1Sf,
  chiSquareSf,
  cochranQ,
  erfc,
  fSf,
  mcnemar,
  mcnemarFromCounts,
  mcnemarScaledP,
  seedNoiseDispersion,
} from '../index';

// Expected values from /usr/bin/python3 (no scipy there): the exact p as
// float(Fraction(2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2 ** n)) capped at 1,
// the chi-square p as math.erfc(math.sqrt(x / 2)) with x = (|b - c| - 1) ** 2 / (b + c).

/** Per-pair correctness arrays with the given counts of (A, B) outcomes. */
function pairsWith(both: number, b: number, c: number, neither: number): [boolean[], boolean[]] {
  const a: boolean[] = [];
  const m: boolean[] = [];
  const push = (count: number, x: boolean, y: boolean) => {
    for (let i = 0; i < count; i++) {
      a.push(x);
      m.push(y);
    }
  };
  push(both, true, true);
  push(b, true, false);
  push(neither, false, false);
  push(c, false, true);
  return [a, m];
}

describe('mcnemar', () => {
  it('no discordant pairs → p = 1 (exact and chi-square)', () => {
    const r = mcnemar(...pairsWith(50, 0, 0, 7));
    expect(r).toEqual({ b: 0, c: 0, n: 0, pExact: 1, chi2: 0, pChi2: 1 });
    expect(mcnemar([], [])).toEqual(r);
  });

  it('b = 10, c = 0 → exact p = 2 · 0.5^10 = 0.001953125; χ² = 8.1, p = 0.004426525857919833', () => {
    const r = mcnemar(...pairsWith(100, 10, 0, 3));
    expect([r.b, r.c, r.n]).toEqual([10, 0, 10]);
    expect(r.pExact).toBeCloseTo(0.001953125, 15);
    expect(r.chi2).toBeCloseTo(8.1, 12);
    expect(Math.abs(r.pChi2 / 0.004426525857919833 - 1)).toBeLessThan(2e-7);
  });

  it('b = c = 5 → exact p = 1 (capped); χ² = 0.1 (unclamped correction), p = 0.7518296340458492', () => {
    const r = mcnemar(...pairsWith(20, 5, 5, 20));
    expect(r.pExact).toBe(1);
    expect(r.chi2).toBeCloseTo(0.1, 12);
    expect(r.pChi2).toBeCloseTo(0.7518296340458492, 6);
  });

  it('matches exact Python values, symmetric in A and B', () => {
    // [b, c, exact p, χ², χ² p]
    const cases: [number, number, number, number, number][] = [
      [12, 3, 0.03515625, 4.266666666666667, 0.03886710381241724], // 2 · 576 / 32768
      [150, 110, 0.01541558283317147, 5.85, 0.015577051213613281],
      [40, 80, 0.0003304000183913207, 12.675, 0.00037057721471458696],
      // LFW-sized: 6,000 discordant pairs, where C(n, k) and 0.5^n leave double range.
      [3100, 2900, 0.010191041523412898, 6.6001666666666665, 0.010196922236046848],
    ];
    for (const [b, c, p, x, px] of cases) {
      for (const r of [mcnemarFromCounts(b, c), mcnemar(...pairsWith(7, c, b, 2))]) {
        expect(r.n).toBe(b + c);
        expect(Math.abs(r.pExact / p - 1)).toBeLessThan(1e-10);
        expect(r.chi2).toBeCloseTo(x, 10);
        expect(Math.abs(r.pChi2 / px - 1)).toBeLessThan(2e-7);
      }
    }
    expect(mcnemar(...pairsWith(0, 12, 3, 0))).toMatchObject({ b: 12, c: 3 });
    expect(mcnemar(...pairsWith(0, 3, 12, 0))).toMatchObject({ b: 3, c: 12 });
  });

  it('one discordant pair → p = 1 both ways', () => {
    expect(mcnemarFromCounts(1, 0)).toMatchObject({ pExact: 1, chi2: 0, pChi2: 1 });
    expect(binomialTwoSidedP(0, 1)).toBe(1);
  });

  it('refuses arrays of different length and bad counts', () => {
    expect(() => mcnemar([true, false], [true])).toThrow(RangeError);
    expect(() => mcnemar([true, false], [true])).toThrow(/model A has 2 per-pair results and model B 1/);
    expect(() => mcnemarFromCounts(-1, 2)).toThrow(RangeError);
    expect(() => binomialTwoSidedP(3, 2)).toThrow(RangeError);
  });
});

describe('erfc / chi-square(1) tail', () => {
  it('matches math.erfc to 1.2e-7 relative', () => {
    const known: [number, number][] = [
      [0, 1],
      [0.1, 0.8875370839817152],
      [0.5, 0.4795001221869535],
      [1, 0.15729920705028513],
      [2, 0.004677734981047265],
      [3, 2.2090496998585438e-5],
      [5, 1.5374597944280351e-12],
      [-1, 1.842700792949715],
    ];
    for (const [x, v] of known) expect(Math.abs(erfc(x) / v - 1)).toBeLessThan(1.2e-7);
  });

  it('P[χ²₁ ≥ 3.841458820694124] = 0.05; x ≤ 0 → 1', () => {
    expect(chiSquare1Sf(3.841458820694124)).toBeCloseTo(0.05, 7);
    expect(chiSquare1Sf(0)).toBe(1);
  });
});

// Closed forms from /usr/bin/python3: even df, e^{-x/2} Σ_{j<df/2} (x/2)^j / j!; odd df,
// erfc(√(x/2)) + √(2x/π) e^{-x/2} (1 + x/3 + …); 11.0705 and 18.3070 are χ²'s 95% points at 5 and 10 df.
describe('chiSquareSf', () => {
  it('matches the closed forms at 1 to 10 degrees of freedom, on both sides of the series/fraction switch', () => {
    for (const x of [0.01, 0.5, 1, 3.84, 10, 40]) expect(Math.abs(chiSquareSf(x, 1) / chiSquare1Sf(x) - 1)).toBeLessThan(2e-7);
    for (const x of [0.2, 1, 3, 9, 30]) expect(chiSquareSf(x, 2)).toBeCloseTo(Math.exp(-x / 2), 13);
    expect(chiSquareSf(4, 3)).toBeCloseTo(0.26146412994911067, 13);
    expect(chiSquareSf(0.3, 5)).toBeCloseTo(0.9976430862605288, 13);
    expect(chiSquareSf(6.82, 5)).toBeCloseTo(0.23437501682042247, 13);
    expect(chiSquareSf(11.070497693516351, 5)).toBeCloseTo(0.05, 13);
    expect(chiSquareSf(18.307038053275146, 10)).toBeCloseTo(0.05, 13);
    expect(chiSquareSf(200, 10) / 1.6139305336977305e-37).toBeCloseTo(1, 10); // far tail keeps relative precision
  });

  it('is 1 at and below 0, and refuses a non-positive df', () => {
    expect(chiSquareSf(0, 3)).toBe(1);
    expect(chiSquareSf(-1, 3)).toBe(1);
    expect(() => chiSquareSf(1, 0)).toThrow(/df > 0/);
  });
});

describe('cochranQ', () => {
  it("is McNemar's uncorrected statistic for two models", () => {
    // b = 3 (first right only), c = 1, plus pairs both get right or both wrong.
    const a = [true, true, true, false, true, false];
    const b = [false, false, false, true, true, false];
    expect(cochranQ([a, b])).toEqual({ q: expect.closeTo(4 / 4, 12), df: 1, p: expect.closeTo(chiSquareSf(1, 1), 12) });
    expect(cochranQ([a, b])?.q).toBeCloseTo((1 - 3) ** 2 / (3 + 1), 12);
  });

  it('matches a hand-computed three-model case (C = 3, 3, 0; R = 2, 1, 2, 1 → Q = 4.5, p = e^−2.25)', () => {
    const models = [
      [true, true, true, false],
      [true, false, true, true],
      [false, false, false, false],
    ];
    const r = cochranQ(models);
    expect(r).toEqual({ q: expect.closeTo(4.5, 12), df: 2, p: expect.closeTo(Math.exp(-2.25), 12) });
    // Which model is which does not matter; pairs every model agrees on add nothing.
    expect(cochranQ([models[2], models[0], models[1]])?.q).toBeCloseTo(4.5, 12);
    expect(cochranQ(models.map((m) => [...m, true, false]))?.q).toBeCloseTo(4.5, 12);
  });

  it('is null when every model agrees on every pair, and refuses ragged or single inputs', () => {
    expect(
      cochranQ([
        [true, false],
        [true, false],
        [true, false],
      ]),
    ).toBeNull();
    expect(() => cochranQ([[true]])).toThrow(/at least 2/);
    expect(() => cochranQ([[true], [true, false]])).toThrow(/same 1 pairs/);
  });
});

describe('seedNoiseDispersion', () => {
  it('sums Q over the tests with discordant pairs, df = the sum of theirs', () => {
    // Two rows of two seeds (612/621 → 81/1233, 353/409 → 3136/762) and one of three (Q 4.5 on 2 df); df 0 carries nothing.
    const chi2 = 81 / 1233 + 3136 / 762 + 4.5;
    const r = seedNoiseDispersion([
      { q: 81 / 1233, df: 1 },
      { q: 3136 / 762, df: 1 },
      { q: 4.5, df: 2 },
      { q: 0, df: 0 },
    ]);
    expect(r).toEqual({
      df: 4,
      chi2: expect.closeTo(chi2, 12),
      p: expect.closeTo(Math.exp(-chi2 / 2) * (1 + chi2 / 2), 12),
      dispersion: expect.closeTo(chi2 / 4, 12),
    });
  });

  it('is null with no informative test', () => {
    expect(seedNoiseDispersion([])).toBeNull();
    expect(seedNoiseDispersion([{ q: 0, df: 0 }])).toBeNull();
  });
});

// Closed forms: F(1, 1) tail 1 − (2/π)·atan(√x); F(1, 2) 1 − √(x / (x + 2)); F(2, d) (d / (d + 2x))^(d/2);
// 6.607890973703368 is F(1, 5)'s 95% point. F(1, d) tends to χ²₁ as d grows.
describe('fSf', () => {
  it('matches the closed forms, a tabled 95% point, and χ²₁ for large d2', () => {
    expect(fSf(3, 1, 1)).toBeCloseTo(1 / 3, 13);
    expect(fSf(0.81, 1, 2)).toBeCloseTo(0.4631050123552958, 13);
    expect(fSf(4, 2, 7)).toBeCloseTo(0.06942625407850157, 13);
    expect(fSf(400, 2, 7) / 6.078350906480557e-8).toBeCloseTo(1, 10); // far tail keeps relative precision
    expect(fSf(6.607890973703368, 1, 5)).toBeCloseTo(0.05, 12);
    expect(fSf(3.84, 1, 1e7)).toBeCloseTo(chiSquare1Sf(3.84), 5);
    expect(fSf(0, 1, 5)).toBe(1);
    expect(() => fSf(1, 0, 5)).toThrow(/d1, d2 > 0/);
  });
});

describe('mcnemarScaledP', () => {
  it('refers the statistic over max(1, dispersion) to F(1, tests): no jump where the estimate crosses 1', () => {
    // (|10 − 0| − 1)² / 10 = 8.1 against F(1, 5), at and below dispersion 1 alike.
    expect(mcnemarScaledP(10, 0, 1, 5)).toBeCloseTo(fSf(8.1, 1, 5), 14);
    expect(mcnemarScaledP(10, 0, 0.4, 5)).toBe(mcnemarScaledP(10, 0, 1, 5));
    expect(mcnemarScaledP(10, 0, 1.0001, 5)).toBeCloseTo(mcnemarScaledP(10, 0, 1, 5), 4);
    expect(mcnemarScaledP(10, 0, 1, 5)).toBeGreaterThan(mcnemarFromCounts(10, 0).pChi2); // the estimate's own uncertainty
    // Over dispersion 10: 0.81 against F(1, 2).
    expect(mcnemarScaledP(10, 0, 10, 2)).toBeCloseTo(0.4631050123552958, 13);
    expect(mcnemarScaledP(596, 694, 1.5, 5)).toBeCloseTo(fSf(97 ** 2 / 1290 / 1.5, 1, 5), 14);
    expect(mcnemarScaledP(0, 0, 2, 5)).toBe(1);
  });

  it('is never below the exact p (the chi-square form can read under it for few discordant pairs)', () => {
    // b = 3, c = 0: exact 0.25; χ² (4/3) against F(1, 10⁶) ≈ χ²₁ would give 0.248.
    expect(fSf(4 / 3 / 1.0001, 1, 1e6)).toBeLessThan(0.25);
    expect(mcnemarScaledP(3, 0, 1.0001, 1e6)).toBe(mcnemarFromCounts(3, 0).pExact);
    expect(mcnemarFromCounts(3, 0).pExact).toBeCloseTo(0.25, 14);
  });
});
