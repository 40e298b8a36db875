/**
 * The dataset card of a synthetic face set: `report.md`, `card.json` (every number) and PNGs —
 * a sample grid, guidance on/off, intra- vs inter-class teacher similarity, LFW-protocol
 * verification on synthetic pairs, attribute coverage, and the leakage report (each synthetic
 * identity's nearest training face next to the same statistic for real held-out faces).
 * Array in, files out: no tensors, nothing read from disk.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Rng, binEdges, histogram, histogramSvg, svgToPng } from '@id3/core';
import type { HistogramSeries } from '@id3/core';
import { gridPng, pearson } from '@id3/diffusion';
import { evaluateDistances, pairDistances } from '@id3/eval';
import { resizeImage, type RgbImage } from '@id3/faces';
import {
  drawVerificationPairs,
  flagLeakingIdentities,
  flaggedAbove,
  fractionAtLeast,
  gatherRows,
  nearestNeighbours,
  quantile,
  summarise,
  type DistributionSummary,
  type LeakageFlags,
} from './leakage';

export interface SyntheticSet {
  readonly resolution: number;
  /** Accepted images [n, r, r, 3], RGB 0–255. */
  readonly images: Uint8Array;
  /** Dense identity index per image, 0..k-1 (k = identityNames.length). */
  readonly labels: Int32Array;
  readonly identityNames: readonly string[];
  /** Teacher embedding dimension. */
  readonly dim: number;
  /** Teacher embedding per accepted image, unit rows [n, dim]. */
  readonly embeddings: Float32Array;
  /** The requested identity embedding per image, unit rows [n, dim]. */
  readonly y: Float32Array;
  /** Requested attributes per image, degrees / years. */
  readonly requested: { readonly yaw: Float32Array; readonly age: Float32Array };
}

export interface DatasetCardInput {
  readonly set: SyntheticSet;
  /** Attributes read back (head pose, age net) from a subset of the images. */
  readonly readBack?: { readonly indices: readonly number[]; readonly yaw: readonly number[]; readonly age: readonly number[] };
  /** The generator's training faces (prepare outputs): embeddings [t, dim], yaw °, age y, crops [t, c, c, 3]. */
  readonly training: {
    readonly embeddings: Float32Array;
    readonly yaw: Float32Array;
    readonly age: Float32Array;
    readonly crops: Uint8Array;
    readonly cropSize: number;
  };
  /** Real faces the generator never trained on: embeddings [h, dim], optional crops [h, cropSize, cropSize, 3]. */
  readonly realHeldOut: { readonly embeddings: Float32Array; readonly crops?: Uint8Array };
  /** Same-person cosine line (e.g. the teacher's at FAR = 1e-3 on LFW) and where it comes from. */
  readonly leakageThreshold: { readonly cosine: number; readonly source: string };
  /** `flagLeakingIdentities` of this very set and threshold when the stage already ran it (saves the search). */
  readonly leakageFlags?: LeakageFlags;
  /** Identities flagged and removed before the card (`leakage.drop`): reported, not in `set`. */
  readonly leakageDropped?: readonly { readonly name: string; readonly cosine: number }[];
  readonly acceptance: {
    readonly generated: number;
    readonly accepted: number;
    readonly rejectedSimilarity: number;
    readonly rejectedFace: number;
    readonly droppedIdentities: readonly string[];
    readonly warnAboveRejectedFraction: number;
  };
  /** The same seeds sampled with guidance on and off: [identities × perIdentity, size, size, 3] each. */
  readonly guidanceComparison?: {
    readonly identities: number;
    readonly perIdentity: number;
    readonly size: number;
    readonly guided: Uint8Array;
    readonly unguided: Uint8Array;
  };
  /**
   * The same images embedded by a second face model that neither guided nor filtered them: the
   * teacher's own numbers are climbed by guidance and selected by the filter, this one is not.
   */
  readonly check?: { readonly name: string; readonly dim: number; readonly embeddings: Float32Array };
  /** Sample grid size: identities (rows, drawn with the seed) × their first images (default 8 × 8). */
  readonly grid?: { readonly identities: number; readonly images: number };
  /** Verification pairs drawn from the set (default 3,000 + 3,000, as LFW View 2). */
  readonly pairs?: { readonly same: number; readonly different: number };
  readonly seed: number;
  readonly title: string;
}

export interface LeakageEntry {
  readonly identity: string;
  readonly cosine: number;
  /** Synthetic image index and the index of its nearest training face. */
  readonly image: number;
  readonly training: number;
}

export interface AttributeNumbers {
  /** Pearson correlation and mean absolute error, requested vs read back (NaN/null under 3 images). */
  readonly correlation: number;
  readonly meanAbsoluteError: number;
  readonly requested: DistributionSummary;
  readonly readBack: DistributionSummary;
  readonly training: DistributionSummary;
}

