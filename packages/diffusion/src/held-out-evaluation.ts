// Read-outs of samples generated for held-out conditions: identity (teacher cosines to the
// requested y) and attributes (yaw and age read back), as the train-diffusion stage reports them
// at every checkpoint and at the end.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidInputError, Rng, canonicalJson, lineChartSvg, svgToPng, tf, writeFileAtomic, writeJsonAtomic } from '@id3/core';
import {
  correlation,
  embedWithFlip,
  headPoseFrom68,
  landmarksOfCrop,
  predictAge,
  resizeImage,
  type FaceEmbedder,
  type RgbImage,
} from '@id3/faces';
import type { GaussianDiffusion } from './gaussian-diffusion';
import { toImages } from './images';
import { sampleConditions } from './sampling';
import { TeacherInput } from './teacher-input';
import type { TrainingData } from './trainer';
import type { UNet } from './unet';

/** Teacher embeddings of [-1, 1] crops, mapped onto the teacher's input, image + flip summed. */
export async function embedCrops(
  teacher: FaceEmbedder,
  input: TeacherInput,
  values: Float32Array,
  size: number,
  chunk = 16,
): Promise<Float32Array> {
  const px = size * size * 3;
  const n = values.length / px;
  const out = new Float32Array(n * teacher.dim);
  for (let start = 0; start < n; start += chunk) {
    const m = Math.min(chunk, n - start);
    const e = tf.tidy(() =>
      embedWithFlip(teacher, input.apply(tf.tensor4d(values.subarray(start * px, (start + m) * px), [m, size, size, 3]))),
    );
    out.set((await e.data()) as Float32Array, start * teacher.dim);
    e.dispose();
  }
  return out;
}

/** Pearson correlation; undefined (NaN) for fewer than 3 pairs. */
export function pearson(a: readonly number[], b: readonly number[]): number {
  return a.length < 3 ? Number.NaN : correlation(a, b);
}

export interface AttributeReadout {
  readonly yaw: number[];
  readonly age: number[];
}

/**
 * Yaw (68-point head pose) and age (face-api) read back from face crops, upscaled to 112: the
 * landmark net runs on the crop itself (see landmarksOfCrop), the age net on its landmark box.
 */
export async function readAttributes(images: readonly RgbImage[]): Promise<AttributeReadout> {
  const yaw: number[] = [];
  const age: number[] = [];
  for (const img of images) {
    const big = img.width >= 112 ? img : await resizeImage(img, 112, 112);
    const landmarks = await landmarksOfCrop(big);
    yaw.push(headPoseFrom68(landmarks).yaw);
    age.push((await predictAge(big, landmarks)).age);
  }
  return { yaw, age };
}

/** Mean of ⟨e_i, y_i⟩ (matched) and of ⟨e_i, y_{i+shift}⟩ (mismatched conditions). */
export function identityConsistency(e: Float32Array, y: Float32Array, dim: number, shift = 1): { matched: number; mismatched: number } {
  const n = e.length / dim;
  let matched = 0;
  let mismatched = 0;
  for (let i = 0; i < n; i++) {
    const j = (i + shift) % n;
    let dm = 0;
    let dx = 0;
    for (let k = 0; k < dim; k++) {
      dm += e[i * dim + k] * y[i * dim + k];
      dx += e[i * dim + k] * y[j * dim + k];
    }
    matched += dm;
    mismatched += dx;
  }
  return { matched: matched / n, mismatched: mismatched / n };
}

// ── conditioning read-outs (shuffled attributes), per checkpoint ─────────────────────────────

/**
 * The fixed derangement that gives evaluation row i the attributes s of row (i + ⌊n/2⌋) mod n:
 * never its own (n ≥ 2), the same every time. y carries age itself, so attributes requested with
 * their own y would show that y is followed, not s.
 */
export function derangement(n: number): number[] {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`derangement: needs at least 2 rows, got ${n}`);
  const half = Math.floor(n / 2);
  return Array.from({ length: n }, (_, i) => (i + half) % n);
}

