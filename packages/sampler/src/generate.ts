import { z } from 'zod';
import { Rng, tf } from '@id3/core';
import { ddimTimesteps, embedCrops, perSampleNoise, runLoop, TeacherInput, type EpsModel, type LoadedGenerator } from '@id3/diffusion';
import type { FaceEmbedder, RgbImage } from '@id3/faces';
import { readFace, type FaceCheck } from './face-check';
import { guidedTimesteps, identityGuidance, type GuidanceConfig } from './guidance';
import { imageSeed } from './seeds';

export const samplerLoopSchema = z
  .object({
    /** DDIM over a sub-sequence of the T steps, or DDPM's T ancestral steps. */
    kind: z.enum(['ddim', 'ddpm']).default('ddim'),
    steps: z.number().int().positive().default(50),
    eta: z.number().min(0).max(1).default(0),
    /** Classifier-free guidance on the condition: ε_u + c·(ε_c − ε_u); 1 = off (needs condition dropout in training). */
    cfgScale: z.number().nonnegative().default(1),
    /** Largest UNet batch; an identity's images are drawn in fixed slot order, so chunks are deterministic. */
    maxBatch: z.number().int().positive().default(64),
  })
  .strict();
export type SamplerLoop = z.output<typeof samplerLoopSchema>;

export const filterConfigSchema = z
  .object({
    /** Reject an image whose teacher cosine to its own y is below this. */
    minSimilarity: z.number().min(-1).max(1).default(0),
    /** Reject an image whose 68 landmarks do not form a face (see face-check.ts). */
    faceCheck: z.boolean().default(true),
    /** The face check's threshold: this quantile of real crops' residuals. */
    faceQuantile: z.number().gt(0.5).max(1).default(0.99),
    /** Real crops the face check is calibrated on. */
    faceCalibrationImages: z.number().int().min(8).default(200),
    /** Replacement attempts per rejected image (each with its own seed). */
    replacements: z.number().int().nonnegative().default(2),
    /** Identities left with fewer accepted images are dropped (default: half of the slots). */
    minImagesPerIdentity: z.number().int().positive().optional(),
    /** The card warns when more than this fraction of generated images was rejected. */
    warnRejectedFraction: z.number().min(0).max(1).default(0.3),
  })
  .strict();
export type FilterConfig = z.output<typeof filterConfigSchema>;

/** One generated image (accepted or not), as manifest.jsonl records it. */
export interface AttemptRecord {
  readonly identity: number;
  readonly slot: number;
  readonly attempt: number;
  readonly seed: number;
  readonly similarity: number;
  readonly faceResidual: number | null;
  readonly yawRead: number | null;
  readonly accepted: boolean;
  readonly rejectedBy: 'similarity' | 'face' | null;
}

export interface IdentityOutcome {
  readonly attempts: AttemptRecord[];
  /** Per slot: the accepted image (uint8 RGB) or undefined. */
  readonly images: (Uint8Array | undefined)[];
  /** Per slot: the accepted image's teacher embedding (flip-summed, unit), zeros if none. */
  readonly embeddings: Float32Array;
}

export function quantise(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let k = 0; k < values.length; k++) out[k] = Math.max(0, Math.min(255, Math.round((values[k] + 1) * 127.5)));
  return out;
}

const toUnit = (bytes: Uint8Array): Float32Array => Float32Array.from(bytes, (v) => v / 127.5 - 1);

/**
 * Draws images for identity conditions with the ID-preserving sampler, and filters them. An
 * image is a function of the model, its (y, s), its seed, and the slots it is drawn with (its
 * identity's round: batches are not bit-independent on every backend, so an identity's round is
 * always drawn as one fixed batch — regenerating an identity reproduces it byte for byte).
 */
export class IdentitySampler {
  readonly input: TeacherInput;
  private readonly timesteps: readonly number[];