export type PairVerification =
  | {
      readonly pairs: number;
      readonly folds: number;
      readonly accuracy: number;
      readonly accuracyStd: number;
      /** Mean of the per-fold thresholds, as squared L2 and as cosine. */
      readonly thresholdSquaredL2: number;
      readonly thresholdCosine: number;
      readonly tarAtFar1e3: number;
      readonly tarStd: number;
      readonly auc: number;
      readonly eer: number;
    }
  | { readonly skipped: string };

/** Cosines of the drawn pairs in one embedding and LFW-protocol verification on them (10 folds). */
function verifyPairs(
  embeddings: Float32Array,
  dim: number,
  pairs: ReturnType<typeof drawVerificationPairs>,
): { intra: number[]; inter: number[]; verification: PairVerification } {
  const dist = pairDistances(gatherRows(embeddings, dim, pairs.a), gatherRows(embeddings, dim, pairs.b), dim);
  const cos = Array.from(dist, (d) => 1 - d / 2);
  const intra = cos.filter((_, i) => pairs.same[i]);
  const inter = cos.filter((_, i) => !pairs.same[i]);
  if (intra.length < FOLDS || inter.length < FOLDS)
    return {
      intra,
      inter,
      verification: {
        skipped: `${intra.length} same-identity and ${inter.length} different-identity pairs: fewer than ${FOLDS} of a kind`,
      },
    };
  const v = evaluateDistances(dist, pairs.same, { foldOf: pairs.fold });
  const t = mean(v.thresholds);
  return {
    intra,
    inter,
    verification: {
      pairs: v.pairs,
      folds: v.folds,
      accuracy: v.accuracy,
      accuracyStd: v.accuracyStd,
      thresholdSquaredL2: t,
      thresholdCosine: 1 - t / 2,
      tarAtFar1e3: v.tar,
      tarStd: v.tarStd,
      auc: v.auc,
      eer: v.eer,
    },
  };
}

export interface DatasetCardNumbers {
  readonly title: string;
  readonly seed: number;
  readonly resolution: number;
  readonly images: number;
  readonly identities: number;
  readonly imagesPerIdentity: { readonly min: number; readonly max: number; readonly mean: number };
  readonly acceptance: {
    readonly generated: number;
    readonly accepted: number;
    readonly rate: number;
    readonly rejectedFraction: number;
    readonly rejectedSimilarity: number;
    readonly rejectedFace: number;
    readonly droppedIdentities: readonly string[];
    readonly warnAboveRejectedFraction: number;
    readonly warning: string | null;
  };
  readonly similarity: {
    readonly samePairs: number;
    readonly differentPairs: number;
    readonly availableSame: number;
    readonly availableDifferent: number;
    /** Mean teacher cosine of same-identity and of different-identity pairs. */
    readonly intraMean: number;
    readonly interMean: number;
    /** Mean cos(f(x), y) to its own requested embedding, and to another identity's. */
    readonly identityConsistency: number;
    readonly mismatchedConsistency: number;
  };
  readonly verification: PairVerification;
  /** The same pairs read by the independent embedder (`check`), or null without one. */
  readonly check: {
    readonly embedder: string;
    readonly intraMean: number;
    readonly interMean: number;
    readonly verification: PairVerification;
  } | null;
  readonly attributes: { readonly readBackImages: number; readonly yaw: AttributeNumbers; readonly age: AttributeNumbers };
  readonly leakage: {
    readonly threshold: { readonly cosine: number; readonly source: string };
    /** Cosine of each synthetic image to its nearest training face. */
    readonly perImage: DistributionSummary;
    /** Per identity, the maximum of that over its images. */
    readonly perIdentity: DistributionSummary;
    /** Cosine of each real held-out face to its nearest training face: what "not a copy" looks like. */
    readonly realHeldOut: DistributionSummary;
    readonly fractionAtOrAboveThreshold: { readonly syntheticImages: number; readonly identities: number; readonly realHeldOut: number };
    readonly flaggedCount: number;
    readonly flagged: readonly LeakageEntry[];
    /** The identities closest to a training face (up to 16), as in leakage-closest.png. */
    readonly closest: readonly LeakageEntry[];
    readonly droppedBeforeCard: readonly { readonly name: string; readonly cosine: number }[];
    /**
     * Thresholds read off the real held-out faces themselves (their nearest-training p95 / p99):
     * a search over thousands of training faces finds a look-alike for most real people above a
     * pairwise same-person threshold, so these say how many identities are closer than real strangers.
     */
    readonly realReference: readonly {
      readonly quantile: number;
      readonly cosine: number;
      readonly identities: number;
      readonly syntheticImages: number;
    }[];
  };
  readonly warnings: readonly string[];
  readonly files: readonly string[];
}

