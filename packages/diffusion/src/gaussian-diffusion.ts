import { tf, type Rng } from '@id3/core';
import { ddimTimesteps, type NoiseSchedule } from './schedule';

/** ε-prediction network with its conditions bound: (x_t, per-sample t) → ε̂. */
export type EpsModel = (xt: tf.Tensor4D, t: readonly number[]) => tf.Tensor4D;

/**
 * Sampling guidance: given x_t, the (shared) timestep and the current x̂0, return a correction
 * that is ADDED to ε̂ (or undefined for none). The ID-preserving term of the sampler issue is
 * ε̃ = ε̂ − w·sqrt(1−ᾱ_t)·γ_t·∇⟨f(x̂0), y⟩, i.e. a correction of −w·sqrt(1−ᾱ_t)·γ_t·g.
 * Called inside no tidy scope: it may use tf.grad; the returned tensor is disposed by the caller.
 */
export type GuidanceHook = (xt: tf.Tensor4D, t: number, predX0: tf.Tensor4D) => tf.Tensor4D | undefined;

export interface SampleOptions {
  readonly rng: Rng;
  /**
   * Where the loop's Gaussian noise comes from (x_T, then each stochastic step's z), in draw
   * order; default: `rng`. The sampler gives each image its own stream, so an image depends on
   * its own seed only, whichever batch it is drawn in.
   */
  readonly noise?: NoiseSource;
  /** Clip x̂0 to [-1, 1] before using it (images live there). Default true. */
  readonly clipDenoised?: boolean;
  readonly guidance?: GuidanceHook;
}

export interface DdimOptions extends SampleOptions {
  /** Number of DDIM steps over the T-step schedule. */
  readonly steps: number;
  /** 0 = deterministic DDIM, 1 = DDPM-like variance. */
  readonly eta?: number;
}

export interface SampleStep {
  /** Index of this step in the loop (0-based) and the loop length. */
  readonly index: number;
  readonly count: number;
  readonly t: number;
  /** Valid until the generator is resumed (then disposed). */
  readonly sample: tf.Tensor4D;
  readonly predX0: tf.Tensor4D;
}

/** Draws a standard-normal tensor of the given shape. */
export type NoiseSource = (shape: readonly number[]) => tf.Tensor;

/** Per-sample noise: sample i's values come from streams[i] alone (shape[0] = streams.length). */
export function perSampleNoise(streams: readonly Rng[]): NoiseSource {
  return (shape) => {
    if (shape[0] !== streams.length) throw new RangeError(`perSampleNoise: batch ${shape[0]} but ${streams.length} streams`);
    const per = shape.slice(1).reduce((a, b) => a * b, 1);
    const values = new Float32Array(shape[0] * per);
    streams.forEach((rng, i) => rng.fillNormal(values.subarray(i * per, (i + 1) * per)));
    return tf.tensor(values, [...shape], 'float32');
  };
}

const drawNoise = (o: SampleOptions, shape: readonly number[]): tf.Tensor => (o.noise ? o.noise(shape) : gaussianNoise(o.rng, shape));

/** Standard-normal tensor drawn from our seeded, checkpointable RNG (not tf.randomNormal). */
export function gaussianNoise(rng: Rng, shape: readonly number[]): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(rng.fillNormal(new Float32Array(n)), [...shape], 'float32');
}

/**
 * The diffusion process of improved-diffusion's GaussianDiffusion: owns the schedule, takes the
 * network as an argument, knows nothing of its architecture. All images are NHWC in [-1, 1].
 */
export class GaussianDiffusion {
  constructor(readonly schedule: NoiseSchedule) {}

  get steps(): number {
    return this.schedule.steps;
  }

  /** Per-sample coefficient table[t_i] as a [b, 1, 1, 1] float32 tensor. */
  coefficient(table: Float64Array, t: readonly number[]): tf.Tensor4D {
    const values = new Float32Array(t.length);
    for (let i = 0; i < t.length; i++) {
      const ti = t[i];
      if (!Number.isInteger(ti) || ti < 0 || ti >= this.steps) throw new RangeError(`timestep ${ti} outside [0, ${this.steps - 1}]`);
      values[i] = table[ti];
    }
    return tf.tensor4d(values, [t.length, 1, 1, 1]);
  }

