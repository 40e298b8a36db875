import { z } from 'zod';

/**
 * DDPM noise schedules, precomputed in float64 (as improved-diffusion does): the products over
 * up to 1000 betas lose digits in float32, and every sampler step reads these tables.
 */
export const scheduleConfigSchema = z
  .object({
    kind: z.enum(['linear', 'cosine']).default('linear'),
    /** Number of diffusion steps T. */
    steps: z.number().int().min(2).max(100_000).default(1000),
    /** Linear schedule endpoints, for T = 1000 (scaled by 1000/T like improved-diffusion). */
    betaStart: z.number().positive().max(0.5).default(1e-4),
    betaEnd: z.number().positive().max(0.999).default(0.02),
  })
  .strict()
  .refine((c) => c.betaStart < c.betaEnd, { message: 'betaStart must be below betaEnd', path: ['betaStart'] });
export type ScheduleConfig = z.output<typeof scheduleConfigSchema>;

export interface NoiseSchedule {
  readonly kind: ScheduleConfig['kind'];
  /** T. Timesteps are 0 … T-1 (t = 0 is the least noisy). */
  readonly steps: number;
  readonly betas: Float64Array;
  readonly alphasCumprod: Float64Array;
  /** ᾱ_{t-1}, with ᾱ_{-1} = 1. */
  readonly alphasCumprodPrev: Float64Array;
  readonly sqrtAlphasCumprod: Float64Array;
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** Variance of q(x_{t-1} | x_t, x_0): β_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t). */
  readonly posteriorVariance: Float64Array;
  /** log of it, with the t = 0 entry replaced by t = 1's (the true value is 0). */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** Posterior mean = coef1 · x_0 + coef2 · x_t. */
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
}

export function linearBetas(steps: number, betaStart = 1e-4, betaEnd = 0.02): Float64Array {
  // Endpoints are quoted for T = 1000; scale them so other T give the same total noise.
  const scale = 1000 / steps;
  const lo = scale * betaStart;
  const hi = scale * betaEnd;
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) out[i] = steps === 1 ? lo : lo + ((hi - lo) * i) / (steps - 1);
  return out;
}

/** Nichol & Dhariwal's cosine schedule: ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), betas capped at 0.999. */
export function cosineBetas(steps: number, s = 0.008, maxBeta = 0.999): Float64Array {
  const alphaBar = (t: number): number => Math.cos(((t + s) / (1 + s)) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) out[i] = Math.min(1 - alphaBar((i + 1) / steps) / alphaBar(i / steps), maxBeta);
  return out;
}

export function makeSchedule(config: Partial<ScheduleConfig> = {}): NoiseSchedule {
  const c = scheduleConfigSchema.parse(config);
  const betas = c.kind === 'linear' ? linearBetas(c.steps, c.betaStart, c.betaEnd) : cosineBetas(c.steps);
  return scheduleFromBetas(c.kind, betas);
}

export function scheduleFromBetas(kind: ScheduleConfig['kind'], betas: Float64Array): NoiseSchedule {
  const T = betas.length;
  const alphasCumprod = new Float64Array(T);
  let prod = 1;
  for (let i = 0; i < T; i++) {
    if (!(betas[i] > 0 && betas[i] < 1)) throw new RangeError(`beta[${i}] = ${betas[i]} is outside (0, 1)`);
    prod *= 1 - betas[i];
    alphasCumprod[i] = prod;
  }
  const alphasCumprodPrev = new Float64Array(T);
  alphasCumprodPrev[0] = 1;
  alphasCumprodPrev.set(alphasCumprod.subarray(0, T - 1), 1);
  const map = (f: (i: number) => number): Float64Array => Float64Array.from({ length: T }, (_, i) => f(i));
  const posteriorVariance = map((i) => (betas[i] * (1 - alphasCumprodPrev[i])) / (1 - alphasCumprod[i]));
  return {
    kind,
    steps: T,
    betas,
    alphasCumprod,
    alphasCumprodPrev,
    sqrtAlphasCumprod: map((i) => Math.sqrt(alphasCumprod[i])),
    sqrtOneMinusAlphasCumprod: map((i) => Math.sqrt(1 - alphasCumprod[i])),
    posteriorVariance,
    posteriorLogVarianceClipped: map((i) => Math.log(i === 0 ? posteriorVariance[Math.min(1, T - 1)] : posteriorVariance[i])),
    posteriorMeanCoef1: map((i) => (betas[i] * Math.sqrt(alphasCumprodPrev[i])) / (1 - alphasCumprod[i])),
    posteriorMeanCoef2: map((i) => ((1 - alphasCumprodPrev[i]) * Math.sqrt(1 - betas[i])) / (1 - alphasCumprod[i])),
  };
}

/**
 * Evenly spaced sub-sequence of `count` timesteps for DDIM, descending from T-1 (the "trailing"
 * spacing: it always starts at the noisiest step, so sampling begins from pure noise).
 */
export function ddimTimesteps(totalSteps: number, count: number): number[] {
  if (!Number.isInteger(count) || count < 1 || count > totalSteps) {
    throw new RangeError(`DDIM step count ${count} must be an integer in [1, ${totalSteps}]`);
  }
  const out: number[] = [];
  for (let k = count; k >= 1; k--) out.push(Math.round((k * totalSteps) / count) - 1);
  return out;
}

/** The ID³ identity-term weight γ_t = 0.5·(1 − σ(t/T)) (largest at low noise). */
export function identityWeight(t: number, totalSteps: number): number {
  return 0.5 * (1 - 1 / (1 + Math.exp(-t / totalSteps)));
}