/**
 * The shift of the mismatched identity y_{i+shift} (identityConsistency): 1, or 2 where the
 * attribute derangement shifts by 1 too (n = 3), so the "other" y is never that of the row whose
 * attributes the sample got (n = 2 leaves no other row).
 */
export function mismatchShift(n: number): number {
  return n > 2 && Math.floor(n / 2) === 1 ? 2 : 1;
}

/** What the held-out evaluation reports (the manifest metrics keep these names). */
export interface ConditionMetrics {
  readonly evalCount: number;
  /** Teacher cosine of each sample to its own y, and to another evaluation row's y. */
  readonly idCosMatched: number;
  readonly idCosMismatched: number;
  /** idCosMatched − idCosMismatched. */
  readonly identityGap: number;
  /** The same for the real photos of the rows (the ceiling at this resolution). */
  readonly realIdCosMatched: number;
  readonly realIdCosMismatched: number;
  readonly realIdentityGap: number;
  /** Requested (shuffled-in) yaw / age against those read back from the samples. */
  readonly yawCorrelation: number;
  readonly ageCorrelation: number;
  /** Each real photo's own yaw / age against those read back from it (unshuffled). */
  readonly realYawCorrelation: number;
  readonly realAgeCorrelation: number;
}

/**
 * The prepared rows the evaluation reads: a TrainingData's (y is what identity consistency is
 * measured against, `condition` what the UNet takes) plus the raw attributes.
 */
export interface EvaluationData extends Omit<TrainingData, 'trainRows'> {
  /** Raw attributes per row, columns [age, pitch, yaw, roll] (years, degrees). */
  readonly rawAttributes: Float32Array;
}

export interface ConditionEvaluation {
  readonly metrics: ConditionMetrics;
  /** The evaluation rows (identity y and real photo of sample i: rows[i]). */
  readonly rows: readonly number[];
  /** The row whose attributes s sample i was asked for. */
  readonly attributeRows: readonly number[];
  /** Yaw / age the samples were asked for (those of attributeRows). */
  readonly requested: AttributeReadout;
  /** Read back from the samples, and from the real photos of `rows`. */
  readonly predicted: { readonly sample: AttributeReadout; readonly real: AttributeReadout };
  /** The real photos' own yaw / age (of `rows`). */
  readonly realRequested: AttributeReadout;
}

interface RealReadout {
  readonly ids: { matched: number; mismatched: number };
  readonly attributes: AttributeReadout;
}

/** Rows of a row-major [n, width] array, in the given order. */
export function pickRows(values: Float32Array, width: number, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(values.subarray(r * width, (r + 1) * width), i * width));
  return out;
}

/**
 * The generator against its conditions: samples for (y_i, s_π(i)) with π a fixed derangement,
 * the teacher cosine of each to its own y_i versus another row's y (identity), and yaw and age
 * read back versus those of row π(i) (attributes). The real photos' read-outs do not depend on
 * the weights: they are computed once per row set and cached. The sampling seed is fixed, so
 * evaluations of successive checkpoints differ only by the weights.
 */
export class ConditionEvaluator {
  private readonly real = new Map<string, RealReadout>();

  constructor(
    private readonly teacher: FaceEmbedder,
    private readonly data: EvaluationData,
    private readonly seed: number,
  ) {}

