import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { initBackend, svgToPng, tf } from '@id3/core';
import { loadEmbedder, type FaceEmbedder } from '@id3/faces';
import { GaussianDiffusion } from '../gaussian-diffusion';
import {
  ConditionEvaluator,
  HELD_OUT_HISTORY_FORMAT,
  derangement,
  evaluationRows,
  heldOutCurveSvg,
  historyUpTo,
  identityConsistency,
  mismatchShift,
  resumeHeldOutHistory,
  trainingSubset,
  writeHeldOutHistory,
  type EvaluationData,
  type HeldOutHistoryRow,
  type HeldOutHistorySettings,
} from '../held-out-evaluation';
import { makeSchedule } from '../schedule';
import { UNet, tinyUNetConfig } from '../unet';

jest.setTimeout(120_000);

describe('shuffled attributes', () => {
  it('derangement: row i takes row (i + ⌊n/2⌋) mod n, never its own, the same every time', () => {
    expect(derangement(2)).toEqual([1, 0]);
    expect(derangement(3)).toEqual([1, 2, 0]);
    expect(derangement(5)).toEqual([2, 3, 4, 0, 1]);
    for (let n = 2; n <= 70; n++) {
      const p = derangement(n);
      expect(new Set(p).size).toBe(n); // a permutation
      p.forEach((j, i) => expect(j).not.toBe(i));
      expect(derangement(n)).toEqual(p);
    }
    expect(() => derangement(1)).toThrow(RangeError);
  });

  it('mismatchShift: the "other" y is never the attribute row where another row exists', () => {
    expect([2, 3, 4, 5, 64].map(mismatchShift)).toEqual([1, 2, 1, 1, 1]);
    for (let n = 3; n <= 70; n++) expect(mismatchShift(n)).not.toBe(Math.floor(n / 2));
  });

  it('identityConsistency: mean own and shifted dot products (known values)', () => {
    // 3 rows, dim 2: e = y rotated; matched = mean ⟨e_i, y_i⟩, mismatched = mean ⟨e_i, y_{i+2}⟩.
    const y = Float32Array.from([1, 0, 0, 1, -1, 0]);
    const e = Float32Array.from([1, 0, 0.6, 0.8, 0, 1]);
    expect(identityConsistency(e, y, 2, 1).matched).toBeCloseTo((1 + 0.8 + 0) / 3, 6);
    expect(identityConsistency(e, y, 2, 1).mismatched).toBeCloseTo((0 + -0.6 + 0) / 3, 6);
    expect(identityConsistency(e, y, 2, 2).mismatched).toBeCloseTo((-1 + 0.6 + 1) / 3, 6);
  });
});

describe('which rows', () => {
  it('trainingSubset: the first rows in prepared order, or all; more than there are names the field', () => {
    expect(trainingSubset([5, 7, 9, 11], 2)).toEqual([5, 7]);
    expect(trainingSubset([5, 7, 9, 11], 4)).toEqual([5, 7, 9, 11]);
    expect(trainingSubset([5, 7, 9, 11], undefined)).toEqual([5, 7, 9, 11]);
    expect(() => trainingSubset([5, 7, 9, 11], 5)).toThrow(
      expect.objectContaining({ name: 'InvalidInputError', message: expect.stringMatching(/train-diffusion\.subset.*5 .*only 4/) }),
    );
  });

  it('evaluationRows: count held-out rows, or training rows, in a seeded random order; fewer than 2 is refused', () => {
    const pool = Array.from({ length: 40 }, (_, i) => 100 + i);
    const rows = evaluationRows('held-out', pool, [0, 2, 3, 5], 20, 7);
    expect(rows).toHaveLength(20);
    expect(new Set(rows).size).toBe(20);
    expect(rows.every((r) => pool.includes(r))).toBe(true);
    expect(rows).toEqual(evaluationRows('held-out', pool, [0, 2, 3, 5], 20, 7)); // seeded
    expect(rows).not.toEqual(pool.slice(0, 20)); // not prepared order: neighbours there are often one person
    expect([...evaluationRows('held-out', [1, 4, 8], [0, 2, 3, 5], 64, 7)].sort()).toEqual([1, 4, 8]);
    expect([...evaluationRows('training', [1, 4, 8], [0, 2, 3, 5], 4, 7)].sort()).toEqual([0, 2, 3, 5]);
    expect(() => evaluationRows('training', [1, 4, 8], [0], 3, 7)).toThrow(/train-diffusion\.evaluation\.on/);
  });
});