const CLOSEST_PAIRS = 16;
const PAIRS_PER_ROW = 4;
const FOLDS = 10;
/** Warn when the leakage threshold flags more than this fraction of real never-seen faces. */
const REAL_FLAGGED_WARNING = 0.05;
const REAL_QUANTILES = [0.95, 0.99];
const COLORS = { synthetic: '#d62728', identity: '#9467bd', real: '#1f77b4', training: '#7f7f7f', readBack: '#2ca02c' };

function checkInput(input: DatasetCardInput): void {
  const { set, training, realHeldOut } = input;
  const n = set.labels.length;
  const r = set.resolution;
  const fail = (what: string): never => {
    throw new RangeError(`dataset card: ${what}`);
  };
  if (set.images.length !== n * r * r * 3) fail(`${set.images.length} image bytes for ${n} images of ${r}×${r}×3`);
  if (set.embeddings.length !== n * set.dim) fail(`${set.embeddings.length} embedding values for ${n} images × ${set.dim}`);
  if (set.y.length !== n * set.dim) fail(`${set.y.length} requested-embedding values for ${n} images × ${set.dim}`);
  if (set.requested.yaw.length !== n || set.requested.age.length !== n) fail(`requested attributes are not one per image (${n})`);
  for (let i = 0; i < n; i++) {
    if (set.labels[i] < 0 || set.labels[i] >= set.identityNames.length) fail(`label ${set.labels[i]} of image ${i} has no identity name`);
  }
  const t = training.embeddings.length / set.dim;
  if (!Number.isInteger(t)) fail(`training embeddings do not form rows of ${set.dim}`);
  if (training.yaw.length !== t || training.age.length !== t) fail(`training attributes are not one per training face (${t})`);
  if (training.crops.length !== t * training.cropSize ** 2 * 3)
    fail(`${training.crops.length} crop bytes for ${t} training faces of ${training.cropSize}²×3`);
  if (realHeldOut.embeddings.length % set.dim !== 0) fail(`real held-out embeddings do not form rows of ${set.dim}`);
  const h = realHeldOut.embeddings.length / set.dim;
  if (realHeldOut.crops && realHeldOut.crops.length !== h * training.cropSize ** 2 * 3)
    fail(`real held-out crops are not [${h}, ${training.cropSize}, ${training.cropSize}, 3]`);
  const rb = input.readBack;
  if (rb && (rb.yaw.length !== rb.indices.length || rb.age.length !== rb.indices.length)) fail('read-back yaw/age are not one per index');
  if (rb?.indices.some((i) => !(Number.isInteger(i) && i >= 0 && i < n))) fail('a read-back index is outside the set');
  const g = input.guidanceComparison;
  if (g && (g.guided.length !== g.identities * g.perIdentity * g.size ** 2 * 3 || g.unguided.length !== g.guided.length)) {
    fail(`guidance comparison is not [${g.identities} × ${g.perIdentity}, ${g.size}, ${g.size}, 3] twice`);
  }
}

/** One image of a flat [n, s, s, 3] array as a view. */
function tile(data: Uint8Array, size: number, i: number): RgbImage {
  const px = size * size * 3;
  return { width: size, height: size, data: data.subarray(i * px, (i + 1) * px) };
}

async function toSize(img: RgbImage, size: number): Promise<RgbImage> {
  return img.width === size ? img : resizeImage(img, size, size);
}

/** Upscale small tiles so a grid is readable (≥ ~96 px per tile). */
const gridScale = (size: number): number => Math.max(1, Math.ceil(96 / size));

function dot(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += a[i * dim + k] * b[j * dim + k];
  return s;
}

function mean(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return v.length ? s / v.length : Number.NaN;
}

/** Histogram range [lo, 1] with lo a multiple of 0.05 below every value (cosines). */
function cosineRange(...groups: ArrayLike<number>[]): [number, number] {
  let lo = 1;
  for (const g of groups) for (let i = 0; i < g.length; i++) if (g[i] < lo) lo = g[i];
  return [Math.max(-1, Math.floor(lo * 20 - 1e-9) / 20), 1];
}

function densityPlot(
  title: string,
  xLabel: string,
  [lo, hi]: [number, number],
  bins: number,
  series: { label: string; color: string; values: ArrayLike<number> }[],
  markers: { x: number; label: string; color: string }[] = [],
): string {
  const s: HistogramSeries[] = series
    .map((x) => ({ ...x, values: Array.from(x.values).filter((v) => !Number.isNaN(v)) }))
    .filter((x) => x.values.length > 0)
    .map((x) => ({ label: `${x.label} (${x.values.length})`, color: x.color, counts: histogram(x.values, lo, hi, bins) }));
  return histogramSvg({ title, xLabel, edges: binEdges(lo, hi, bins), series: s, density: true, markers });
}