  /** `cfgScale` ≠ 1 samples with classifier-free guidance (see sampleConditions). */
  async evaluate(
    net: UNet,
    diffusion: GaussianDiffusion,
    rows: readonly number[],
    ddimSteps: number,
    cfgScale = 1,
  ): Promise<ConditionEvaluation> {
    const { data } = this;
    const n = rows.length;
    const attributeRows = derangement(n).map((j) => rows[j]);
    const c = data.condition ?? { values: data.y, dim: data.identityDim };
    const cond = { y: pickRows(c.values, c.dim, rows), s: pickRows(data.s, data.attributeDim, attributeRows), count: n };
    const samples = await sampleConditions(net, diffusion, cond, { ddimSteps, seed: this.seed, cfgScale });
    const input = TeacherInput.forTeacher(this.teacher, data.size);
    let ids: { matched: number; mismatched: number };
    let real: RealReadout;
    try {
      const e = await embedCrops(this.teacher, input, samples, data.size);
      ids = identityConsistency(e, pickRows(data.y, data.identityDim, rows), data.identityDim, mismatchShift(n));
      real = await this.realReadout(rows, input);
    } finally {
      input.dispose();
    }
    const sample = await readAttributes(toImages(samples, data.size));
    const requested = this.rawYawAge(attributeRows);
    const realRequested = this.rawYawAge(rows);
    const metrics: ConditionMetrics = {
      evalCount: n,
      idCosMatched: ids.matched,
      idCosMismatched: ids.mismatched,
      identityGap: ids.matched - ids.mismatched,
      realIdCosMatched: real.ids.matched,
      realIdCosMismatched: real.ids.mismatched,
      realIdentityGap: real.ids.matched - real.ids.mismatched,
      yawCorrelation: pearson(requested.yaw, sample.yaw),
      ageCorrelation: pearson(requested.age, sample.age),
      realYawCorrelation: pearson(realRequested.yaw, real.attributes.yaw),
      realAgeCorrelation: pearson(realRequested.age, real.attributes.age),
    };
    return { metrics, rows: [...rows], attributeRows, requested, predicted: { sample, real: real.attributes }, realRequested };
  }

  /** How many real row sets have been read (each once). */
  get realReadouts(): number {
    return this.real.size;
  }

  private async realReadout(rows: readonly number[], input: TeacherInput): Promise<RealReadout> {
    const key = rows.join(',');
    const cached = this.real.get(key);
    if (cached) return cached;
    const { data } = this;
    const px = data.size * data.size * 3;
    const values = new Float32Array(rows.length * px);
    rows.forEach((r, i) => {
      for (let k = 0; k < px; k++) values[i * px + k] = data.crops[r * px + k] / 127.5 - 1;
    });
    const e = await embedCrops(this.teacher, input, values, data.size);
    const ids = identityConsistency(e, pickRows(data.y, data.identityDim, rows), data.identityDim, mismatchShift(rows.length));
    const images = rows.map((r) => ({ width: data.size, height: data.size, data: data.crops.subarray(r * px, (r + 1) * px) }));
    const readout = { ids, attributes: await readAttributes(images) };
    this.real.set(key, readout);
    return readout;
  }

  /** Raw age (column 0) and yaw (column 2) of rows. */
  private rawYawAge(rows: readonly number[]): AttributeReadout {
    const { data } = this;
    const width = data.rawAttributes.length / (data.crops.length / (data.size * data.size * 3));
    return { yaw: rows.map((r) => data.rawAttributes[r * width + 2]), age: rows.map((r) => data.rawAttributes[r * width]) };
  }
}

// ── which rows: the training subset (proxy mode) and the evaluation rows ─────────────────────

/**
 * The first `subset` training rows (prepared order, after the held-out split: deterministic), or
 * all of them. The proxy mode: a small set the generator can learn to reproduce from its
 * conditions in a short run.
 */
export function trainingSubset(trainRows: readonly number[], subset: number | undefined): number[] {
  if (subset === undefined) return [...trainRows];
  if (subset > trainRows.length)
    throw new InvalidInputError(
      `field 'train-diffusion.subset': ${subset} training images asked for, but only ${trainRows.length} remain after the held-out split`,
      { field: 'train-diffusion.subset' },
    );
  return trainRows.slice(0, subset);
}

export type EvaluationOn = 'held-out' | 'training';

/**
 * `count` held-out rows, or (proxy mode) training rows, in a seeded random order. Random, not
 * prepared order: a folder source lists each person's photos together, so neighbours in prepared
 * order — the "other" identity of the mismatched cosine — would often be the same person.
 */
