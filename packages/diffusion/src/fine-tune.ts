import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InvalidInputError, isInvalidInput, readTensorFile } from '@id3/core';
import { readGeneratorDescriptor, type GeneratorDescriptor } from './generator';
import type { DiffusionTrainer } from './trainer';
import { unetConfigSchema, type UNetConfig } from './unet';

/** What the run being started is, for checking a generator folder it should start from. */
export interface InitExpectation {
  /** The run's UNet config (architecture, resolution, condition and attribute sizes); at plan time only what the config sets. */
  readonly unet: Partial<UNetConfig>;
  readonly resolution: number;
  readonly teacher?: string;
  readonly attributes?: readonly string[];
  /** The run's condition: the teacher's sphere, or a whitened identity space (by its artefact's sha256). */
  readonly condition?: { readonly space: 'teacher' } | { readonly space: 'whitened'; readonly sha256: string };
}

/** A generator folder's EMA weights, checked against the run that starts from them. */
export interface InitWeights {
  /** The generator folder. */
  readonly dir: string;
  readonly descriptor: GeneratorDescriptor;
  /** Flat EMA weights in parameter order. */
  readonly weights: Float32Array;
  /** sha256 of the weights' data (part of the run's resume key). */
  readonly sha256: string;
  readonly layout: readonly { name: string; shape: number[] }[];
  /** Steps the folder's generator was trained for. */
  readonly steps: number;
}

const FIELD = 'train-diffusion.init';

/**
 * Check that a generator folder can start this run — same UNet architecture, resolution,
 * condition (space and size), teacher and attributes — and, unless `loadWeights` is false (plan
 * time), read its EMA weights. Every refusal names 'train-diffusion.init', the file and the
 * mismatched field.
 */
export function readInitWeights(dir: string, expect: InitExpectation, loadWeights = true): InitWeights {
  let path: string;
  let descriptor: GeneratorDescriptor;
  try {
    ({ path, descriptor } = readGeneratorDescriptor(dir));
  } catch (err) {
    if (!isInvalidInput(err)) throw err;
    throw new InvalidInputError(`field '${FIELD}': ${err.message}`, { file: err.where?.file, field: FIELD });
  }
  const refuse = (file: string, field: string, theirs: unknown, ours: unknown, what = field): never => {
    throw new InvalidInputError(
      `field '${FIELD}': ${file}: field '${field}': the init generator has ${JSON.stringify(theirs)}, this run's ${what} is ${JSON.stringify(ours)}`,
      { file, field: FIELD },
    );
  };
  if (descriptor.resolution !== expect.resolution)
    refuse(path, 'resolution', descriptor.resolution, expect.resolution, 'train-diffusion.resolution');
  if (expect.teacher !== undefined && descriptor.teacher !== expect.teacher)
    refuse(path, 'teacher', descriptor.teacher, expect.teacher, 'prepare.teacher');
  const c = expect.condition;
  if (c && descriptor.condition.space !== c.space) refuse(path, 'condition.space', descriptor.condition.space, c.space, 'condition');
  if (c?.space === 'whitened' && descriptor.condition.space === 'whitened' && descriptor.condition.sha256 !== c.sha256)
    refuse(path, 'condition.sha256', descriptor.condition.sha256, c.sha256, 'identity space');
  if (expect.attributes && JSON.stringify(descriptor.attributes.columns) !== JSON.stringify(expect.attributes))
    refuse(path, 'attributes.columns', descriptor.attributes.columns, expect.attributes, 'attributes (prepare)');

  const weightsPath = join(dirname(path), descriptor.weights);
  let header: { meta?: unknown; sha256: string };
  let weights: Float32Array = new Float32Array(0);
  try {
    if (loadWeights) {
      const t = readTensorFile(weightsPath); // verifies the data's hash
      header = t.header;
      weights = t.values as Float32Array;
    } else header = JSON.parse(readFileSync(weightsPath, 'utf8')) as typeof header;
  } catch (err) {
    if (!isInvalidInput(err) && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new InvalidInputError(`field '${FIELD}': ${(err as Error).message}`, { file: weightsPath, field: FIELD });
  }
  const meta = header.meta as { config?: unknown; params?: { name: string; shape: number[] }[] } | undefined;
  const parsed = unetConfigSchema.safeParse(meta?.config);
  if (!parsed.success || !meta?.params)
    throw new InvalidInputError(`field '${FIELD}': ${weightsPath}: field 'meta.config': not UNet weights with a config and a layout`, {
      file: weightsPath,
      field: FIELD,
    });
  for (const [key, ours] of Object.entries(expect.unet)) {
    const theirs = (parsed.data as Record<string, unknown>)[key];
    if (JSON.stringify(theirs) !== JSON.stringify(ours))
      refuse(weightsPath, `meta.config.${key}`, theirs, ours, `UNet ${key} (train-diffusion.unet)`);
  }
  return { dir: dirname(path), descriptor, weights, sha256: header.sha256, layout: meta.params, steps: descriptor.steps };
}

/** Start the trainer from the init weights (weights and EMA), after checking the parameter layout. */
export function startFromInit(trainer: DiffusionTrainer, init: InitWeights): void {
  if (JSON.stringify(trainer.net.layout()) !== JSON.stringify(init.layout))
    throw new InvalidInputError(
      `field '${FIELD}': ${join(init.dir, init.descriptor.weights)}: field 'meta.params': parameter layout differs from this run's UNet`,
      { file: join(init.dir, init.descriptor.weights), field: FIELD },
    );
  trainer.initFromWeights(init.weights);
}