describe('the per-checkpoint history', () => {
  const metrics = (step: number, gap: number): HeldOutHistoryRow => ({
    step,
    evalCount: 3,
    idCosMatched: gap,
    idCosMismatched: 0,
    identityGap: gap,
    realIdCosMatched: 0.5,
    realIdCosMismatched: 0.1,
    realIdentityGap: 0.4,
    yawCorrelation: step / 10,
    ageCorrelation: Number.NaN,
    realYawCorrelation: 0.8,
    realAgeCorrelation: 0.7,
  });
  const settings: HeldOutHistorySettings = { on: 'held-out', subset: null, rows: [1, 4, 8], ddimSteps: 20, seed: 2 };
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'id3-heldout-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('historyUpTo keeps the steps up to the resumed one', () => {
    expect(historyUpTo([{ step: 2 }, { step: 4 }, { step: 6 }], 4)).toEqual([{ step: 2 }, { step: 4 }]);
    expect(historyUpTo([{ step: 2 }], 0)).toEqual([]);
  });

  it('resumeHeldOutHistory: rows ≤ the resumed step of the same settings, NaN (null in the file) restored; nothing otherwise', () => {
    const path = join(dir, 'heldout-history.json');
    writeHeldOutHistory(path, settings, [metrics(2, 0.1), metrics(4, 0.2), metrics(6, 0.3)]);
    const kept = resumeHeldOutHistory(path, settings, 4);
    expect(kept.map((h) => h.step)).toEqual([2, 4]);
    expect(kept[1].identityGap).toBe(0.2);
    expect(kept[1].ageCorrelation).toBeNaN();
    expect(resumeHeldOutHistory(path, settings, 0)).toEqual([]); // a fresh start
    expect(resumeHeldOutHistory(path, { ...settings, ddimSteps: 10 }, 4)).toEqual([]);
    expect(resumeHeldOutHistory(path, { ...settings, rows: [1, 4] }, 4)).toEqual([]);
    expect(resumeHeldOutHistory(join(dir, 'missing.json'), settings, 4)).toEqual([]);
    writeFileSync(join(dir, 'bad.json'), '{"format": "');
    expect(resumeHeldOutHistory(join(dir, 'bad.json'), settings, 4)).toEqual([]);
    writeFileSync(join(dir, 'other.json'), JSON.stringify({ format: `${HELD_OUT_HISTORY_FORMAT}x`, settings, history: [] }));
    expect(resumeHeldOutHistory(join(dir, 'other.json'), settings, 4)).toEqual([]);
  });

  it('heldOutCurveSvg: two stacked panels (identity gap, attribute correlations), rendered to one PNG', async () => {
    const svg = heldOutCurveSvg([metrics(2, 0.1), metrics(4, 0.2)], 'training');
    expect(svg.match(/<svg /g)).toHaveLength(3);
    expect(svg).toContain('<svg y="480" ');
    expect(svg).toContain('identity gap, training rows (proxy)');
    expect(svg).toContain('yaw, real photos');
    expect(svg).not.toContain('>age<'); // age correlations are all NaN: no series
    const png = await sharp(await svgToPng(svg)).metadata();
    expect([png.width, png.height]).toEqual([800, 960]);
  });
});

describe('ConditionEvaluator', () => {
  const R = 16;
  const n = 6;
  let teacher: FaceEmbedder;
  let net: UNet;
  let data: EvaluationData;
  const diffusion = new GaussianDiffusion(makeSchedule({ steps: 50 }));

  beforeAll(async () => {
    await initBackend('wasm', () => undefined);
    teacher = await loadEmbedder('faceapi-dlib-128');
    const d = teacher.dim;
    const unit = (k: number): Float32Array => {
      const v = Float32Array.from({ length: d }, (_, j) => Math.sin(1 + k * 13 + j * 0.7));
      const norm = Math.hypot(...v);
      return v.map((x) => x / norm);
    };
    const y = new Float32Array(n * d);
    for (let i = 0; i < n; i++) y.set(unit(i), i * d);
    data = {
      size: R,
      crops: Uint8Array.from({ length: n * R * R * 3 }, (_, k) => (k * 37 + ((k / 48) | 0) * 11) % 256),
      y,
      identityDim: d,
      s: Float32Array.from({ length: n * 4 }, (_, k) => Math.cos(k) * 0.5),
      attributeDim: 4,
      // [age, pitch, yaw, roll]: age 20 + 5i, yaw −30 + 10i
      rawAttributes: Float32Array.from({ length: n * 4 }, (_, k) =>
        k % 4 === 0 ? 20 + 5 * (k / 4) : k % 4 === 2 ? -30 + 10 * ((k - 2) / 4) : 0,
      ),
    };
    net = UNet.create(tinyUNetConfig(R, d), 3);
  });
  afterAll(() => net?.dispose());

  it('samples (y_i, s of the deranged row), is repeatable, reads the real photos once per row set, and leaks no tensors', async () => {
    const evaluator = new ConditionEvaluator(teacher, data, 7);
    const rows = [0, 2, 3, 5];
    const first = await evaluator.evaluate(net, diffusion, rows, 2); // warms up the read-out nets
    expect(first.attributeRows).toEqual([3, 5, 0, 2]);
    expect(first.requested.yaw).toEqual([0, 20, -30, -10]); // yaw of rows 3, 5, 0, 2
    expect(first.requested.age).toEqual([35, 45, 20, 30]);
    expect(first.realRequested.yaw).toEqual([-30, -10, 0, 20]);
    const m = first.metrics;
    expect(m.evalCount).toBe(4);
    expect(m.identityGap).toBeCloseTo(m.idCosMatched - m.idCosMismatched, 12);
    expect(m.realIdentityGap).toBeCloseTo(m.realIdCosMatched - m.realIdCosMismatched, 12);
    for (const k of ['idCosMatched', 'idCosMismatched', 'realIdCosMatched', 'realIdCosMismatched'] as const)
      expect(Math.abs(m[k])).toBeLessThanOrEqual(1 + 1e-6);

    const before = tf.memory().numTensors;
    const again = await evaluator.evaluate(net, diffusion, rows, 2);
    expect(again.metrics).toEqual(first.metrics); // the fixed sampling seed: checkpoints compare
    expect(evaluator.realReadouts).toBe(1); // cached
    await evaluator.evaluate(net, diffusion, [1, 4, 5], 2);
    expect(evaluator.realReadouts).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('conditions the UNet on data.condition when the data has one (an identity space), cosines still against y', async () => {
    const k = 8;
    const small = UNet.create(tinyUNetConfig(R, k), 3);
    try {
      const condition = { values: Float32Array.from({ length: n * k }, (_, j) => Math.sin(j)), dim: k };
      const ev = await new ConditionEvaluator(teacher, { ...data, condition }, 7).evaluate(small, diffusion, [0, 1, 2], 2);
      expect(ev.metrics.evalCount).toBe(3);
      expect(Number.isFinite(ev.metrics.identityGap)).toBe(true);
    } finally {
      small.dispose();
    }
  });
});
