import { anchorsStage, identitiesStage } from '@id3/anchors';
import { trainDiffusionStage } from '@id3/diffusion';
import { evalStage } from '@id3/eval';
import { prepareStage } from '@id3/faces';
import type { StageDefinition } from '@id3/core';
import type { z } from 'zod';

/** Every stage the pipeline knows, in the order they run. Later stages plug in here. */
export const STAGES = {
  prepare: prepareStage,
  'train-diffusion': trainDiffusionStage,
  anchors: anchorsStage,
  identities: identitiesStage,
  eval: evalStage,
} as const satisfies Record<string, StageDefinition<z.ZodTypeAny>>;

export type StageName = keyof typeof STAGES;
export const STAGE_ORDER: readonly StageName[] = ['prepare', 'train-diffusion', 'anchors', 'identities', 'eval'];

export function isStageName(name: string): name is StageName {
  return Object.prototype.hasOwnProperty.call(STAGES, name);
}
