import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@id3/core';
import { evaluateDistances, pairDistances } from '@id3/eval';
import { writeDatasetCard, type DatasetCardInput, type DatasetCardNumbers } from '../card';
import { drawVerificationPairs, flagLeakingIdentities, gatherRows, unitRows } from '../leakage';

const dim = 16;
const k = 6;
const per = 5;
const n = k * per;
const r = 8;
const cropSize = 12;
const nTrain = 20;
const nReal = 10;

function cos(a: Float32Array, i: number, b: Float32Array, j: number): number {
  let s = 0;
  for (let x = 0; x < dim; x++) s += a[i * dim + x] * b[j * dim + x];
  return s;
}

function pearson(a: number[], b: number[]): number {
  const ma = a.reduce((s, v) => s + v, 0) / a.length;
  const mb = b.reduce((s, v) => s + v, 0) / b.length;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

/** A small random set: identities = centre + noise; identity 0's first image is training face 3. */
function smallInput(): DatasetCardInput {
  const rng = new Rng(5);
  const gauss = (len: number): Float32Array => Float32Array.from({ length: len }, () => rng.normal());
  const bytes = (len: number): Uint8Array => Uint8Array.from({ length: len }, () => rng.int(256));
  const centres = unitRows(gauss(k * dim), dim);
  const labels = Int32Array.from({ length: n }, (_, i) => Math.floor(i / per));
  const raw = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) for (let x = 0; x < dim; x++) raw[i * dim + x] = centres[labels[i] * dim + x] + 0.4 * rng.normal();
  const training = unitRows(gauss(nTrain * dim), dim);
  const embeddings = unitRows(raw, dim);
  embeddings.set(training.subarray(3 * dim, 4 * dim), 0);
  const yaw = Float32Array.from({ length: n }, () => rng.range(-60, 60));
  const age = Float32Array.from({ length: n }, () => rng.range(5, 80));
  return {
    set: {
      resolution: r,
      images: bytes(n * r * r * 3),
      labels,
      identityNames: Array.from({ length: k }, (_, i) => `id${String(i).padStart(5, '0')}`),
      dim,
      embeddings,
      y: Float32Array.from({ length: n * dim }, (_, i) => centres[labels[Math.floor(i / dim)] * dim + (i % dim)]),
      requested: { yaw, age },
    },
    readBack: {
      indices: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18],
      yaw: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18].map((i) => yaw[i] + 10 * rng.normal()),
      age: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18].map((i) => age[i] + 8 * rng.normal()),
    },
    training: {
      embeddings: training,
      yaw: Float32Array.from({ length: nTrain }, () => rng.range(-45, 45)),
      age: Float32Array.from({ length: nTrain }, () => rng.range(1, 90)),
      crops: bytes(nTrain * cropSize * cropSize * 3),
      cropSize,
    },
    realHeldOut: { embeddings: unitRows(gauss(nReal * dim), dim), crops: bytes(nReal * cropSize * cropSize * 3) },
    leakageThreshold: { cosine: 0.95, source: 'test threshold' },
    acceptance: {
      generated: 40,
      accepted: 30,
      rejectedSimilarity: 7,
      rejectedFace: 3,
      droppedIdentities: [],
      warnAboveRejectedFraction: 0.2,
    },
    guidanceComparison: { identities: 2, perIdentity: 3, size: r, guided: bytes(6 * r * r * 3), unguided: bytes(6 * r * r * 3) },
    seed: 11,
    title: 'Test synthetic set',
  };
}