  /** x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε. */
  qSample(x0: tf.Tensor4D, t: readonly number[], noise: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() =>
      tf.add(
        tf.mul(this.coefficient(this.schedule.sqrtAlphasCumprod, t), x0),
        tf.mul(this.coefficient(this.schedule.sqrtOneMinusAlphasCumprod, t), noise),
      ),
    );
  }

  /** x̂0 = (x_t − sqrt(1−ᾱ_t)·ε) / sqrt(ᾱ_t). Differentiable in x_t and ε. */
  predictX0FromEps(xt: tf.Tensor4D, t: readonly number[], eps: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const { sqrtAlphasCumprod: a, sqrtOneMinusAlphasCumprod: s } = this.schedule;
      const inv = Float64Array.from(a, (v) => 1 / v);
      const ratio = Float64Array.from(a, (v, i) => s[i] / v);
      return tf.sub(tf.mul(this.coefficient(inv, t), xt), tf.mul(this.coefficient(ratio, t), eps));
    });
  }

  /** ε = (x_t − sqrt(ᾱ_t)·x̂0) / sqrt(1−ᾱ_t). */
  predictEpsFromX0(xt: tf.Tensor4D, t: readonly number[], x0: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(
      () =>
        tf.div(
          tf.sub(xt, tf.mul(this.coefficient(this.schedule.sqrtAlphasCumprod, t), x0)),
          this.coefficient(this.schedule.sqrtOneMinusAlphasCumprod, t),
        ) as tf.Tensor4D,
    );
  }

  /** Mean and variance of q(x_{t-1} | x_t, x_0). */
  qPosterior(
    x0: tf.Tensor4D,
    xt: tf.Tensor4D,
    t: readonly number[],
  ): { mean: tf.Tensor4D; variance: tf.Tensor4D; logVariance: tf.Tensor4D } {
    const s = this.schedule;
    const mean = tf.tidy(
      () =>
        tf.add(tf.mul(this.coefficient(s.posteriorMeanCoef1, t), x0), tf.mul(this.coefficient(s.posteriorMeanCoef2, t), xt)) as tf.Tensor4D,
    );
    return { mean, variance: this.coefficient(s.posteriorVariance, t), logVariance: this.coefficient(s.posteriorLogVarianceClipped, t) };
  }

  /** ε̂ at a shared timestep, plus guidance, plus the (clipped) x̂0 it implies. */
  private guidedEps(model: EpsModel, xt: tf.Tensor4D, t: number, o: SampleOptions): { eps: tf.Tensor4D; predX0: tf.Tensor4D } {
    const ts = new Array<number>(xt.shape[0]).fill(t);
    const clip = o.clipDenoised ?? true;
    const x0Of = (eps: tf.Tensor4D): tf.Tensor4D =>
      tf.tidy(() => {
        const x0 = this.predictX0FromEps(xt, ts, eps);
        return clip ? tf.clipByValue(x0, -1, 1) : x0;
      });
    let eps = tf.tidy(() => model(xt, ts));
    let predX0 = x0Of(eps);
    const correction = o.guidance?.(xt, t, predX0);
    if (correction) {
      const guided = tf.add(eps, correction) as tf.Tensor4D;
      correction.dispose();
      eps.dispose();
      predX0.dispose();
      eps = guided;
      predX0 = x0Of(eps);
    }
    // Re-derive ε from the clipped x̂0 so the step is consistent with the clipping.
    if (clip) {
      const consistent = this.predictEpsFromX0(xt, ts, predX0);
      eps.dispose();
      eps = consistent;
    }
    return { eps, predX0 };
  }

  /** One DDPM ancestral step x_t → x_{t-1} (no noise at t = 0). */
  ddpmStep(model: EpsModel, xt: tf.Tensor4D, t: number, o: SampleOptions): { sample: tf.Tensor4D; predX0: tf.Tensor4D } {
    const { eps, predX0 } = this.guidedEps(model, xt, t, o);
    eps.dispose();
    const ts = new Array<number>(xt.shape[0]).fill(t);
    const sample = tf.tidy(() => {
      const { mean, logVariance } = this.qPosterior(predX0, xt, ts);
      if (t === 0) return mean;
      return tf.add(mean, tf.mul(tf.exp(tf.mul(0.5, logVariance)), drawNoise(o, xt.shape))) as tf.Tensor4D;
    });
    return { sample, predX0 };
  }

  /**
   * One DDIM step x_t → x_{tPrev} (tPrev = −1 means to x_0), Song et al. eq. 12:
   * x_{t'} = sqrt(ᾱ_{t'})·x̂0 + sqrt(1 − ᾱ_{t'} − σ²)·ε̂ + σ·z,
   * σ = η·sqrt((1−ᾱ_{t'})/(1−ᾱ_t))·sqrt(1 − ᾱ_t/ᾱ_{t'}).
   */
  ddimStep(
    model: EpsModel,
    xt: tf.Tensor4D,
    t: number,
    tPrev: number,
    o: SampleOptions & { eta?: number },
  ): { sample: tf.Tensor4D; predX0: tf.Tensor4D } {
    const { eps, predX0 } = this.guidedEps(model, xt, t, o);
    const a = this.schedule.alphasCumprod[t];
    const aPrev = tPrev >= 0 ? this.schedule.alphasCumprod[tPrev] : 1;
    const eta = o.eta ?? 0;
    const sigma = eta * Math.sqrt((1 - aPrev) / (1 - a)) * Math.sqrt(1 - a / aPrev);
    const dirCoef = Math.sqrt(Math.max(0, 1 - aPrev - sigma * sigma));
    const sample = tf.tidy(() => {
      const mean = tf.add(tf.mul(Math.sqrt(aPrev), predX0), tf.mul(dirCoef, eps)) as tf.Tensor4D;
      return sigma > 0 && tPrev >= 0 ? (tf.add(mean, tf.mul(sigma, drawNoise(o, xt.shape))) as tf.Tensor4D) : mean;
    });
    eps.dispose();
    return { sample, predX0 };
  }

  /** DDIM sampling from pure noise; yields every step (tensors valid until the next resume). */
  *ddimLoop(model: EpsModel, shape: readonly [number, number, number, number], o: DdimOptions): Generator<SampleStep, tf.Tensor4D, void> {
    const ts = ddimTimesteps(this.steps, o.steps);
    let x = drawNoise(o, shape) as tf.Tensor4D;
    for (const [index, t] of ts.entries()) {
      const tPrev = index + 1 < ts.length ? ts[index + 1] : -1;
      const { sample, predX0 } = this.ddimStep(model, x, t, tPrev, o);
      x.dispose();
      x = sample;
      yield { index, count: ts.length, t, sample, predX0 };
      predX0.dispose();
    }
    return x;
  }

  /** DDPM ancestral sampling over all T steps. */
  *ddpmLoop(model: EpsModel, shape: readonly [number, number, number, number], o: SampleOptions): Generator<SampleStep, tf.Tensor4D, void> {
    let x = drawNoise(o, shape) as tf.Tensor4D;
    for (let t = this.steps - 1; t >= 0; t--) {
      const { sample, predX0 } = this.ddpmStep(model, x, t, o);
      x.dispose();
      x = sample;
      yield { index: this.steps - 1 - t, count: this.steps, t, sample, predX0 };
      predX0.dispose();
    }
    return x;
  }
}

/** Drive a sampling loop to the end (optionally observing each step); returns the final sample. */
export function runLoop(loop: Generator<SampleStep, tf.Tensor4D, void>, onStep?: (step: SampleStep) => void): tf.Tensor4D {
  for (;;) {
    const r = loop.next();
    if (r.done) return r.value;
    onStep?.(r.value);
  }
}