function attributeNumbers(
  requested: Float32Array,
  readBack: { readonly indices: readonly number[]; readonly values: readonly number[] },
  training: Float32Array,
): AttributeNumbers {
  const req = readBack.indices.map((i) => requested[i]);
  const mae = req.length ? req.reduce((s, v, j) => s + Math.abs(v - readBack.values[j]), 0) / req.length : Number.NaN;
  return {
    correlation: pearson(req, [...readBack.values]),
    meanAbsoluteError: mae,
    requested: summarise(requested),
    readBack: summarise(readBack.values),
    training: summarise(training),
  };
}

const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : '—');
const f4 = (x: number): string => (Number.isFinite(x) ? x.toFixed(4) : '—');
const pct = (x: number, digits = 2): string => (Number.isFinite(x) ? `${(100 * x).toFixed(digits)}%` : '—');

/** Write the card into `dir` and return its numbers (also in `card.json`). */
export async function writeDatasetCard(dir: string, input: DatasetCardInput): Promise<DatasetCardNumbers> {
  checkInput(input);
  const { set, training, realHeldOut, acceptance } = input;
  const n = set.labels.length;
  const k = set.identityNames.length;
  const dim = set.dim;
  const r = set.resolution;
  const threshold = input.leakageThreshold.cosine;
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  const write = async (name: string, data: string | Buffer): Promise<void> => {
    await writeFile(join(dir, name), data);
    files.push(name);
  };
  const warnings: string[] = [];

  // Acceptance: a filter that throws away much of what was generated must be visible.
  const rejectedFraction = acceptance.generated > 0 ? (acceptance.generated - acceptance.accepted) / acceptance.generated : 0;
  const acceptanceWarning =
    rejectedFraction > acceptance.warnAboveRejectedFraction
      ? `the filters rejected ${pct(rejectedFraction, 1)} of the ${acceptance.generated} generated images (more than the stated ${pct(acceptance.warnAboveRejectedFraction, 1)}): ${acceptance.rejectedSimilarity} for identity similarity, ${acceptance.rejectedFace} for no face`
      : null;
  if (acceptanceWarning) warnings.push(acceptanceWarning);
  if (acceptance.droppedIdentities.length)
    warnings.push(`${acceptance.droppedIdentities.length} identities were dropped for too few accepted images`);

  const perIdentity = new Int32Array(k);
  for (let i = 0; i < n; i++) perIdentity[set.labels[i]]++;

  // Intra/inter similarity and verification on pairs drawn from the set (LFW protocol).
  const want = input.pairs ?? { same: 3000, different: 3000 };
  const pairs = drawVerificationPairs(set.labels, want.same, want.different, input.seed, FOLDS);
  const { intra, inter, verification } = verifyPairs(set.embeddings, dim, pairs);
  if ('skipped' in verification) warnings.push(`verification skipped: ${verification.skipped}`);
  let check: DatasetCardNumbers['check'] = null;
  if (input.check) {
    const byCheck = verifyPairs(input.check.embeddings, input.check.dim, pairs);
    check = {
      embedder: input.check.name,
      intraMean: mean(byCheck.intra),
      interMean: mean(byCheck.inter),
      verification: byCheck.verification,
    };
  }
  // ⟨f(x), y⟩ against its own request and against a random other identity's (the chance level).
  const rng = new Rng(input.seed).fork('card');
  const matched: number[] = [];
  const mismatched: number[] = [];
  for (let i = 0; i < n; i++) {
    matched.push(dot(set.embeddings, i, set.y, i, dim));
    for (let tries = 0; k > 1 && tries < 32; tries++) {
      const j = rng.int(n);
      if (set.labels[j] !== set.labels[i]) {
        mismatched.push(dot(set.embeddings, i, set.y, j, dim));
        break;
      }
    }
  }

  // Attributes: requested vs read back vs the training data.
  const rb = input.readBack ?? { indices: [], yaw: [], age: [] };
  const yawNumbers = attributeNumbers(set.requested.yaw, { indices: rb.indices, values: rb.yaw }, training.yaw);
  const ageNumbers = attributeNumbers(set.requested.age, { indices: rb.indices, values: rb.age }, training.age);
  if (!input.readBack) warnings.push('no attributes were read back: requested-vs-produced yaw and age are not measured');

  // Leakage: each synthetic image's nearest training face, reduced per identity.
  const given = input.leakageFlags;
  if (given && (given.threshold !== threshold || given.perImage.cosine.length !== n || given.maxCosine.length !== k)) {
    throw new RangeError('dataset card: leakageFlags were computed for another set or threshold');
  }
  const leak =
    given ?? flagLeakingIdentities({ embeddings: set.embeddings, labels: set.labels, dim, identities: k }, training.embeddings, threshold);
  const realNn = nearestNeighbours(realHeldOut.embeddings, training.embeddings, dim);
  const entry = (id: number): LeakageEntry => ({
    identity: set.identityNames[id],
    cosine: leak.maxCosine[id],
    image: leak.image[id],
    training: leak.training[id],
  });
  const flagged = leak.flagged.map(entry);
  const closestIds = [...leak.flagged, ...rankedExcept(leak.maxCosine, leak.flagged)].slice(0, CLOSEST_PAIRS);
  const closest = closestIds.map(entry);
  const perIdentitySummary = summarise(leak.maxCosine);
  const realSummary = summarise(realNn.cosine);
  if (flagged.length) {
    warnings.push(
      `${flagged.length} of ${k} identities have an image at or above the same-person threshold ${f4(threshold)} to a training face (${input.leakageThreshold.source})`,
    );
  }
  if (realNn.cosine.length === 0) warnings.push('no real held-out faces: leakage has no real-data reference');
  const realFlagged = fractionAtLeast(realNn.cosine, threshold);
  if (realFlagged > REAL_FLAGGED_WARNING) {
    warnings.push(
      `the leakage threshold also flags ${pct(realFlagged, 1)} of real faces the generator never trained on: at this search size it does not separate copies from look-alikes; read the real-reference rows`,
    );
  }
  const perImageSummary = summarise(leak.perImage.cosine);
  if (perImageSummary.median > realSummary.p95) {
    warnings.push(
      `the median synthetic image (cos ${f4(perImageSummary.median)}) is closer to a training face than 95% of real held-out faces (p95 ${f4(realSummary.p95)})`,
    );
  }
  const realReference = REAL_QUANTILES.filter(() => realNn.cosine.length > 0).map((q) => {
    const cosine = quantile(realNn.cosine, q);
    return {
      quantile: q,
      cosine,
      identities: flaggedAbove(leak.maxCosine, cosine).length,
      syntheticImages: fractionAtLeast(leak.perImage.cosine, cosine),
    };
  });
  const dropped = input.leakageDropped ?? [];

  const numbers: DatasetCardNumbers = {
    title: input.title,
    seed: input.seed,
    resolution: r,
    images: n,
    identities: k,
    imagesPerIdentity: {
      min: k ? perIdentity.reduce((a, b) => Math.min(a, b)) : 0,
      max: k ? perIdentity.reduce((a, b) => Math.max(a, b)) : 0,
      mean: k ? n / k : 0,
    },
    acceptance: {
      generated: acceptance.generated,
      accepted: acceptance.accepted,
      rate: acceptance.generated > 0 ? acceptance.accepted / acceptance.generated : 0,
      rejectedFraction,
      rejectedSimilarity: acceptance.rejectedSimilarity,
      rejectedFace: acceptance.rejectedFace,
      droppedIdentities: acceptance.droppedIdentities,
      warnAboveRejectedFraction: acceptance.warnAboveRejectedFraction,
      warning: acceptanceWarning,
    },
    similarity: {
      samePairs: intra.length,
      differentPairs: inter.length,
      availableSame: pairs.available.same,
      availableDifferent: pairs.available.different,
      intraMean: mean(intra),
      interMean: mean(inter),
      identityConsistency: mean(matched),
      mismatchedConsistency: mean(mismatched),
    },
    verification,
    check,
    attributes: { readBackImages: rb.indices.length, yaw: yawNumbers, age: ageNumbers },
    leakage: {
      threshold: input.leakageThreshold,
      perImage: perImageSummary,
      perIdentity: perIdentitySummary,
      realHeldOut: realSummary,
      fractionAtOrAboveThreshold: {
        syntheticImages: fractionAtLeast(leak.perImage.cosine, threshold),
        identities: fractionAtLeast(leak.maxCosine, threshold),
        realHeldOut: fractionAtLeast(realNn.cosine, threshold),
      },
      flaggedCount: flagged.length,
      flagged,
      closest,
      droppedBeforeCard: dropped,
      realReference,
    },
    warnings,
    files,
  };

  // Pictures.
  const gridRng = new Rng(input.seed).fork('card-grid');
  const byId: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < n; i++) byId[set.labels[i]].push(i);
  const shown = pickSorted(
    byId.flatMap((imgs, id) => (imgs.length ? [id] : [])),
    input.grid?.identities ?? 8,
    gridRng,
  );
  if (shown.length) {
    await write(
      'grid.png',
      await gridPng(
        shown.map((id) => byId[id].slice(0, input.grid?.images ?? 8).map((i) => tile(set.images, r, i))),
        gridScale(r),
      ),
    );
  }
  const g = input.guidanceComparison;
  if (g && g.identities > 0 && g.perIdentity > 0) {
    const rows: RgbImage[][] = [];
    for (let id = 0; id < g.identities; id++) {
      const range = Array.from({ length: g.perIdentity }, (_, j) => id * g.perIdentity + j);
      rows.push(range.map((i) => tile(g.guided, g.size, i)));
      rows.push(range.map((i) => tile(g.unguided, g.size, i)));
    }
    await write('guidance-on-off.png', await gridPng(rows, gridScale(g.size)));
  }
  // Marker values go in the title: the chart's marker labels sit at the right edge, near cos = 1.
  const simRange = cosineRange(intra, inter, [threshold]);
  const simMarkers = [{ x: threshold, label: '', color: '#000000' }];
  let simTitle = `Teacher cosine of pairs (black: leakage ${f3(threshold)}`;
  if ('accuracy' in verification) {
    simMarkers.push({ x: verification.thresholdCosine, label: '', color: '#ff7f0e' });
    simTitle += `, orange: verification ${f3(verification.thresholdCosine)}`;
  }
  await write(
    'similarity.png',
    await svgToPng(
      densityPlot(
        `${simTitle})`,
        'cos(f(a), f(b)) over pairs drawn from the set',
        simRange,
        50,
        [
          { label: 'same identity', color: COLORS.synthetic, values: intra },
          { label: 'different identities', color: COLORS.real, values: inter },
        ],
        simMarkers,
      ),
    ),
  );
  const rbYaw = rb.yaw;
  const rbAge = rb.age;
  await write(
    'attributes-yaw.png',
    await svgToPng(
      densityPlot('Yaw: requested, read back, training data', 'yaw (degrees)', [-90, 90], 36, [
        { label: 'requested', color: COLORS.synthetic, values: set.requested.yaw },
        { label: 'read back', color: COLORS.readBack, values: rbYaw },
        { label: 'training data', color: COLORS.training, values: training.yaw },
      ]),
    ),
  );
  await write(
    'attributes-age.png',
    await svgToPng(
      densityPlot('Age: requested, read back, training data', 'age (years)', [0, 100], 25, [
        { label: 'requested', color: COLORS.synthetic, values: set.requested.age },
        { label: 'read back', color: COLORS.readBack, values: rbAge },
        { label: 'training data', color: COLORS.training, values: training.age },
      ]),
    ),
  );
  const leakRange = cosineRange(leak.perImage.cosine, realNn.cosine, [threshold]);
  await write(
    'leakage.png',
    await svgToPng(
      densityPlot(
        `Cosine to the nearest training face (dashed: threshold ${f3(threshold)})`,
        'max over training faces of cos(f(x), f(t))',
        leakRange,
        50,
        [
          { label: 'synthetic images', color: COLORS.synthetic, values: leak.perImage.cosine },
          { label: 'identities (max)', color: COLORS.identity, values: leak.maxCosine },
          { label: 'real held-out faces', color: COLORS.real, values: realNn.cosine },
        ],
        [{ x: threshold, label: '', color: '#000000' }],
      ),
    ),
  );
  // Closest pairs side by side (synthetic | training), 4 pairs per row; a last row of the closest
  // real held-out/training pairs shows what a real non-match at that similarity looks like.
  const side = Math.max(r, training.cropSize);
  const pairTiles: RgbImage[][] = [];
  let closestRealShown = 0;
  const pairsIn = async (items: [RgbImage, RgbImage][]): Promise<void> => {
    for (let s = 0; s < items.length; s += PAIRS_PER_ROW) {
      const row: RgbImage[] = [];
      for (const [a, b] of items.slice(s, s + PAIRS_PER_ROW)) row.push(await toSize(a, side), await toSize(b, side));
      pairTiles.push(row);
    }
  };
  await pairsIn(
    closest.filter((c) => c.training >= 0).map((c) => [tile(set.images, r, c.image), tile(training.crops, training.cropSize, c.training)]),
  );
  if (realHeldOut.crops && realNn.cosine.length && pairTiles.length) {
    const order = Array.from(realNn.cosine.keys())
      .filter((i) => realNn.index[i] >= 0)
      .sort((a, b) => realNn.cosine[b] - realNn.cosine[a])
      .slice(0, PAIRS_PER_ROW);
    closestRealShown = order.length;
    const crops = realHeldOut.crops;
    await pairsIn(order.map((i) => [tile(crops, training.cropSize, i), tile(training.crops, training.cropSize, realNn.index[i])]));
  }
  if (pairTiles.length) await write('leakage-closest.png', await gridPng(pairTiles, gridScale(side)));
  await write(
    'report.md',
    renderReport(
      numbers,
      input,
      shown.map((id) => set.identityNames[id]),
      closestRealShown,
    ),
  );
  files.push('card.json');
  await writeFile(join(dir, 'card.json'), `${JSON.stringify(numbers, null, 2)}\n`);
  return numbers;
}

