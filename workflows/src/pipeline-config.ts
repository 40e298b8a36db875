import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { InvalidInputError, hashJson, loadProfile, mergeConfig, parseConfig, readJsonFile, writeJsonAtomic } from '@id3/core';
import { unetConfigSchema } from '@id3/diffusion';
import { TEACHER_DIMS } from '@id3/faces';
import type { PipelineInput, RunPlan } from './contracts';
import { runsDir } from './paths';
import { STAGES, STAGE_ORDER, type StageName } from './stages';

const section = z.record(z.unknown()).optional();

/**
 * The whole pipeline config: a profile file merged with overrides. Top-level shape here; each
 * stage section is validated by that stage's own schema (field names prefixed by the section).
 */
export const pipelineConfigSchema = z
  .object({
    profile: z.string(),
    description: z.string().optional(),
    seed: z.number().int().nonnegative(),
    stages: z.array(z.string()).nonempty(),
    prepare: section,
    'train-diffusion': section,
    anchors: section,
    identities: section,
    eval: section,
  })
  .strict();
export type PipelineConfig = z.output<typeof pipelineConfigSchema>;

/** The config section a stage's CLI validates: its own section plus the pipeline seed. */
export function stageSection(config: PipelineConfig, stage: StageName): Record<string, unknown> {
  const own = (config as unknown as Record<string, Record<string, unknown>>)[stage] ?? {};
  return { seed: config.seed, ...own };
}

const RUN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Validate a pipeline input and build its config; throws InvalidInputError naming the field. */
export function buildPipelineConfig(input: PipelineInput): PipelineConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidInputError('pipeline input must be one JSON object, e.g. {"profile": "demo"}', { field: '(root)' });
  }
  const profileName = input.profile ?? 'demo';
  const base = loadProfile(profileName);
  const merged = mergeConfig({ ...base, profile: profileName }, input.overrides ?? {});
  return parseConfig(pipelineConfigSchema, merged, `profile '${profileName}' + overrides`);
}

/**
 * Resolve an input into a run plan: validate everything up front (the section of every stage
 * that will run, so a typo in a late stage fails before hours of work), pick the run directory,
 * write config.json.
 */
export function planRun(input: PipelineInput): RunPlan {
  const config = buildPipelineConfig(input);
  const requested = input.stages ?? config.stages;
  const field = input.stages ? 'stages' : 'profile.stages';
  for (const [i, s] of requested.entries()) {
    if (!(STAGE_ORDER as readonly string[]).includes(s)) {
      throw new InvalidInputError(`field '${field}[${i}]': unknown stage '${s}' (known: ${STAGE_ORDER.join(', ')})`, { field: `${field}[${i}]` });
    }
  }
  const stages = STAGE_ORDER.filter((s) => requested.includes(s));
  const sections = Object.fromEntries(stages.map((stage) => [stage, validateStageSection(config, stage)])) as Record<string, Record<string, unknown>>;
  // The anchors live in the teacher's embedding space: their dimension must be the teacher's.
  if (sections.prepare && sections.anchors) {
    const teacherDim = TEACHER_DIMS[sections.prepare.teacher as keyof typeof TEACHER_DIMS];
    if (sections.anchors.dim !== teacherDim) {
      throw new InvalidInputError(`field 'anchors.dim': ${String(sections.anchors.dim)} differs from the teacher's embedding size ${teacherDim} (prepare.teacher '${String(sections.prepare.teacher)}')`, { field: 'anchors.dim' });
    }
  }
  if (sections['train-diffusion']) checkGeneratorSection(config, sections['train-diffusion']);
  const configHash = hashJson(config);
  if (input.runName !== undefined && !RUN_NAME.test(input.runName)) {
    throw new InvalidInputError(`field 'runName': '${input.runName}' must be 1-128 letters, digits, '.', '_' or '-'`, { field: 'runName' });
  }
  const runName = input.runName ?? `${config.profile}-${configHash.slice(0, 12)}`;
  const runDir = resolve(runsDir(), runName);
  mkdirSync(runDir, { recursive: true });
  const configPath = join(runDir, 'config.json');
  writeJsonAtomic(configPath, config);
  return { runName, runDir, configPath, configHash, stages, force: input.force ?? false };
}

/**
 * The generator trains on prepare's crops at one of its sizes, in its teacher's embedding space:
 * check both before anything runs, and the UNet's shape constraints (resolution divisible by the
 * levels, channels by the groups), which only the stage itself would otherwise meet.
 */
function checkGeneratorSection(config: PipelineConfig, section: Record<string, unknown>): void {
  const prepare = config.prepare ? validateStageSection(config, 'prepare') : undefined;
  const resolution = section.resolution as number;
  if (prepare && !(prepare.sizes as number[]).includes(resolution)) {
    throw new InvalidInputError(`field 'train-diffusion.resolution': ${resolution} is not one of prepare.sizes [${(prepare.sizes as number[]).join(', ')}]`, { field: 'train-diffusion.resolution' });
  }
  const identityDim = prepare ? TEACHER_DIMS[prepare.teacher as keyof typeof TEACHER_DIMS] : 128;
  parseConfig(unetConfigSchema, { ...(section.unet as object), resolution, identityDim }, `profile '${config.profile}'`, 'train-diffusion.unet');
}

/** Validate one stage's section with the stage's schema; errors name fields as `<stage>.<field>`. */
export function validateStageSection(config: PipelineConfig, stage: StageName): Record<string, unknown> {
  return parseConfig(STAGES[stage].schema, stageSection(config, stage), `profile '${config.profile}'`, stage) as Record<string, unknown>;
}

/** Read a config.json written by planRun (the stage CLI's input). */
export function readPipelineConfig(path: string): PipelineConfig {
  return parseConfig(pipelineConfigSchema, readJsonFile(path), path);
}
