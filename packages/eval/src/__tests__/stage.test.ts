import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { RunStore, executeShard, executeStage, initBackend, prepareStageRun } from '@id3/core';
import { decodeImageBytes, detectAndAlign, headPoseFrom68, readInsightfaceBin, requireDataPath } from '@id3/faces';
import { evalStage, poseBinnedAccuracy, type PairResults } from '../index';

// The eval stage with the pretrained teacher on real benchmark files: both insightface .bin
// samples (40 LFW pairs of 112×112 crops each) and the CFP-layout sample (FP split).
jest.setTimeout(300_000);

// One embedding cache for the file: the first test fills it, later ones read what they can.
const cacheDir = mkdtempSync(join(tmpdir(), 'id3-eval-cache-'));

describe('eval stage', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
  });

  it('writes results, a paper-layout report and plots; a re-run is served from the embedding cache', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const config = {
      seed: 0,
      cacheDir,
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
    expect(report).toMatch(
      /\| teacher:faceapi-dlib-128 \| no data \| \d+\.\d\d ± \d+\.\d\d \| no data \| no data \| no data \| n\/a \(1 of 5\) \|/,
    );
    expect(report).toMatch(/Not in the paper's table: lfw-sample-py2, lfw-sample-py3/);
    expect((await sharp(store.abs(r.manifest.outputs.roc.path)).metadata()).format).toBe('png');

    // Per-pair outcomes, for paired tests: 40 pairs in 10 contiguous folds of 4 (the .bin's
    // KFold); the mean of `correct` over each fold is exactly the fold accuracy in results.json.
    const results = JSON.parse(readFileSync(store.abs(r.manifest.outputs.results.path), 'utf8')) as {
      results: Record<string, { foldAccuracies: number[]; thresholds: number[] }>;
    };
    const pairs = JSON.parse(readFileSync(store.abs(r.manifest.outputs.pairs_lfwsamplepy2.path), 'utf8')) as PairResults;
    expect(r.manifest.outputs.pairs_lfwsamplepy2.path).toMatch(/pairs-lfwsamplepy2\.json$/);
    expect(pairs.benchmark).toBe('lfw-sample-py2');
    expect(pairs.pairs).toBe(40);
    expect(pairs.folds).toEqual(Array.from({ length: 40 }, (_, i) => Math.floor(i / 4)));
    expect([pairs.issame.length, pairs.distance.length, pairs.correct.length]).toEqual([40, 40, 40]);
    expect(pairs.threshold).toEqual(results.results['lfw-sample-py2'].thresholds);
    const perFold = Array.from({ length: 10 }, (_, f) => pairs.correct.slice(4 * f, 4 * f + 4).filter(Boolean).length / 4);
    expect(perFold).toEqual(results.results['lfw-sample-py2'].foldAccuracies);
    expect(pairs.distance.every((d) => d >= 0 && d <= 4 && Number(d.toFixed(6)) === d)).toBe(true);
    expect(r.manifest.outputs.pairs_CFPFP).toBeDefined();

    // Head pose per pair: |yaw_a − yaw_b| from each image's 68 landmarks, as prepare measures
    // yaw (null only where the detector fell back to a centre crop).
    expect(pairs.yawDifference).toHaveLength(40);
    const known = pairs.yawDifference.filter((d): d is number => d !== null);
    expect(known.length).toBeGreaterThanOrEqual(30);
    expect(known.every((d) => d >= 0 && d < 90 && Number(d.toFixed(2)) === d)).toBe(true);
    expect(Math.max(...known)).toBeGreaterThan(0); // not all frontal by construction
    // Pair 0 by hand: the same detection and pose code prepare runs, on the .bin's own bytes.
    const bin = readInsightfaceBin(requireDataPath('samples/insightface-bin/sample-py2.bin'));
    const yawOf = async (i: number): Promise<number | null> => {
      const found = await detectAndAlign(await decodeImageBytes(bin.images[i], `image ${i}`), { detector: 'tiny', fallbackFraction: 1 });
      return found.ok && found.method === 'landmarks' && found.landmarks68 ? headPoseFrom68(found.landmarks68).yaw : null;
    };
    const [ya, yb] = [await yawOf(0), await yawOf(1)];
    expect(pairs.yawDifference[0]).toBe(ya === null || yb === null ? null : Number(Math.abs(ya - yb).toFixed(2)));
    // The metrics and the report's table are the binning of exactly the file's values.
    const pose = poseBinnedAccuracy(pairs.yawDifference, pairs.correct);
    expect(pose.top.pairs).toBeGreaterThanOrEqual(Math.ceil(known.length / 4));
    expect(m.lfwsamplepy2_poseTopQuartileAccuracy).toBe(pose.top.accuracy);
    expect(m.lfwsamplepy2_poseTopQuartilePairs).toBe(pose.top.pairs);
    expect(m.lfwsamplepy2_poseUnknownPairs).toBe(40 - known.length);
    expect(pose.bins.map((b) => m[`lfwsamplepy2_poseYaw${b.max === Infinity ? `${b.min}up` : `${b.min}to${b.max}`}Pairs`])).toEqual(
      pose.bins.map((b) => b.pairs),
    );
    expect(report).toMatch(/## Accuracy by head-pose difference/);
    expect(report).toMatch(/\| benchmark \| top 25% \| \[0, 10\) \| \[10, 20\) \| \[20, ∞\) \| no yaw \|/);
    expect(report).toContain(
      `| lfw-sample-py2 | ${(100 * (pose.top.accuracy ?? 0)).toFixed(2)} (${pose.top.pairs}), ≥ ${pose.top.min.toFixed(1)}° |`,
    );
    // py3 holds the same images, served from the cache py2 filled: the cached yaws are the same.
    const pairs3 = JSON.parse(readFileSync(store.abs(r.manifest.outputs.pairs_lfwsamplepy3.path), 'utf8')) as PairResults;
    expect(pairs3.yawDifference).toEqual(pairs.yawDifference);

    // One shard per benchmark here (40 pairs each, 500 per shard by default); py2 and py3 hold
    // the same images, so the second one's shard is served from the cache the first one filled.
    expect(m.shards).toBe(3);
    expect(m.lfwsamplepy2_computedImages).toBeGreaterThan(0);
    expect(m.lfwsamplepy3_computedImages).toBe(0);

    // Shards gone (as on a fresh worker sharing the cache): recomputed from the embedding cache alone.
    rmSync(join(store.stageDir('eval'), 'shards'), { recursive: true });
    const again = await executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm', force: true });
    expect(again.manifest.metrics.lfwsamplepy2_accuracy).toBe(m.lfwsamplepy2_accuracy);
    expect(again.manifest.metrics.lfwsamplepy2_computedImages).toBe(0); // nothing recomputed
    expect(again.manifest.metrics.lfwsamplepy2_msPerComputedImage).toBe(0);
    const pairsAgain = JSON.parse(readFileSync(store.abs(again.manifest.outputs.pairs_lfwsamplepy2.path), 'utf8')) as PairResults;
    expect(pairsAgain.yawDifference).toEqual(pairs.yawDifference); // yaw came from the cache too
    expect(again.manifest.metrics.lfwsamplepy2_poseTopQuartileAccuracy).toBe(m.lfwsamplepy2_poseTopQuartileAccuracy);

    // The embeddings gone but the crops kept (as for another model with the same crop layout):
    // every image embedded again, none detected again, and the very same numbers.
    expect(m.lfwsamplepy2_detectedImages).toBe(m.lfwsamplepy2_computedImages);
    rmSync(join(cacheDir, 'faceapi-dlib-128'), { recursive: true });
    rmSync(join(store.stageDir('eval'), 'shards'), { recursive: true });
    const fromCrops = await executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm', force: true });
    const f = fromCrops.manifest.metrics;
    expect(f.lfwsamplepy2_computedImages).toBe(m.lfwsamplepy2_computedImages);
    expect(f.lfwsamplepy2_detectedImages).toBe(0);
    expect(f.CFPFP_detectedImages).toBe(0);
    expect(f.lfwsamplepy2_fallbacks).toBe(m.lfwsamplepy2_fallbacks);
    for (const k of ['lfwsamplepy2_accuracy', 'lfwsamplepy2_auc', 'CFPFP_accuracy', 'CFPFP_auc', 'lfwsamplepy2_poseTopQuartileAccuracy'])
      expect([k, f[k]]).toEqual([k, m[k]]);
    const pairsFromCrops = JSON.parse(readFileSync(store.abs(fromCrops.manifest.outputs.pairs_lfwsamplepy2.path), 'utf8')) as PairResults;
    expect(pairsFromCrops.distance).toEqual(pairs.distance);
    expect(pairsFromCrops.yawDifference).toEqual(pairs.yawDifference);
  });

  it('a malformed benchmark file fails naming the file', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const config = { seed: 0, benchmarks: [{ kind: 'bin', name: 'broken', path: join(__dirname, 'stage.test.ts') }] };
    await expect(executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm' })).rejects.toThrow(
      /benchmark 'broken': .*stage\.test\.ts: refusing pickle opcode/,
    );
  });
});