  constructor(
    readonly generator: LoadedGenerator,
    readonly teacher: FaceEmbedder,
    readonly loop: SamplerLoop,
    readonly guidance: GuidanceConfig,
    readonly filter: FilterConfig,
    readonly faceCheck: FaceCheck | undefined,
    readonly runSeed: number,
  ) {
    this.input = TeacherInput.forTeacher(teacher, generator.net.config.resolution);
    const T = generator.diffusion.schedule.steps;
    this.timesteps = loop.kind === 'ddim' ? ddimTimesteps(T, loop.steps) : Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  get resolution(): number {
    return this.generator.net.config.resolution;
  }

  /** Timesteps (noisiest first) the loop visits, and how many of them are guided. */
  guidedSteps(guidance: GuidanceConfig = this.guidance): { total: number; guided: number } {
    return {
      total: this.timesteps.length,
      guided: guidedTimesteps(this.timesteps, this.generator.diffusion.schedule.steps, guidance).size,
    };
  }

  /** One batch: rows of y (unit teacher embeddings) and s, one seed per image → images in [-1, 1]. */
  sample(y: Float32Array, s: Float32Array, seeds: readonly number[], guidance: GuidanceConfig = this.guidance): Float32Array {
    const { net, diffusion } = this.generator;
    const r = this.resolution;
    const n = seeds.length;
    const d = this.generator.descriptor.identityDim;
    const a = net.config.attributeDim;
    const yT = tf.tensor2d(y, [n, d]);
    // What the network is conditioned on (y itself, or y in the generator's identity space).
    const c = this.generator.conditionOf(y);
    const cT = c === y ? yT : tf.tensor2d(c, [n, net.config.identityDim]);
    const sT = tf.tensor2d(s, [n, a]);
    const drop = this.loop.cfgScale !== 1 ? tf.zeros([n, 1]) : undefined;
    const eps: EpsModel = (xt, t) =>
      tf.tidy(() => {
        const cond = net.forward({ xt, t, y: cT, s: sT });
        if (!drop) return cond;
        const uncond = net.forward({ xt, t, y: cT, s: sT, keepCondition: drop as tf.Tensor2D });
        return tf.add(uncond, tf.mul(this.loop.cfgScale, tf.sub(cond, uncond))) as tf.Tensor4D;
      });
    const at = guidedTimesteps(this.timesteps, diffusion.schedule.steps, guidance);
    const hook =
      at.size > 0
        ? identityGuidance({
            teacher: this.teacher,
            input: this.input,
            y: yT,
            s: sT,
            condition: cT,
            net,
            schedule: diffusion.schedule,
            config: guidance,
            at,
          })
        : undefined;
    const o = { rng: new Rng(0), noise: perSampleNoise(seeds.map((seed) => new Rng(seed))), guidance: hook };
    try {
      const shape = [n, r, r, 3] as const;
      const x = runLoop(
        this.loop.kind === 'ddim'
          ? diffusion.ddimLoop(eps, shape, { ...o, steps: this.loop.steps, eta: this.loop.eta })
          : diffusion.ddpmLoop(eps, shape, o),
      );
      const values = x.dataSync() as Float32Array;
      x.dispose();
      return values;
    } finally {
      tf.dispose([yT, cT, sT]);
      drop?.dispose();
    }
  }

  /** Frees the teacher-input matrices (the generator and teacher belong to the caller). */
  dispose(): void {
    this.input.dispose();
  }

  /** Sample in chunks of maxBatch (fixed by slot order). */
  private sampleChunked(y: Float32Array, s: Float32Array, seeds: readonly number[]): Float32Array {
    const r = this.resolution;
    const px = r * r * 3;
    const d = this.generator.descriptor.identityDim;
    const a = this.generator.net.config.attributeDim;
    const out = new Float32Array(seeds.length * px);
    for (let start = 0; start < seeds.length; start += this.loop.maxBatch) {
      const end = Math.min(seeds.length, start + this.loop.maxBatch);
      out.set(this.sample(y.subarray(start * d, end * d), s.subarray(start * a, end * a), seeds.slice(start, end)), start * px);
    }
    return out;
  }

  /**
   * All slots of one identity: draw, filter, redraw the rejected ones with their next seeds up
   * to `replacements` times. Rows of y and s are per slot.
   */
  async generateIdentity(identity: number, y: Float32Array, s: Float32Array): Promise<IdentityOutcome> {
    const d = this.generator.descriptor.identityDim;
    const a = this.generator.net.config.attributeDim;
    const r = this.resolution;
    const px = r * r * 3;
    const slots = y.length / d;
    const images: (Uint8Array | undefined)[] = new Array(slots).fill(undefined);
    const embeddings = new Float32Array(slots * this.teacher.dim);
    const attempts: AttemptRecord[] = [];
    let pending = Array.from({ length: slots }, (_, j) => j);
    for (let attempt = 0; attempt <= this.filter.replacements && pending.length > 0; attempt++) {
      const seeds = pending.map((j) => imageSeed(this.runSeed, identity, j, attempt));
      const py = new Float32Array(pending.length * d);
      const ps = new Float32Array(pending.length * a);
      pending.forEach((j, i) => {
        py.set(y.subarray(j * d, (j + 1) * d), i * d);
        ps.set(s.subarray(j * a, (j + 1) * a), i * a);
      });
      const bytes = quantise(this.sampleChunked(py, ps, seeds));
      // Judge the image that will be saved (quantised), not the float sample.
      const emb = await embedCrops(this.teacher, this.input, toUnit(bytes), r);
      const next: number[] = [];
      for (const [i, j] of pending.entries()) {
        let similarity = 0;
        for (let k = 0; k < d; k++) similarity += emb[i * d + k] * py[i * d + k];
        const image: RgbImage = { width: r, height: r, data: bytes.subarray(i * px, (i + 1) * px) };
        const face = this.faceCheck ? await readFace(image, this.faceCheck) : undefined;
        const rejectedBy =
          similarity < this.filter.minSimilarity ? 'similarity' : face && !(face.residual <= this.faceCheck!.threshold) ? 'face' : null;
        attempts.push({
          identity,
          slot: j,
          attempt,
          seed: seeds[i],
          similarity,
          faceResidual: face?.residual ?? null,
          yawRead: face?.yaw ?? null,
          accepted: rejectedBy === null,
          rejectedBy,
        });
        if (rejectedBy === null) {
          images[j] = bytes.slice(i * px, (i + 1) * px);
          embeddings.set(emb.subarray(i * d, (i + 1) * d), j * d);
        } else next.push(j);
      }
      pending = next;
    }
    return { attempts, images, embeddings };
  }
}
