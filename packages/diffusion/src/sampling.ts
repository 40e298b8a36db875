import { Rng, tf } from '@id3/core';
import { runLoop, type EpsModel, type GaussianDiffusion, type GuidanceHook } from './gaussian-diffusion';
import type { UNet } from './unet';

/** Conditions for a batch of samples: rows of y (unit, d) and s (scaled attributes). */
export interface Conditions {
  readonly y: Float32Array;
  readonly s: Float32Array;
  readonly count: number;
}

/**
 * Conditional DDIM samples for the given conditions, in chunks to bound memory. Values in [-1, 1].
 * `guidance` (the sampler stage's identity guidance) goes to every DDIM step: it gets each
 * chunk's x_t, t and x̂0 in turn, so a hook that closes over per-sample conditions needs
 * chunk ≥ count. `cfgScale` ≠ 1: classifier-free guidance, ε = ε(∅) + w·(ε(c) − ε(∅)) with ∅ the
 * dropped condition the trainer learns (w = 0: unconditional; w > 1 amplifies what the condition changes).
 */
export async function sampleConditions(
  net: UNet,
  diffusion: GaussianDiffusion,
  cond: Conditions,
  o: { ddimSteps: number; eta?: number; seed: number; chunk?: number; guidance?: GuidanceHook; cfgScale?: number },
): Promise<Float32Array> {
  const r = net.config.resolution;
  const d = net.config.identityDim;
  const a = net.config.attributeDim;
  const px = r * r * 3;
  const out = new Float32Array(cond.count * px);
  const rng = new Rng(o.seed).fork('sample');
  const chunk = o.chunk ?? 32;
  for (let start = 0; start < cond.count; start += chunk) {
    const n = Math.min(chunk, cond.count - start);
    const y = tf.tensor2d(cond.y.subarray(start * d, (start + n) * d), [n, d]);
    const s = tf.tensor2d(cond.s.subarray(start * a, (start + n) * a), [n, a]);
    const w = o.cfgScale ?? 1;
    const drop = w !== 1 ? tf.zeros([n, 1]) : undefined;
    const eps: EpsModel = (xt, t) =>
      tf.tidy(() => {
        const conditional = net.forward({ xt, t, y, s });
        if (!drop) return conditional;
        const unconditional = net.forward({ xt, t, y, s, keepCondition: drop as tf.Tensor2D });
        return tf.add(unconditional, tf.mul(w, tf.sub(conditional, unconditional))) as tf.Tensor4D;
      });
    try {
      const x = runLoop(
        diffusion.ddimLoop(eps, [n, r, r, 3], {
          steps: o.ddimSteps,
          eta: o.eta ?? 0,
          rng,
          guidance: o.guidance,
        }),
      );
      out.set((await x.data()) as Float32Array, start * px);
      x.dispose();
    } finally {
      tf.dispose([y, s, ...(drop ? [drop] : [])]);
    }
    await new Promise((resolve) => setImmediate(resolve)); // let progress timers run
  }
  return out;
}