describe('eval shards', () => {
  it('splits each benchmark into chunks of pairsPerShard; merging shards run out of order gives the same numbers', async () => {
    await initBackend('wasm', () => undefined);
    const spec = { kind: 'bin', name: 'lfw-sample', path: 'data:samples/insightface-bin/sample-py3.bin' };
    const whole = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const one = await executeStage(
      evalStage,
      { seed: 0, benchmarks: [spec], cacheDir },
      { store: whole, progress: () => undefined, backend: 'wasm' },
    );

    const split = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const config = { seed: 0, benchmarks: [spec], cacheDir, pairsPerShard: 15 };
    const plan = await prepareStageRun(evalStage, config, { store: split, progress: () => undefined, backend: 'wasm' });
    const ids = plan.current ? [] : plan.shards.map((s) => s.id);
    expect(ids).toEqual(['0-lfwsample-0000', '0-lfwsample-0001', '0-lfwsample-0002']); // 40 pairs: 15 + 15 + 10
    for (const id of [...ids].reverse())
      await executeShard(evalStage, config, id, { store: split, progress: () => undefined, backend: 'wasm' });
    const merged = await executeStage(evalStage, config, { store: split, progress: () => undefined, backend: 'wasm' });
    expect(merged.manifest.metrics.lfwsample_accuracy).toBe(one.manifest.metrics.lfwsample_accuracy);
    expect(merged.manifest.metrics.lfwsample_auc).toBe(one.manifest.metrics.lfwsample_auc);
    expect(merged.manifest.metrics.shards).toBe(3);
    expect(merged.manifest.metrics.lfwsample_computedImages).toBe(0); // the same cache served every image
    // Yaw merged from the shards' headers in pair order, as in the one-shard run.
    const yawOf = (store: RunStore, m: typeof one.manifest) =>
      (JSON.parse(readFileSync(store.abs(m.outputs.pairs_lfwsample.path), 'utf8')) as PairResults).yawDifference;
    expect(yawOf(split, merged.manifest)).toEqual(yawOf(whole, one.manifest));
    expect(merged.manifest.metrics.lfwsample_poseTopQuartileAccuracy).toBe(one.manifest.metrics.lfwsample_poseTopQuartileAccuracy);
  });

  it('an unknown model is refused naming the field and the known ones', async () => {
    const store = new RunStore(mkdtempSync(join(tmpdir(), 'id3-eval-')));
    const config = {
      seed: 0,
      model: 'teacher:arcface-r100',
      benchmarks: [{ kind: 'bin', name: 'x', path: 'data:samples/insightface-bin/sample-py3.bin' }],
    };
    await expect(
      executeStage(evalStage, config, { store, progress: () => undefined, backend: 'wasm', fieldPrefix: 'eval' }),
    ).rejects.toThrow(
      /field 'eval\.model': unknown model 'teacher:arcface-r100' \(known: teacher:faceapi-dlib-128, teacher:mobileface-256/,
    );
  });
});