/** Identities not yet listed, highest max cosine first (for the closest-pairs grid). */
function rankedExcept(maxCosine: Float64Array, already: readonly number[]): number[] {
  const skip = new Set(already);
  return Array.from(maxCosine.keys())
    .filter((i) => !skip.has(i) && !Number.isNaN(maxCosine[i]))
    .sort((a, b) => maxCosine[b] - maxCosine[a] || a - b);
}

/** Up to `count` items chosen uniformly with the rng, in their original order. */
function pickSorted(items: number[], count: number, rng: Rng): number[] {
  const a = [...items];
  for (let i = 0; i < Math.min(count, a.length); i++) {
    const j = i + rng.int(a.length - i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, count).sort((x, y) => x - y);
}

function renderReport(c: DatasetCardNumbers, input: DatasetCardInput, gridNames: readonly string[], closestRealShown: number): string {
  const L: string[] = [];
  const has = (f: string): boolean => c.files.includes(f);
  const summaryRow = (name: string, s: DistributionSummary): string =>
    `| ${name} | ${s.count} | ${f4(s.mean)} | ${f4(s.median)} | ${f4(s.p95)} | ${f4(s.max)} |`;
  L.push(`# ${input.title}`, '');
  L.push(
    `${c.images} images of ${c.identities} synthetic identities at ${c.resolution}×${c.resolution} ` +
      `(${c.imagesPerIdentity.min}–${c.imagesPerIdentity.max} per identity, mean ${c.imagesPerIdentity.mean.toFixed(1)}), seed ${c.seed}.`,
    '',
  );
  if (c.warnings.length) {
    L.push('## Warnings', '');
    for (const w of c.warnings) L.push(`- **${w}**`);
    L.push('');
  }
  const a = c.acceptance;
  L.push('## Acceptance', '');
  L.push(
    '| generated | accepted | acceptance rate | rejected: identity similarity | rejected: no face | identities dropped |',
    '|---|---|---|---|---|---|',
  );
  L.push(
    `| ${a.generated} | ${a.accepted} | ${pct(a.rate, 1)} | ${a.rejectedSimilarity} | ${a.rejectedFace} | ${a.droppedIdentities.length} |`,
    '',
  );
  L.push(`A rejected fraction above ${pct(a.warnAboveRejectedFraction, 1)} is reported as a warning.`);
  if (a.droppedIdentities.length) L.push(`Dropped identities: ${a.droppedIdentities.join(', ')}.`);
  L.push('');
  if (has('grid.png')) {
    L.push(
      '## Samples',
      '',
      `Rows = identities (${gridNames.join(', ')}), columns = their first images.`,
      '',
      '![sample grid](grid.png)',
      '',
    );
  }
  if (has('guidance-on-off.png')) {
    const g = input.guidanceComparison!;
    L.push(
      '## Identity guidance on and off',
      '',
      `${g.identities} identities × ${g.perIdentity} images on the same seeds: for each identity a row with guidance on, then the row with guidance off (w = 0).`,
      '',
      '![guidance on and off](guidance-on-off.png)',
      '',
    );
  }
  const s = c.similarity;
  L.push('## How recognisable the synthetic people are', '');
  L.push(
    `Teacher cosine over ${s.samePairs} same-identity pairs (of ${s.availableSame}) and ${s.differentPairs} different-identity pairs (of ${s.availableDifferent}) drawn from the set with seed ${c.seed}.`,
    '',
  );
  L.push(
    "| intra-class mean cos | inter-class mean cos | gap | cos(f(x), own y) | cos(f(x), other identity's y) |",
    '|---|---|---|---|---|',
  );
  L.push(
    `| ${f4(s.intraMean)} | ${f4(s.interMean)} | ${f4(s.intraMean - s.interMean)} | ${f4(s.identityConsistency)} | ${f4(s.mismatchedConsistency)} |`,
    '',
  );
  const v = c.verification;
  if ('accuracy' in v) {
    L.push(
      `Verification with the LFW protocol on these pairs (${v.folds} folds, threshold chosen on the other nine): ` +
        `**${pct(v.accuracy)} ± ${pct(v.accuracyStd)}**, TAR @ FAR=1e-3 ${pct(v.tarAtFar1e3)} ± ${pct(v.tarStd)}, AUC ${f4(v.auc)}, EER ${pct(v.eer)}; ` +
        `mean threshold squared L2 ${f3(v.thresholdSquaredL2)} (cos ${f4(v.thresholdCosine)}).`,
      '',
    );
  } else {
    L.push(`Verification skipped: ${v.skipped}.`, '');
  }
  if (c.check) {
    const cv = c.check.verification;
    L.push(
      `**Read by an independent embedder** (${c.check.embedder}; it neither guided nor filtered these images, so ` +
        `guidance and the filter cannot have climbed its numbers): intra-class mean cos ${f4(c.check.intraMean)}, ` +
        `inter-class ${f4(c.check.interMean)}, gap ${f4(c.check.intraMean - c.check.interMean)}; ` +
        ('accuracy' in cv
          ? `verification on the same pairs **${pct(cv.accuracy)} ± ${pct(cv.accuracyStd)}**, TAR @ FAR=1e-3 ${pct(cv.tarAtFar1e3)}, AUC ${f4(cv.auc)}.`
          : `verification skipped: ${cv.skipped}.`),
      '',
    );
  }
  L.push('![intra- vs inter-class similarity](similarity.png)', '');
  const at = c.attributes;
  L.push('## Attribute coverage', '');
  if (at.readBackImages) {
    L.push(`Yaw and age read back from ${at.readBackImages} of the images.`, '');
  }
  L.push('| attribute | corr(requested, read back) | MAE | requested mean | read-back mean | training mean |', '|---|---|---|---|---|---|');
  for (const [name, x] of [
    ['yaw (°)', at.yaw],
    ['age (years)', at.age],
  ] as const) {
    L.push(
      `| ${name} | ${f3(x.correlation)} | ${f3(x.meanAbsoluteError)} | ${f3(x.requested.mean)} | ${f3(x.readBack.mean)} | ${f3(x.training.mean)} |`,
    );
  }
  L.push('', '![yaw](attributes-yaw.png)', '', '![age](attributes-age.png)', '');
  const lk = c.leakage;
  L.push('## Leakage: does the set re-create training faces?', '');
  L.push(
    `For every synthetic image, the teacher cosine to its nearest training face; per identity, the maximum over its images. ` +
      `The reference is the same statistic for real faces the generator never trained on: a synthetic set that does not copy ` +
      `its training people should sit at or below it (compare the per-image rows; an identity's maximum over its images is higher by construction). ` +
      `Threshold: cos ≥ **${f4(lk.threshold.cosine)}** (${lk.threshold.source}).`,
    '',
  );
  L.push('| nearest-training cosine | count | mean | median | p95 | max |', '|---|---|---|---|---|---|');
  L.push(
    summaryRow('synthetic images', lk.perImage),
    summaryRow('synthetic identities (max over images)', lk.perIdentity),
    summaryRow('real held-out faces', lk.realHeldOut),
    '',
  );
  const fr = lk.fractionAtOrAboveThreshold;
  L.push(
    `At or above the threshold: ${pct(fr.syntheticImages)} of synthetic images, ${pct(fr.identities)} of identities, ` +
      `${pct(fr.realHeldOut)} of real held-out faces (how often the threshold flags a real non-training face).`,
    '',
  );
  L.push(`**${lk.flaggedCount} of ${c.identities} identities flagged.**`, '');
  if (lk.flagged.length) {
    L.push('| identity | cosine | image | nearest training face |', '|---|---|---|---|');
    for (const e of lk.flagged.slice(0, 50)) L.push(`| ${e.identity} | ${f4(e.cosine)} | ${e.image} | ${e.training} |`);
    if (lk.flagged.length > 50) L.push('', `… and ${lk.flagged.length - 50} more in card.json.`);
    L.push('');
  }
  if (lk.realReference.length) {
    L.push(
      'Against thresholds read off the real held-out faces (an identity at or above p95 has an image closer to a training face than 95% of real never-seen faces are):',
      '',
      '| threshold | cosine | identities at or above | synthetic images at or above |',
      '|---|---|---|---|',
    );
    for (const q of lk.realReference) {
      L.push(`| real held-out p${Math.round(q.quantile * 100)} | ${f4(q.cosine)} | ${q.identities} | ${pct(q.syntheticImages)} |`);
    }
    L.push('');
  }
  if (lk.droppedBeforeCard.length) {
    L.push(
      `${lk.droppedBeforeCard.length} identities were flagged and dropped before this card (\`leakage.drop\`): ` +
        `${lk.droppedBeforeCard.map((d) => `${d.name} (${f4(d.cosine)})`).join(', ')}.`,
      '',
    );
  }
  L.push('![nearest-training cosine](leakage.png)', '');
  if (has('leakage-closest.png')) {
    L.push(
      `The ${lk.closest.length} identities closest to a training face, each as a pair (synthetic image | nearest training face), four pairs per row, closest first` +
        (closestRealShown
          ? `; the last row: the ${closestRealShown} real held-out faces closest to a training face, for comparison.`
          : '.'),
      '',
      '![closest pairs](leakage-closest.png)',
      '',
    );
  }
  L.push('All numbers: `card.json`.', '');
  return L.join('\n');
}
