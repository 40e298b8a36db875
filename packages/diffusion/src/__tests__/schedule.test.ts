import { cosineBetas, ddimTimesteps, identityWeight, linearBetas, makeSchedule } from '../schedule';

// Golden ᾱ_t computed independently with numpy (float64): np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
// and the improved-diffusion cosine betas (s = 0.008, capped at 0.999).
const LINEAR_1000: Record<number, number> = {
  0: 0.9999,
  1: 0.9997800920720721,
  10: 0.997806572507846,
  100: 0.8951415908975365,
  499: 0.07858724288177824,
  999: 4.035829765375676e-5,
};
const COSINE_1000: Record<number, number> = {
  0: 0.999958715775178,
  1: 0.9999125759273678,
  10: 0.9992789037733427,
  100: 0.9715756818078386,
  499: 0.4938435904406382,
  999: 2.4287669070348567e-9,
};
const LINEAR_100: Record<number, number> = { 0: 0.999, 50: 0.06666562681829521, 99: 2.039008975564078e-5 };

describe('noise schedules', () => {
  it.each([
    ['linear T=1000', makeSchedule({ kind: 'linear', steps: 1000 }), LINEAR_1000],
    ['cosine T=1000', makeSchedule({ kind: 'cosine', steps: 1000 }), COSINE_1000],
    ['linear T=100 (endpoints scaled by 1000/T)', makeSchedule({ kind: 'linear', steps: 100 }), LINEAR_100],
  ])('%s matches golden ᾱ_t', (_name, schedule, golden) => {
    for (const [t, value] of Object.entries(golden)) {
      expect(schedule.alphasCumprod[Number(t)] / value).toBeCloseTo(1, 10);
    }
  });

  it('derived tables are consistent', () => {
    const s = makeSchedule({ kind: 'linear', steps: 1000 });
    expect(s.alphasCumprodPrev[0]).toBe(1);
    expect(s.alphasCumprodPrev[500]).toBe(s.alphasCumprod[499]);
    for (const t of [1, 10, 500, 999]) {
      expect(s.sqrtAlphasCumprod[t] ** 2 + s.sqrtOneMinusAlphasCumprod[t] ** 2).toBeCloseTo(1, 12);
      // posterior variance β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) lies between 0 and β_t
      expect(s.posteriorVariance[t]).toBeGreaterThan(0);
      expect(s.posteriorVariance[t]).toBeLessThanOrEqual(s.betas[t]);
      // posterior mean of x_{t-1} given x_0 = x_t = 1 must be ≤ max(…) and the coefs sum sensibly
      expect(s.posteriorMeanCoef1[t]).toBeGreaterThan(0);
      expect(s.posteriorMeanCoef2[t]).toBeGreaterThan(0);
    }
    expect(s.posteriorVariance[0]).toBe(0);
    expect(s.posteriorLogVarianceClipped[0]).toBe(Math.log(s.posteriorVariance[1]));
  });

  it('linear betas run from start to end; cosine betas are capped', () => {
    const b = linearBetas(1000);
    expect(b[0]).toBeCloseTo(1e-4, 15);
    expect(b[999]).toBeCloseTo(0.02, 15);
    expect(Math.max(...cosineBetas(1000))).toBeLessThanOrEqual(0.999);
  });

  it('rejects bad configs with the field', () => {
    expect(() => makeSchedule({ betaStart: 0.1, betaEnd: 0.01 })).toThrow(/betaStart/);
    expect(() => makeSchedule({ steps: 1 })).toThrow();
  });

  it('DDIM sub-sequences start at the noisiest step and descend', () => {
    expect(ddimTimesteps(1000, 4)).toEqual([999, 749, 499, 249]);
    expect(ddimTimesteps(10, 10)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    expect(() => ddimTimesteps(10, 11)).toThrow(RangeError);
  });

  it('γ_t = 0.5 (1 − σ(t/T))', () => {
    expect(identityWeight(0, 1000)).toBeCloseTo(0.25, 12);
    expect(identityWeight(1000, 1000)).toBeCloseTo(0.5 * (1 - 1 / (1 + Math.exp(-1))), 12);
    expect(identityWeight(1000, 1000)).toBeCloseTo(0.1344707, 6);
  });
});
