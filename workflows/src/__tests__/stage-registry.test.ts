import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { AnyStageDefinition, StageDefinition } from '@id3/core';
import { BUILTIN_STAGES, createStageRegistry, pipelineConfigSchema, planRun, stageRegistry } from '../index';

const schema = z.object({ seed: z.number().int() }).strict();
const stage = (name: string, upstream: string[] = []): AnyStageDefinition =>
  ({ name, version: 1, schema, upstream, run: async () => ({ outputs: {}, metrics: {} }) }) as StageDefinition<
    typeof schema
  > as AnyStageDefinition;

describe('the stage registry', () => {
  beforeAll(() => {
    process.env.ID3_RUNS_DIR = mkdtempSync(join(tmpdir(), 'id3-registry-'));
  });

  it('orders the pipeline by the registration list, each stage after the stages it reads', () => {
    const names = stageRegistry().names;
    expect(names).toEqual(BUILTIN_STAGES.map((s) => s.name));
    for (const def of BUILTIN_STAGES) for (const up of def.upstream ?? []) expect(names.indexOf(up)).toBeLessThan(names.indexOf(def.name));
  });

  it('derives the config sections from the list', () => {
    const keys = Object.keys(pipelineConfigSchema().shape);
    expect(keys).toEqual(['profile', 'description', 'seed', 'stages', ...stageRegistry().names]);
  });

  it('refuses a list that reads from a later or unknown stage, or names a stage twice', () => {
    expect(() => createStageRegistry([stage('b', ['a']), stage('a')])).toThrow(/'b' reads from 'a', which is not registered before it/);
    expect(() => createStageRegistry([stage('a'), stage('a')])).toThrow(/registered twice/);
    expect(() => createStageRegistry([stage('Bad_Name')])).toThrow(/lower-case/);
  });

  it('an extra stage module (ID3_EXTRA_STAGES) joins the pipeline: config section, order, checks', () => {
    process.env.ID3_EXTRA_STAGES = join(__dirname, 'fixtures', 'throwaway-stage.ts');
    try {
      expect(stageRegistry().names.at(-1)).toBe('throwaway');
      const plan = planRun({ profile: 'demo', stages: ['throwaway', 'anchors'], overrides: { throwaway: { suffix: '!' } } });
      expect(plan.stages).toEqual(['anchors', 'throwaway']);
      expect(() => planRun({ profile: 'demo', stages: ['anchors', 'throwaway'], overrides: { throwaway: { suffix: 5 } } })).toThrow(
        /field 'throwaway\.suffix'/,
      );
      // its plan-time check against another stage's section
      expect(() => planRun({ profile: 'demo', stages: ['anchors', 'throwaway'], overrides: { throwaway: { minAnchors: 5000 } } })).toThrow(
        /field 'throwaway\.minAnchors': 5000 > anchors\.n 1000/,
      );
    } finally {
      delete process.env.ID3_EXTRA_STAGES;
    }
    expect(stageRegistry().names).not.toContain('throwaway');
  });
});
