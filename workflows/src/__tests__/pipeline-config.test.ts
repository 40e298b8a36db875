import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPipelineConfig, planRun, stageSection } from '../index';

describe('planRun', () => {
  beforeAll(() => {
    process.env.ID3_RUNS_DIR = mkdtempSync(join(tmpdir(), 'id3-plan-'));
  });

  it('derives the run directory from the config, so the same config reuses it', () => {
    const a = planRun({ profile: 'demo' });
    const b = planRun({ profile: 'demo' });
    const c = planRun({ profile: 'demo', overrides: { seed: 1 } });
    expect(a.runDir).toBe(b.runDir);
    expect(a.runName).toMatch(/^demo-[0-9a-f]{12}$/);
    expect(c.runDir).not.toBe(a.runDir);
    expect(JSON.parse(readFileSync(a.configPath, 'utf8'))).toMatchObject({ profile: 'demo', seed: 0 });
    expect(existsSync(a.configPath)).toBe(true);
  });

  it('keeps pipeline order whatever order stages are requested in', () => {
    expect(planRun({ stages: ['identities', 'anchors'] }).stages).toEqual(['anchors', 'identities']);
  });

  it('injects the pipeline seed into stage sections unless a section sets its own', () => {
    const config = buildPipelineConfig({ overrides: { seed: 7, identities: { seed: 3 } } });
    expect(stageSection(config, 'anchors').seed).toBe(7);
    expect(stageSection(config, 'identities').seed).toBe(3);
  });

  it('the real profile is valid and runs prepare first', () => {
    expect(planRun({ profile: 'real' }).stages).toEqual([
      'prepare',
      'identity-space',
      'train-diffusion',
      'anchors',
      'identities',
      'sample',
      'fr-train',
      'eval',
    ]);
  });

  it('the celeba-id3 profile samples from the shipped generator and adopts its identity space (no generator training)', () => {
    expect(planRun({ profile: 'celeba-id3' }).stages).toEqual([
      'prepare',
      'identity-space',
      'anchors',
      'identities',
      'sample',
      'fr-train',
      'eval',
    ]);
    const config = buildPipelineConfig({ profile: 'celeba-id3' });
    expect(stageSection(config, 'sample').model).toBe('models/celeba32-id3');
    expect(stageSection(config, 'identity-space').from).toBe('models/celeba32-id3');
    // the κ = 0 twin is a drop-in: same identity space, same teacher
    expect(planRun({ profile: 'celeba-id3', overrides: { sample: { model: 'models/celeba32-kappa0' } } }).stages).toContain('sample');
  });

  it('the generator-celeba profile holds out whole people, in train-diffusion and the identity space alike', () => {
    expect(planRun({ profile: 'generator-celeba' }).stages).toEqual(['prepare', 'identity-space', 'train-diffusion']);
    expect(stageSection(buildPipelineConfig({ profile: 'generator-celeba' }), 'train-diffusion')).toMatchObject({
      holdoutBy: 'person',
      holdout: 600,
    });
    expect(() => planRun({ profile: 'generator-celeba', overrides: { 'identity-space': { holdoutBy: 'image' } } })).toThrow(
      /field 'identity-space\.holdoutBy': image differs from train-diffusion\.holdoutBy person/,
    );
  });

  it('a generator conditioned in the identity space needs the identity-space stage', () => {
    expect(() =>
      planRun({
        profile: 'real',
        stages: ['prepare', 'train-diffusion'],
        overrides: { 'train-diffusion': { condition: 'identity-space' } },
      }),
    ).toThrow(/identity-space/);
    expect(() => planRun({ profile: 'real', overrides: { 'train-diffusion': { condition: 'whitened' } } })).toThrow(
      /train-diffusion\.condition/,
    );
  });

  it('anchors must live in the teacher’s embedding space when prepare is configured', () => {
    expect(() => planRun({ profile: 'real', overrides: { anchors: { dim: 512 } } })).toThrow(
      /field 'anchors\.dim': 512 differs from the teacher's embedding size 128/,
    );
    expect(() => planRun({ profile: 'real', stages: ['anchors'], overrides: { anchors: { dim: 512 } } })).toThrow(/field 'anchors\.dim'/);
    expect(planRun({ profile: 'real', overrides: { prepare: { teacher: 'mobileface-256' }, anchors: { dim: 256 } } }).stages).toContain(
      'anchors',
    );
    expect(() => planRun({ profile: 'real', overrides: { prepare: { source: { kind: 'photos' } } } })).toThrow(
      /field 'prepare\.source\.kind'/,
    );
  });

  it('refuses a stage whose upstream neither runs nor has completed in the run directory', () => {
    expect(() => planRun({ profile: 'demo', runName: 'plan-orphan', stages: ['identities'] })).toThrow(
      /field 'stages': stage 'identities' reads the outputs of stage 'anchors', which neither runs now nor has completed in run 'plan-orphan'/,
    );
    expect(planRun({ profile: 'demo', runName: 'plan-orphan', stages: ['anchors', 'identities'] }).stages).toEqual([
      'anchors',
      'identities',
    ]);
  });

  it.each([
    [{ runName: '../escape' }, /field 'runName'/],
    [{ overrides: { anchors: { iterations: -1 } } }, /field 'anchors\.iterations'/],
    [{ overrides: { nonsense: {} } }, /field 'nonsense': Unrecognized key/],
    [{ overrides: { anchors: { n: 100000000 } } }, /field 'anchors\.n': stage 'anchors' needs about \d+\.\d GiB \(n=100000000 × dim=128/],
    [{ overrides: { identities: { m: 100000 } } }, /field 'identities\.m': stage 'identities' needs about/],
    [{ stages: ['anchors', 'nope'] }, /field 'stages\[1\]': unknown stage 'nope'/],
    [
      { profile: 'real', stages: ['prepare', 'train-diffusion'], overrides: { 'train-diffusion': { resolution: 48 } } },
      /field 'train-diffusion\.resolution': 48 is not one of prepare\.sizes \[112, 64, 32\]/,
    ],
    [
      { profile: 'real', overrides: { 'train-diffusion': { unet: { channelMult: [1, 2, 2, 2, 2, 2, 2] } } } },
      /train-diffusion\.unet\.resolution.*not divisible/,
    ],
    [{ profile: 'real', overrides: { 'train-diffusion': { trainer: { batchSize: 0 } } } }, /field 'train-diffusion\.trainer\.batchSize'/],
    // The identity space: anchors and identities in one space, fitted on the generator's own training split.
    [
      { profile: 'real', overrides: { identities: { space: 'teacher' } } },
      /field 'identities\.space': 'teacher' differs from anchors\.space 'whitened'/,
    ],
    [
      { profile: 'real', overrides: { 'identity-space': { holdout: 64 } } },
      /field 'identity-space\.holdout': 64 differs from train-diffusion\.holdout 200/,
    ],
    [
      { profile: 'real', overrides: { 'identity-space': { resolution: 48 } } },
      /field 'identity-space\.resolution': 48 is not one of prepare\.sizes/,
    ],
    [{ profile: 'real', overrides: { 'identity-space': { variance: 1.5 } } }, /field 'identity-space\.variance'/],
  ])('rejects %j naming the field', (input, message) => {
    expect(() => planRun(input)).toThrow(message);
  });
});