export function evaluationRows(
  on: EvaluationOn,
  heldOut: readonly number[],
  trainRows: readonly number[],
  count: number,
  seed: number,
): number[] {
  const pool = on === 'training' ? trainRows : heldOut;
  const rows = new Rng(seed)
    .fork('evaluation-rows')
    .shuffle([...pool])
    .slice(0, Math.min(count, pool.length));
  if (rows.length < 2)
    throw new InvalidInputError(
      `field 'train-diffusion.evaluation.on': '${on}' has ${rows.length} row(s) to evaluate; the evaluation needs at least 2 (raise train-diffusion.subset)`,
      { field: 'train-diffusion.evaluation.on' },
    );
  return rows;
}

// ── the per-checkpoint history ───────────────────────────────────────────────────────────────

export const HELD_OUT_HISTORY_FORMAT = 'id3-heldout-history/1';

export interface HeldOutHistoryRow extends ConditionMetrics {
  readonly step: number;
}

/** What makes two checkpoints' evaluations comparable: rows kept on resume only when these match. */
export interface HeldOutHistorySettings {
  readonly on: EvaluationOn;
  readonly subset: number | null;
  readonly rows: readonly number[];
  readonly ddimSteps: number;
  readonly seed: number;
}

/** Rows at steps ≤ `step` (a resumed run keeps those; later ones came from a run cut off after its checkpoint). */
export function historyUpTo<T extends { readonly step: number }>(history: readonly T[], step: number): T[] {
  return history.filter((h) => h.step <= step);
}

/**
 * The history rows to keep when training (re)starts at `step` (0: fresh): those of an earlier
 * run of the same settings up to `step`; none if the file is missing, unreadable or another
 * setting's. Correlations left undefined (NaN) were written as null: they come back as NaN.
 */
export function resumeHeldOutHistory(path: string, settings: HeldOutHistorySettings, step: number): HeldOutHistoryRow[] {
  if (step <= 0 || !existsSync(path)) return [];
  let file: { format?: unknown; settings?: unknown; history?: unknown };
  try {
    file = JSON.parse(readFileSync(path, 'utf8')) as typeof file;
  } catch {
    return [];
  }
  if (file.format !== HELD_OUT_HISTORY_FORMAT || canonicalJson(file.settings) !== canonicalJson(settings) || !Array.isArray(file.history))
    return [];
  const rows = (file.history as Record<string, number | null>[]).map(
    (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v ?? Number.NaN])) as unknown as HeldOutHistoryRow,
  );
  return historyUpTo(rows, step);
}

export function writeHeldOutHistory(path: string, settings: HeldOutHistorySettings, history: readonly HeldOutHistoryRow[]): void {
  writeJsonAtomic(path, { format: HELD_OUT_HISTORY_FORMAT, settings, history });
}

/**
 * Two stacked panels over the checkpoints: the identity gap against the real photos' gap, and
 * the yaw / age correlations (shuffled attributes) against the real photos'.
 */
