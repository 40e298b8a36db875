import calibrations from './teacher-calibration.json';

/**
 * A teacher's same-person cosine threshold measured on real pairs (`npm run bench:lfw --
 * --write-calibration` on LFW View 2): the default line above which a synthetic face counts as
 * the same person as a training face (the sampler's leakage report).
 */
export interface TeacherCalibration {
  readonly benchmark: string;
  /** Bench model key: teacher, detector chain, crop, padding, flip. */
  readonly model: string;
  readonly farTarget: number;
  /** Same person when cos ≥ cosine (equivalently squared L2 ≤ squaredL2 between unit vectors). */
  readonly cosine: number;
  readonly squaredL2: number;
  /** Impostor pairs at or above the threshold, their rate, and the genuine pairs accepted. */
  readonly falseAccepts: number;
  readonly far: number;
  readonly tar: number;
  readonly samePairs: number;
  readonly differentPairs: number;
  /** The impostor cosines the threshold sits between (how coarse it is): the lowest accepted, the highest rejected. */
  readonly bracket: { readonly accepted: number; readonly rejected: number };
  /** The protocol's 10-fold accuracy in the same run. */
  readonly accuracy: number;
  readonly accuracyStd: number;
  readonly date: string;
  readonly command: string;
  readonly note: string;
}

const table = calibrations as Readonly<Record<string, TeacherCalibration>>;

/** The committed calibration of face embedder `name`, or undefined when it was never measured. */
export function teacherCalibration(name: string): TeacherCalibration | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/**
 * The cosine threshold accepting at most ⌊far·N⌋ of N impostor (different-person) cosines: halfway
 * between the k-th and (k+1)-th highest (k = ⌊far·N⌋), so exactly k impostors are above it when
 * there are no ties. With 3,000 impostors and far = 1e-3, k = 3: the 3rd and 4th highest pairs set it.
 */
export function thresholdAtFar(
  impostors: readonly number[],
  genuine: readonly number[],
  far: number,
): {
  cosine: number;
  falseAccepts: number;
  far: number;
  tar: number;
  positives: number;
  negatives: number;
  bracket: { accepted: number; rejected: number };
} {
  if (impostors.length === 0) throw new RangeError('thresholdAtFar: no impostor pairs');
  if (!(far >= 0 && far < 1)) throw new RangeError(`thresholdAtFar: far must be in [0, 1), got ${far}`);
  const sorted = [...impostors].sort((x, y) => y - x);
  const k = Math.floor(far * sorted.length + 1e-9);
  // k = 0: halfway between the highest impostor and a perfect match.
  const accepted = k === 0 ? 1 : sorted[k - 1];
  const rejected = sorted[k];
  const cosine = (accepted + rejected) / 2;
  const falseAccepts = sorted.filter((c) => c >= cosine).length;
  const tp = genuine.filter((c) => c >= cosine).length;
  return {
    cosine,
    falseAccepts,
    far: falseAccepts / sorted.length,
    tar: genuine.length ? tp / genuine.length : 0,
    positives: genuine.length,
    negatives: sorted.length,
    bracket: { accepted, rejected },
  };
}
