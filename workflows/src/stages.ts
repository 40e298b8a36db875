import { isAbsolute, resolve } from 'node:path';
import { anchorsStage, identitiesStage } from '@id3/anchors';
import { identitySpaceStage, trainDiffusionStage } from '@id3/diffusion';
import { evalStage } from '@id3/eval';
import { prepareStage } from '@id3/faces';
import { frTrainStage } from '@id3/fr-train';
import { sampleStage } from '@id3/sampler';
import type { AnyStageDefinition } from '@id3/core';

/**
 * Every stage the pipeline knows, in the order they run. This list is the only registration:
 * the pipeline's order, its config sections and its plan-time checks all derive from it.
 * Adding a stage = its package + one line here.
 */
export const BUILTIN_STAGES: readonly AnyStageDefinition[] = [
  prepareStage,
  // Before the generator: a generator conditioned in the identity space trains on it.
  identitySpaceStage,
  trainDiffusionStage,
  anchorsStage,
  identitiesStage,
  sampleStage,
  frTrainStage,
  evalStage,
] as readonly AnyStageDefinition[];

/**
 * Extra stage modules for experiments, without editing this file: ID3_EXTRA_STAGES is a
 * comma-separated list of module paths, each exporting `stages: StageDefinition[]`. They are
 * appended after the built-in stages. The worker and the stage processes it spawns read the same
 * variable, so an extra stage runs under Temporal like any other.
 */
export const EXTRA_STAGES_ENV = 'ID3_EXTRA_STAGES';

export interface StageRegistry {
  /** In pipeline order. */
  readonly list: readonly AnyStageDefinition[];
  readonly names: readonly string[];
  get(name: string): AnyStageDefinition | undefined;
}

/** Check a registration list: unique names, every upstream registered earlier. */
export function createStageRegistry(list: readonly AnyStageDefinition[]): StageRegistry {
  const byName = new Map<string, AnyStageDefinition>();
  for (const def of list) {
    if (!/^[a-z][a-z0-9-]*$/.test(def.name)) throw new Error(`stage name '${def.name}' must be lower-case letters, digits and '-'`);
    if (byName.has(def.name)) throw new Error(`stage '${def.name}' is registered twice`);
    for (const up of def.upstream ?? []) {
      if (!byName.has(up)) throw new Error(`stage '${def.name}' reads from '${up}', which is not registered before it`);
    }
    byName.set(def.name, def);
  }
  return { list, names: list.map((d) => d.name), get: (name) => byName.get(name) };
}

function loadExtraStages(spec: string | undefined): AnyStageDefinition[] {
  if (!spec?.trim()) return [];
  return spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .flatMap((path) => {
      const file = isAbsolute(path) ? path : resolve(process.cwd(), path);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(file) as { stages?: AnyStageDefinition[] };
      if (!Array.isArray(mod.stages))
        throw new Error(`${EXTRA_STAGES_ENV}: ${file} does not export 'stages' (an array of stage definitions)`);
      return mod.stages;
    });
}

let cached: { spec: string | undefined; registry: StageRegistry } | undefined;

/** The registry of this process: the built-in stages plus any from ID3_EXTRA_STAGES. */
export function stageRegistry(): StageRegistry {
  const spec = process.env[EXTRA_STAGES_ENV];
  if (!cached || cached.spec !== spec) cached = { spec, registry: createStageRegistry([...BUILTIN_STAGES, ...loadExtraStages(spec)]) };
  return cached.registry;
}
