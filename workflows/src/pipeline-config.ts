import { constants } from 'node:buffer';
import { existsSync, mkdirSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  InvalidInputError,
  checkResources,
  hashJson,
  loadProfile,
  mergeConfig,
  parseConfig,
  readJsonFile,
  writeJsonAtomic,
  type MachineLimits,
  type PipelineSections,
} from '@id3/core';
import type { PipelineInput, RunPlan } from './contracts';
import { runsDir } from './paths';
import { stageRegistry, type StageRegistry } from './stages';

/**
 * The whole pipeline config: a profile file merged with overrides. Its top-level keys are the
 * pipeline's own fields plus one optional section per registered stage; each section is
 * validated by that stage's own schema (field names prefixed by the section).
 */
export function pipelineConfigSchema(registry: StageRegistry = stageRegistry()) {
  const section = z.record(z.unknown()).optional();
  return z
    .object({
      profile: z.string(),
      description: z.string().optional(),
      seed: z.number().int().nonnegative(),
      stages: z.array(z.string()).nonempty(),
      ...Object.fromEntries(registry.names.map((name) => [name, section])),
    })
    .strict();
}

export interface PipelineConfig {
  readonly profile: string;
  readonly description?: string;
  readonly seed: number;
  readonly stages: readonly string[];
  readonly [section: string]: unknown;
}

/** The config section a stage's CLI validates: its own section plus the pipeline seed. */
export function stageSection(config: PipelineConfig, stage: string): Record<string, unknown> {
  const own = (config[stage] as Record<string, unknown> | undefined) ?? {};
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
  return parseConfig(pipelineConfigSchema(), merged, `profile '${profileName}' + overrides`) as PipelineConfig;
}

/**
 * Resolve an input into a run plan: validate everything up front (the section of every stage
 * that will run or is configured, then each stage's own checks against the others, so a typo or
 * an impossible combination in a late stage fails before hours of work), pick the run directory,
 * write config.json.
 */
export function planRun(input: PipelineInput): RunPlan {
  const registry = stageRegistry();
  const config = buildPipelineConfig(input);
  const requested = input.stages ?? config.stages;
  const field = input.stages ? 'stages' : 'profile.stages';
  for (const [i, s] of requested.entries()) {
    if (!registry.get(s)) {
      throw new InvalidInputError(`field '${field}[${i}]': unknown stage '${s}' (known: ${registry.names.join(', ')})`, {
        field: `${field}[${i}]`,
      });
    }
  }
  const stages = registry.names.filter((s) => requested.includes(s));
  const configured = registry.names.filter((s) => stages.includes(s) || config[s] !== undefined);
  const sections: Record<string, Record<string, unknown>> = Object.fromEntries(configured.map((s) => [s, validateStageSection(config, s)]));
  const machine: MachineLimits = { memoryBytes: totalmem(), maxArrayBytes: constants.MAX_LENGTH };
  for (const s of stages) {
    const def = registry.get(s);
    def?.check?.(sections[s], sections as PipelineSections);
    const estimate = def?.estimate?.(sections[s], sections as PipelineSections);
    if (estimate) checkResources(s, estimate, machine);
  }
  const configHash = hashJson(config);
  if (input.runName !== undefined && !RUN_NAME.test(input.runName)) {
    throw new InvalidInputError(`field 'runName': '${input.runName}' must be 1-128 letters, digits, '.', '_' or '-'`, { field: 'runName' });
  }
  const runName = input.runName ?? `${config.profile}-${configHash.slice(0, 12)}`;
  const runDir = resolve(runsDir(), runName);
  // What a stage reads must be made in this run or be there already: fail now, not in the stage.
  for (const s of stages) {
    for (const upstream of Object.keys(registry.get(s)?.reads?.(sections[s]) ?? {})) {
      if (!stages.includes(upstream) && !existsSync(join(runDir, upstream, 'manifest.json'))) {
        throw new InvalidInputError(
          `field '${field}': stage '${s}' reads the outputs of stage '${upstream}', which neither runs now nor has completed in run '${runName}' (add '${upstream}' to the stages)`,
          { field },
        );
      }
    }
  }
  mkdirSync(runDir, { recursive: true });
  const configPath = join(runDir, 'config.json');
  writeJsonAtomic(configPath, config);
  const shardedStages = stages.filter((s) => registry.get(s)?.shards);
  return { runName, runDir, configPath, configHash, stages, shardedStages, force: input.force ?? false };
}

/** Validate one stage's section with the stage's schema; errors name fields as `<stage>.<field>`. */
export function validateStageSection(config: PipelineConfig, stage: string): Record<string, unknown> {
  const def = stageRegistry().get(stage);
  if (!def) throw new InvalidInputError(`unknown stage '${stage}' (known: ${stageRegistry().names.join(', ')})`, { field: 'stage' });
  return parseConfig(def.schema, stageSection(config, stage), `profile '${config.profile}'`, stage) as Record<string, unknown>;
}

/** Read a config.json written by planRun (the stage CLI's input). */
export function readPipelineConfig(path: string): PipelineConfig {
  return parseConfig(pipelineConfigSchema(), readJsonFile(path), path) as PipelineConfig;
}

/**
 * The run directory of a plan on this machine: workers that share the runs directory may mount
 * it at different paths, so each resolves the run by name under its own ID3_RUNS_DIR.
 */
export function localRunDir(plan: Pick<RunPlan, 'runName'>): string {
  return resolve(runsDir(), plan.runName);
}
