import { z } from 'zod';
import { tf } from '@id3/core';
import { identityWeight, type GuidanceHook, type NoiseSchedule, type TeacherInput, type UNet } from '@id3/diffusion';
import type { FaceEmbedder } from '@id3/faces';

/**
 * ID-preserving guidance (ID-METHOD: ε̃ = ε_θ − w·sqrt(1−ᾱ_t)·γ_t·g, g = ∇_{x_t}⟨f(x̂0), y⟩).
 * `gradient: 'x0'` takes g w.r.t. x̂0 and divides by sqrt(ᾱ_t) — x̂0's sensitivity to x_t when
 * the network's own Jacobian is ignored: one teacher forward + backward, no backward through
 * the UNet. `'full'` differentiates through the UNet too. Where it applies is a setting: the
 * last `lastFraction` of the trajectory (t < lastFraction·T), every `every`-th step of it
 * counted back from the final step (which is always guided when any step is).
 */
export const guidanceConfigSchema = z
  .object({
    /** w; 0 = plain conditional sampling (the paper's ablation). */
    scale: z.number().nonnegative().default(0),
    every: z.number().int().positive().default(1),
    lastFraction: z.number().gt(0).max(1).default(1),
    gradient: z.enum(['x0', 'full']).default('x0'),
  })
  .strict();
export type GuidanceConfig = z.output<typeof guidanceConfigSchema>;

/** The timesteps of a sampling loop (noisiest first) at which guidance applies. */
export function guidedTimesteps(
  timesteps: readonly number[],
  totalSteps: number,
  o: Pick<GuidanceConfig, 'scale' | 'every' | 'lastFraction'>,
): Set<number> {
  const out = new Set<number>();
  if (o.scale === 0) return out;
  const late = timesteps.filter((t) => t < o.lastFraction * totalSteps);
  late.forEach((t, i) => {
    if ((late.length - 1 - i) % o.every === 0) out.add(t);
  });
  return out;
}

/** The per-step guidance coefficient c_t with correction = c_t · ∇_{x̂0}⟨f, y⟩ (x0 mode). */
export function x0GuidanceCoefficient(schedule: NoiseSchedule, t: number, scale: number): number {
  const a = schedule.alphasCumprod[t];
  return (-scale * Math.sqrt(1 - a) * identityWeight(t, schedule.steps)) / Math.sqrt(a);
}

export interface IdentityGuidanceOptions {
  readonly teacher: FaceEmbedder;
  readonly input: TeacherInput;
  /** [b, dim] unit identity embeddings of the batch, in the teacher's space. */
  readonly y: tf.Tensor2D;
  readonly schedule: NoiseSchedule;
  readonly config: GuidanceConfig;
  readonly at: ReadonlySet<number>;
  /** For `gradient: 'full'`: the network and the batch's other conditions. */
  readonly net?: UNet;
  readonly s?: tf.Tensor2D;
  /** The network's condition rows when they are not y (a generator conditioned in an identity space). */
  readonly condition?: tf.Tensor2D;
}

/** Σ_i ⟨f(x_i), y_i⟩ through the teacher (f is L2-normalised, so this is a sum of cosines). */
export function identitySimilarity(teacher: FaceEmbedder, input: TeacherInput, x0: tf.Tensor4D, y: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.mul(teacher.embed(input.apply(x0)), y)) as tf.Scalar);
}

/** The sampler's GuidanceHook for one batch; undefined at unguided steps. */
export function identityGuidance(o: IdentityGuidanceOptions): GuidanceHook {
  const { schedule, config } = o;
  return (xt, t, predX0) => {
    if (!o.at.has(t)) return undefined;
    const a = schedule.alphasCumprod[t];
    if (config.gradient === 'x0') {
      const g = tf.grad((x: tf.Tensor) => identitySimilarity(o.teacher, o.input, x as tf.Tensor4D, o.y))(predX0) as tf.Tensor4D;
      const c = tf.mul(g, x0GuidanceCoefficient(schedule, t, config.scale)) as tf.Tensor4D;
      g.dispose();
      return c;
    }
    if (!o.net || !o.s) throw new Error('identityGuidance: gradient "full" needs the network and s');
    const net = o.net;
    const s = o.s;
    const ts = new Array<number>(xt.shape[0]).fill(t);
    const g = tf.grad((x: tf.Tensor) => {
      const eps = net.forward({ xt: x as tf.Tensor4D, t: ts, y: o.condition ?? o.y, s });
      // Not clipped: the clip's zero gradient would switch guidance off wherever x̂0 overshoots.
      const x0 = tf.div(tf.sub(x, tf.mul(Math.sqrt(1 - a), eps)), Math.sqrt(a)) as tf.Tensor4D;
      return identitySimilarity(o.teacher, o.input, x0, o.y);
    })(xt) as tf.Tensor4D;
    const c = tf.mul(g, -config.scale * Math.sqrt(1 - a) * identityWeight(t, schedule.steps)) as tf.Tensor4D;
    g.dispose();
    return c;
  };
}
