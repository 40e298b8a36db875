import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { InvalidInputError, writeJsonAtomic } from '@id3/core';
import { readIdentitySpace, toWhitened, type LoadedIdentitySpace } from '@id3/anchors';
import { GaussianDiffusion } from './gaussian-diffusion';
import { makeSchedule, scheduleConfigSchema } from './schedule';
import { UNet } from './unet';

/**
 * A trained generator as one folder: EMA weights (`ema.json` + `ema.bin`) and `generator.json`,
 * which says everything a sampler needs besides the weights — the noise schedule, the teacher
 * whose space y lives in, how attributes s are scaled, and which prepared images were held out
 * of training. `train-diffusion` writes it into its `model/` folder; a shipped model under
 * `models/<name>/` is the same folder, so a run can sample from either. A generator conditioned
 * in an identity space carries that space's artefact in the folder and maps y onto it itself.
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
    /**
     * Identity space the generator's identities must be made in: 'teacher' (any unit teacher
     * embedding), or the sha256 of the identity-space artefact it was conditioned in.
     */
    identitySpace: z.string().default('teacher'),
    /**
     * What the UNet's condition MLP takes: y itself, or z = normalize(W·(y − μ)) in the identity
     * space whose artefact (a copy, in this folder) is named here. Callers always pass y.
     */
    condition: z
      .discriminatedUnion('space', [
        z.object({ space: z.literal('teacher') }).strict(),
        z.object({ space: z.literal('whitened'), artefact: z.string().min(1), sha256: z.string().min(1) }).strict(),
      ])
      .default({ space: 'teacher' }),
    attributes: z.object({ columns: z.array(z.string()), scaling: z.string() }).strict(),
    /** sha256 of the prepared (scaled) attributes it trained on — identifies the prepared set — and the rows held out of training. */
    trainingData: z
      .object({ attributesSha256: z.string(), images: z.number().int().nonnegative(), heldOut: z.array(z.number().int()) })
      .strict(),
    steps: z.number().int().nonnegative(),
  })
  .strict();
export type GeneratorDescriptor = z.output<typeof generatorDescriptorSchema>;
export type GeneratorDescriptorInput = z.input<typeof generatorDescriptorSchema>;

export function writeGeneratorDescriptor(dir: string, descriptor: GeneratorDescriptorInput): string {
  const path = join(dir, 'generator.json');
  writeJsonAtomic(path, generatorDescriptorSchema.parse(descriptor));
  return path;
}

/**
 * A JSON file of a model folder, validated by `schema`; errors name the file and the first bad
 * field. `missing` says what the file is, for a folder without it.
 */
export function readModelJson<S extends z.ZodTypeAny>(path: string, schema: S, missing: string): z.output<S> {
  if (!existsSync(path)) throw new InvalidInputError(`${path}: ${missing}`, { file: path });
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new InvalidInputError(`${path}: not JSON: ${(err as Error).message}`, { file: path });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.') || 'format';
    throw new InvalidInputError(`${path}: field '${field}': ${issue.message}`, { file: path, field });
  }
  return parsed.data as z.output<S>;
}

/** Read and validate `generator.json` (a path to it or to its folder); errors name the file and field. */
export function readGeneratorDescriptor(pathOrDir: string): { path: string; descriptor: GeneratorDescriptor } {
  const path = pathOrDir.endsWith('.json') ? pathOrDir : join(pathOrDir, 'generator.json');
  const descriptor = readModelJson(path, generatorDescriptorSchema, 'no generator descriptor (expected a train-diffusion model folder)');
  const { condition, identitySpace } = descriptor;
  if (condition.space === 'whitened' && identitySpace !== condition.sha256)
    throw new InvalidInputError(
      `${path}: field 'identitySpace': ${identitySpace} but the generator is conditioned in identity space ${condition.sha256}`,
      { file: path, field: 'identitySpace' },
    );
  return { path, descriptor };
}

export interface LoadedGenerator {
  /** The generator.json it was loaded from. */
  readonly path: string;
  readonly descriptor: GeneratorDescriptor;
  readonly net: UNet;
  readonly diffusion: GaussianDiffusion;
  /** The identity space it is conditioned in, when not the teacher's own sphere. */
  readonly identitySpace?: LoadedIdentitySpace;
  /** The UNet's condition rows for unit teacher embeddings y ([n·identityDim] → [n·net.config.identityDim]). */
  conditionOf(y: Float32Array): Float32Array;
}

/** The network and diffusion process of a generator folder, checked against each other. */
export function loadGenerator(pathOrDir: string): LoadedGenerator {
  const { path, descriptor } = readGeneratorDescriptor(pathOrDir);
  const condition = descriptor.condition;
  let space: LoadedIdentitySpace | undefined;
  if (condition.space === 'whitened') {
    space = readIdentitySpace(join(dirname(path), condition.artefact), { teacher: descriptor.teacher, dim: descriptor.identityDim });
    if (space.sha256 !== condition.sha256)
      throw new InvalidInputError(
        `${path}: field 'condition.sha256': ${space.path} is identity space ${space.sha256}, not ${condition.sha256}`,
        {
          file: path,
          field: 'condition.sha256',
        },
      );
  }
  const net = UNet.load(join(dirname(path), descriptor.weights));
  const c = net.config;
  const conditionDim = space ? space.map.k : descriptor.identityDim;
  if (c.resolution !== descriptor.resolution || c.identityDim !== conditionDim || c.attributeDim !== descriptor.attributes.columns.length) {
    net.dispose();
    throw new InvalidInputError(
      `${path}: descriptor (resolution ${descriptor.resolution}, condition ${conditionDim}-d, ${descriptor.attributes.columns.length} attributes) does not match its weights (${c.resolution}, ${c.identityDim}, ${c.attributeDim})`,
      { file: path },
    );
  }
  const conditionOf = (y: Float32Array): Float32Array => (space ? toWhitened(space.map, y) : y);
  return { path, descriptor, net, diffusion: new GaussianDiffusion(makeSchedule(descriptor.schedule)), identitySpace: space, conditionOf };
}
