import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeStage, initBackend } from '@id3/core';
import { evalStage } from '../index';

// The eval stage with the pretrained teacher on real benchmark files: both insightface .bin
// samples (40 LFW pairs of 112×112 crops each) and the CFP-layout sample (FP split).
jest.setTimeout(300_000);

describe('eval stage', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it('writes results, a paper-layout report and plots; a re-run is served from the embedding cache', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const config = {
      seed: 0,
      benchmarks: [
        { kind: 'bin', name: 'lfw-sample-py2', path: 'data:samples/insightface-bin/sample-py2.bin' },
        { kind: 'bin', name: 'lfw-sample-py3', path: 'data:samples/insightface-bin/sample-py3.bin' },
        { kind: 'cfp', name: 'CFP-FP', root: 'data:samples/cfp-format', split: 'FP' },
      ],
    };
    const r = await executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm' });
    const m = r.manifest.metrics;
    // Same pairs, two pickle protocols: identical numbers.
    expect(m.lfwsamplepy2_accuracy).toBe(m.lfwsamplepy3_accuracy);
    expect(m.lfwsamplepy2_accuracy).toBeGreaterThan(0.85);
    expect(m.CFPFP_auc).toBeGreaterThan(0.5);
    const report = readFileSync(store.abs(r.manifest.outputs.report.path), 'utf8');
    expect(report).toMatch(/\| model \| LFW \| CFP-FP \| CPLFW \| AgeDB-30 \| CALFW \| avg \|/);
    expect(report).toMatch(/\| teacher:faceapi-dlib-128 \| no data \| \d+\.\d\d ± \d+\.\d\d \| no data \| no data \| no data \| n\/a \(1 of 5\) \|/);
    expect(report).toMatch(/Not in the paper's table: lfw-sample-py2, lfw-sample-py3/);
    expect((await sharp(store.abs(r.manifest.outputs.roc.path)).metadata()).format).toBe('png');

    const again = await executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm', force: true });
    expect(again.manifest.metrics.lfwsamplepy2_accuracy).toBe(m.lfwsamplepy2_accuracy);
    expect(again.manifest.metrics.lfwsamplepy2_msPerComputedImage).toBe(0); // nothing recomputed
  });

  it('a malformed benchmark file fails naming the file', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const config = { seed: 0, benchmarks: [{ kind: 'bin', name: 'broken', path: join(__dirname, 'stage.test.ts') }] };
    await expect(executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm' })).rejects.toThrow(/benchmark 'broken': .*stage\.test\.ts: refusing pickle opcode/);
  });
});
