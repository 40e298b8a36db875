import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { InvalidInputError, writeJsonAtomic } from '@id3/core';
import { GaussianDiffusion } from './gaussian-diffusion';
import { makeSchedule, scheduleConfigSchema } from './schedule';
import { UNet } from './unet';

/**
 * A trained generator as one folder: EMA weights (`ema.json` + `ema.bin`) and `generator.json`,
 * which says everything a sampler needs besides the weights — the noise schedule, the teacher
 * whose space y lives in, how attributes s are scaled, and which prepared images were held out
 * of training. `train-diffusion` writes it into its `model/` folder; a shipped model under
 * `models/<name>/` is the same folder, so a run can sample from either.
 */
export const GENERATOR_FORMAT = 'id3-generator/1';

export const generatorDescriptorSchema = z
  .object({
    format: z.literal(GENERATOR_FORMAT),
    weights: z.string().min(1),
    resolution: z.number().int().positive(),
    schedule: scheduleConfigSchema,
    teacher: z.string().min(1),
    identityDim: z.number().int().positive(),
    /** Identity space the condition y lives in ('teacher' = the teacher's own unit sphere). */
    identitySpace: z.string().default('teacher'),
    attributes: z.object({ columns: z.array(z.string()), scaling: z.string() }).strict(),
    /** sha256 of the prepared (scaled) attributes it trained on — identifies the prepared set — and the rows held out of training. */
    trainingData: z
      .object({ attributesSha256: z.string(), images: z.number().int().nonnegative(), heldOut: z.array(z.number().int()) })
      .strict(),
    steps: z.number().int().nonnegative(),
  })
  .strict();
export type GeneratorDescriptor = z.output<typeof generatorDescriptorSchema>;

export function writeGeneratorDescriptor(dir: string, descriptor: GeneratorDescriptor): string {
  const path = join(dir, 'generator.json');
  writeJsonAtomic(path, generatorDescriptorSchema.parse(descriptor));
  return path;
}

/** Read and validate `generator.json` (a path to it or to its folder); errors name the file and field. */
export function readGeneratorDescriptor(pathOrDir: string): { path: string; descriptor: GeneratorDescriptor } {
  const path = pathOrDir.endsWith('.json') ? pathOrDir : join(pathOrDir, 'generator.json');
  if (!existsSync(path))
    throw new InvalidInputError(`${path}: no generator descriptor (expected a train-diffusion model folder)`, { file: path });
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new InvalidInputError(`${path}: not JSON: ${(err as Error).message}`, { file: path });
  }
  const parsed = generatorDescriptorSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.') || 'format';
    throw new InvalidInputError(`${path}: field '${field}': ${issue.message}`, { file: path, field });
  }
  return { path, descriptor: parsed.data };
}

export interface LoadedGenerator {
  /** The generator.json it was loaded from. */
  readonly path: string;
  readonly descriptor: GeneratorDescriptor;
  readonly net: UNet;
  readonly diffusion: GaussianDiffusion;
}

/** The network and diffusion process of a generator folder, checked against each other. */
export function loadGenerator(pathOrDir: string): LoadedGenerator {
  const { path, descriptor } = readGeneratorDescriptor(pathOrDir);
  const net = UNet.load(join(dirname(path), descriptor.weights));
  const c = net.config;
  if (
    c.resolution !== descriptor.resolution ||
    c.identityDim !== descriptor.identityDim ||
    c.attributeDim !== descriptor.attributes.columns.length
  ) {
    net.dispose();
    throw new InvalidInputError(
      `${path}: descriptor (resolution ${descriptor.resolution}, identityDim ${descriptor.identityDim}, ${descriptor.attributes.columns.length} attributes) does not match its weights (${c.resolution}, ${c.identityDim}, ${c.attributeDim})`,
      { file: path },
    );
  }
  return { path, descriptor, net, diffusion: new GaussianDiffusion(makeSchedule(descriptor.schedule)) };
}