describe('writeDatasetCard', () => {
  let dir: string;
  let input: DatasetCardInput;
  let card: DatasetCardNumbers;
  let json: DatasetCardNumbers;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'id3-card-'));
    input = smallInput();
    card = await writeDatasetCard(dir, input);
    json = JSON.parse(readFileSync(join(dir, 'card.json'), 'utf8')) as DatasetCardNumbers;
  });
  afterAll(() => (process.env.ID3_KEEP_CARD ? undefined : rmSync(dir, { recursive: true, force: true })));

  it('writes every file: report, numbers and the PNGs', () => {
    const pngs = [
      'grid.png',
      'guidance-on-off.png',
      'similarity.png',
      'attributes-yaw.png',
      'attributes-age.png',
      'leakage.png',
      'leakage-closest.png',
    ];
    expect([...card.files].sort()).toEqual([...pngs, 'report.md', 'card.json'].sort());
    for (const f of pngs) expect(readFileSync(join(dir, f)).subarray(1, 4).toString()).toBe('PNG');
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toContain('# Test synthetic set');
    expect(report).toContain('1 of 6 identities flagged');
    for (const f of pngs) expect(report).toContain(`(${f})`);
    expect(json).toEqual(JSON.parse(JSON.stringify(card)));
  });

  it('reports the acceptance rate and warns above the stated rejected fraction', () => {
    expect(json.acceptance.rate).toBeCloseTo(0.75, 12);
    expect(json.acceptance.rejectedFraction).toBeCloseTo(0.25, 12);
    expect(json.acceptance.warning).toContain('25.0%');
    expect(json.warnings).toContain(json.acceptance.warning);
  });

  it('matches direct computation of the intra/inter similarity and the verification accuracy', () => {
    // Every pair of the small set is drawn: 6 × C(5, 2) same, C(30, 2) − 60 different.
    expect(json.similarity.samePairs).toBe(60);
    expect(json.similarity.differentPairs).toBe(435 - 60);
    const e = input.set.embeddings;
    const labels = input.set.labels;
    let intra = 0;
    let inter = 0;
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        if (labels[i] === labels[j]) intra += cos(e, i, e, j);
        else inter += cos(e, i, e, j);
      }
    }
    expect(json.similarity.intraMean).toBeCloseTo(intra / 60, 5);
    expect(json.similarity.interMean).toBeCloseTo(inter / 375, 5);
    let own = 0;
    for (let i = 0; i < n; i++) own += cos(e, i, input.set.y, i);
    expect(json.similarity.identityConsistency).toBeCloseTo(own / n, 5);

    const p = drawVerificationPairs(labels, 3000, 3000, input.seed);
    const v = evaluateDistances(pairDistances(gatherRows(e, dim, p.a), gatherRows(e, dim, p.b), dim), p.same, { foldOf: p.fold });
    if (!('accuracy' in json.verification)) throw new Error('verification skipped');
    expect(json.verification.accuracy).toBeCloseTo(v.accuracy, 12);
    expect(json.verification.accuracyStd).toBeCloseTo(v.accuracyStd, 12);
    expect(json.verification.folds).toBe(10);
    expect(json.verification.accuracy).toBeGreaterThan(0.8); // the identities are well separated
  });

  it('reads the same pairs with an independent embedder: a model blind to the identities scores near chance', async () => {
    expect(json.check).toBeNull(); // none given
    // The second model sees nothing of the identities (its embeddings ignore the labels).
    const rng = new Rng(9);
    const blind = unitRows(
      Float32Array.from({ length: n * dim }, () => rng.normal()),
      dim,
    );
    const other = mkdtempSync(join(tmpdir(), 'id3-card-check-'));
    try {
      const withCheck = await writeDatasetCard(other, { ...input, check: { name: 'blind-model', dim, embeddings: blind } });
      if (!withCheck.check || !('accuracy' in withCheck.check.verification)) throw new Error('check verification missing');
      let intra = 0;
      let inter = 0;
      const labels = input.set.labels;
      for (let i = 0; i < n; i++)
        for (let j = i + 1; j < n; j++) {
          if (labels[i] === labels[j]) intra += cos(blind, i, blind, j);
          else inter += cos(blind, i, blind, j);
        }
      expect(withCheck.check.embedder).toBe('blind-model');
      expect(withCheck.check.intraMean).toBeCloseTo(intra / 60, 5);
      expect(withCheck.check.interMean).toBeCloseTo(inter / 375, 5);
      const p = drawVerificationPairs(labels, 3000, 3000, input.seed);
      const v = evaluateDistances(pairDistances(gatherRows(blind, dim, p.a), gatherRows(blind, dim, p.b), dim), p.same, { foldOf: p.fold });
      expect(withCheck.check.verification.accuracy).toBeCloseTo(v.accuracy, 12);
      // The teacher's numbers are unchanged by the second reading.
      expect(withCheck.verification).toEqual(card.verification);
      if (!('auc' in withCheck.verification)) throw new Error('verification skipped');
      expect(withCheck.check.verification.auc).toBeLessThan(withCheck.verification.auc - 0.2);
      expect(readFileSync(join(other, 'report.md'), 'utf8')).toContain('Read by an independent embedder** (blind-model');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('matches direct computation of the attribute correlations', () => {
    const rb = input.readBack!;
    const req = rb.indices.map((i) => input.set.requested.yaw[i]);
    expect(json.attributes.readBackImages).toBe(10);
    expect(json.attributes.yaw.correlation).toBeCloseTo(pearson(req, [...rb.yaw]), 10);
    expect(json.attributes.yaw.meanAbsoluteError).toBeCloseTo(req.reduce((s, v, j) => s + Math.abs(v - rb.yaw[j]), 0) / 10, 10);
    const reqAge = rb.indices.map((i) => input.set.requested.age[i]);
    expect(json.attributes.age.correlation).toBeCloseTo(pearson(reqAge, [...rb.age]), 10);
  });

  it('matches direct computation of the leakage numbers and flags the copied identity', () => {
    const e = input.set.embeddings;
    const t = input.training.embeddings;
    const nearest = (src: Float32Array, i: number): number => Math.max(...Array.from({ length: nTrain }, (_, j) => cos(src, i, t, j)));
    const perIdentity = Array.from({ length: k }, (_, id) => Math.max(...Array.from({ length: per }, (_, m) => nearest(e, id * per + m))));
    const real = Array.from({ length: nReal }, (_, i) => nearest(input.realHeldOut.embeddings, i)).sort((a, b) => a - b);
    expect(json.leakage.perIdentity.max).toBeCloseTo(1, 5);
    expect(json.leakage.perIdentity.mean).toBeCloseTo(perIdentity.reduce((a, b) => a + b, 0) / k, 5);
    expect(json.leakage.realHeldOut.median).toBeCloseTo((real[4] + real[5]) / 2, 5);
    expect(json.leakage.realHeldOut.max).toBeCloseTo(real[9], 5);
    expect(json.leakage.flaggedCount).toBe(1);
    expect(json.leakage.flagged).toEqual([{ identity: 'id00000', cosine: expect.closeTo(1, 5) as number, image: 0, training: 3 }]);
    expect(json.leakage.fractionAtOrAboveThreshold.syntheticImages).toBeCloseTo(1 / n, 12);
    expect(json.leakage.closest[0].identity).toBe('id00000');
    expect(json.leakage.closest).toHaveLength(k);
    expect(json.warnings.some((w) => w.includes('1 of 6 identities'))).toBe(true);
    const p95 = real[8] + 0.55 * (real[9] - real[8]); // numpy's linear quantile of 10 values
    expect(json.leakage.realReference[0]).toEqual({
      quantile: 0.95,
      cosine: expect.closeTo(p95, 5) as number,
      identities: perIdentity.filter((c) => c >= p95).length,
      syntheticImages: expect.any(Number) as number,
    });
    expect(json.warnings.some((w) => w.includes('real faces the generator never trained on'))).toBe(false);
  });

  it('warns when the threshold flags many real never-seen faces too', async () => {
    const low = await writeDatasetCard(join(dir, 'low'), { ...input, leakageThreshold: { cosine: 0.3, source: 'too low' } });
    expect(low.leakage.fractionAtOrAboveThreshold.realHeldOut).toBeGreaterThan(0.05);
    expect(low.warnings.some((w) => w.includes('real faces the generator never trained on'))).toBe(true);
  });

  it('reuses leakage flags the stage computed, and refuses flags of another threshold', async () => {
    const flags = flagLeakingIdentities(
      { embeddings: input.set.embeddings, labels: input.set.labels, dim, identities: k },
      input.training.embeddings,
      0.95,
    );
    const again = await writeDatasetCard(join(dir, 'again'), { ...input, leakageFlags: flags, guidanceComparison: undefined });
    expect(again.leakage).toEqual(card.leakage);
    expect(again.files).not.toContain('guidance-on-off.png');
    await expect(writeDatasetCard(join(dir, 'other'), { ...input, leakageFlags: { ...flags, threshold: 0.9 } })).rejects.toThrow(
      /another set or threshold/,
    );
  });

  it('rejects inconsistent input with a message', async () => {
    const bad = { ...input, set: { ...input.set, labels: new Int32Array(n).fill(9) } };
    await expect(writeDatasetCard(dir, bad)).rejects.toThrow(/label 9 of image 0/);
  });
});