export function heldOutCurveSvg(history: readonly HeldOutHistoryRow[], on: EvaluationOn = 'held-out'): string {
  const steps = history.map((h) => h.step);
  const xRange = [Math.min(...steps), Math.max(...steps)] as const;
  const series = (label: string, color: string, f: (h: HeldOutHistoryRow) => number) => ({
    label,
    color,
    points: history.filter((h) => Number.isFinite(f(h))).map((h) => ({ x: h.step, y: f(h) })),
  });
  const gaps = [
    series('generator: cos(own y) − cos(other y)', '#d62728', (h) => h.identityGap),
    series('real photos', '#7f7f7f', (h) => h.realIdentityGap),
  ].filter((s) => s.points.length > 0);
  // 0 (no identity at all) in range, and headroom above the lines for the legend.
  const gapValues = [0, ...gaps.flatMap((s) => s.points.map((p) => p.y))];
  const [lo, hi] = [Math.min(...gapValues), Math.max(...gapValues)];
  const span = hi - lo || 0.1;
  const W = 800;
  const H = 480;
  const rowsName = on === 'training' ? 'training rows (proxy)' : 'held-out rows';
  const top = lineChartSvg({
    title: `train-diffusion: identity gap, ${rowsName}`,
    xLabel: 'step',
    yLabel: 'teacher cosine gap',
    series: gaps,
    xRange,
    yRange: [lo - 0.05 * span, hi + 0.25 * span],
    width: W,
    height: H,
  });
  const bottom = lineChartSvg({
    title: `attribute control (shuffled s), ${rowsName}`,
    xLabel: 'step',
    yLabel: 'correlation requested ~ read back',
    series: [
      series('yaw', '#1f77b4', (h) => h.yawCorrelation),
      series('age', '#2ca02c', (h) => h.ageCorrelation),
      series('yaw, real photos', '#9ecae1', (h) => h.realYawCorrelation),
      series('age, real photos', '#a1d99b', (h) => h.realAgeCorrelation),
    ].filter((s) => s.points.length > 0),
    xRange,
    yRange: [-1, 1.5], // the legend sits above 1
    width: W,
    height: H,
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * H}">`,
    top,
    bottom.replace('<svg ', `<svg y="${H}" `),
    '</svg>',
  ].join('\n');
}

/**
 * The evaluation at every checkpoint: `heldout-history.json` (one row per checkpoint step) and
 * `heldout-curve.png` in the stage directory. Rows of an earlier run are kept up to the step
 * training resumes from (and only for the same settings), and the trimmed files are written at
 * once, so they never show a cut-off run's later checkpoints.
 */
export class CheckpointEvaluations {
  readonly historyPath: string;
  readonly curvePath: string;
  private history: HeldOutHistoryRow[];

  private constructor(
    private readonly evaluator: ConditionEvaluator,
    dir: string,
    readonly settings: HeldOutHistorySettings,
    resumedStep: number,
  ) {
    this.historyPath = join(dir, 'heldout-history.json');
    this.curvePath = join(dir, 'heldout-curve.png');
    this.history = resumeHeldOutHistory(this.historyPath, settings, resumedStep);
  }

  static async open(
    evaluator: ConditionEvaluator,
    dir: string,
    settings: HeldOutHistorySettings,
    resumedStep: number,
  ): Promise<CheckpointEvaluations> {
    const c = new CheckpointEvaluations(evaluator, dir, settings, resumedStep);
    await c.write();
    return c;
  }

  get rows(): readonly HeldOutHistoryRow[] {
    return this.history;
  }

  has(step: number): boolean {
    return this.history.some((h) => h.step === step);
  }

  /** Evaluate the net at `step` with the checkpoint settings, record the row, rewrite both files. */
  async evaluate(net: UNet, diffusion: GaussianDiffusion, step: number): Promise<HeldOutHistoryRow> {
    const ev = await this.evaluator.evaluate(net, diffusion, this.settings.rows, this.settings.ddimSteps);
    const row: HeldOutHistoryRow = { step, ...ev.metrics };
    this.history = [...this.history.filter((h) => h.step !== step), row].sort((a, b) => a.step - b.step);
    await this.write();
    return row;
  }

  /** The stage outputs: the history once it has a row, the curve once it has two. */
  outputs(): Record<string, string> {
    return {
      ...(this.history.length > 0 ? { heldoutHistory: this.historyPath } : {}),
      ...(this.history.length > 1 ? { heldoutCurve: this.curvePath } : {}),
    };
  }

  private async write(): Promise<void> {
    writeHeldOutHistory(this.historyPath, this.settings, this.history);
    if (this.history.length > 1) writeFileAtomic(this.curvePath, await svgToPng(heldOutCurveSvg(this.history, this.settings.on)));
    else rmSync(this.curvePath, { force: true });
  }
}
