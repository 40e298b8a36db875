/**
 * McNemar's paired test on per-pair correctness: two models scored on the same verification
 * pairs differ only where one is right and the other wrong (the discordant pairs). Under the null
 * hypothesis each discordant pair goes either way with probability 1/2. Pure functions, no deps.
 */

export interface McNemarResult {
  /** Pairs model A got right and model B wrong. */
  readonly b: number;
  /** Pairs model A got wrong and model B right. */
  readonly c: number;
  /** Discordant pairs, b + c. */
  readonly n: number;
  /** Exact two-sided binomial p-value: min(1, 2·P[X ≤ min(b, c)]), X ~ Bin(n, 1/2). */
  readonly pExact: number;
  /**
   * Chi-square statistic with continuity correction, (|b − c| − 1)² / (b + c), unclamped as in
   * statsmodels' mcnemar(exact=False) (so b = c > 0 gives 1/n, not 0); 0 when n = 0.
   */
  readonly chi2: number;
  /** Its p-value on 1 degree of freedom, erfc(sqrt(chi2 / 2)); 1 when n = 0. */
  readonly pChi2: number;
}

/**
 * Complementary error function, Chebyshev fit (Numerical Recipes' erfcc): fractional error below
 * 1.2e-7 everywhere, so small p-values keep their relative precision.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** Upper tail of chi-square with 1 degree of freedom: P[χ²₁ ≥ x] = erfc(sqrt(x / 2)). */
export function chiSquare1Sf(x: number): number {
  return x <= 0 ? 1 : erfc(Math.sqrt(x / 2));
}

/** log Γ(a) for a > 0 (Lanczos, g = 7, 9 terms: relative error ~1e-15 over the range used here). */
function logGamma(a: number): number {
  const g = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (a < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * a)) - logGamma(1 - a);
  const z = a - 1;
  let x = g[0];
  for (let i = 1; i < 9; i++) x += g[i] / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(x);
}

/**
 * Regularized upper incomplete gamma Q(a, x) (Numerical Recipes' gammq): the series for P below
 * x < a + 1, the continued fraction (modified Lentz) above, each to 1e-15 relative.
 */
function upperRegularizedGamma(a: number, x: number): number {
  if (x <= 0) return 1;
  const front = Math.exp(-x + a * Math.log(x) - logGamma(a));
  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1000 && Math.abs(term) > Math.abs(sum) * 1e-15; n++) {
      term *= x / (a + n);
      sum += term;
    }
    return Math.max(0, 1 - sum * front);
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return front * h;
}

/** Upper tail of chi-square with `df` degrees of freedom: P[χ²_df ≥ x] = Q(df / 2, x / 2). */
export function chiSquareSf(x: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`chiSquareSf: need df > 0, got ${df}`);
  return x <= 0 ? 1 : upperRegularizedGamma(df / 2, x / 2);
}

/**
 * Cochran's Q: k ≥ 2 models scored on the same pairs, is each pair's chance of being right the
 * same for all of them? Q = (k − 1)·(k·Σ_j C_j² − N²) / (k·N − Σ_i R_i²), C_j the pairs model j got
 * right, R_i the models that got pair i right, N = Σ R_i; under the null χ²_{k−1}. For k = 2 it is
 * McNemar's uncorrected (c − b)² / (b + c). Pairs every model agrees on add nothing; with none left
 * the test carries no information: null.
 */
export function cochranQ(correct: readonly (readonly boolean[])[]): { readonly q: number; readonly df: number; readonly p: number } | null {
  const k = correct.length;
  if (k < 2) throw new RangeError(`cochranQ: need at least 2 models, got ${k}`);
  const n = correct[0].length;
  if (correct.some((c) => c.length !== n)) throw new RangeError(`cochranQ: every model needs the same ${n} pairs`);
  const columns = correct.map((c) => c.reduce((s, x) => s + (x ? 1 : 0), 0));
  let total = 0;
  let rowSquares = 0;
  for (let i = 0; i < n; i++) {
    let r = 0;
    for (const c of correct) r += c[i] ? 1 : 0;
    total += r;
    rowSquares += r * r;
  }
  const denominator = k * total - rowSquares; // Σ R_i (k − R_i): 0 exactly when no pair is discordant
  if (denominator === 0) return null;
  const q = ((k - 1) * (k * columns.reduce((s, x) => s + x * x, 0) - total * total)) / denominator;
  return { q, df: k - 1, p: chiSquareSf(q, k - 1) };
}

/**
 * How wide the net change between a model's own training seeds is, against McNemar's null. McNemar
 * treats each model's per-pair answers as fixed, so only which pairs were drawn is noise; a model
 * retrained with another seed on the same data is the null "no difference" made real, and its
 * Cochran's Q over its seeds (for two seeds (c − b)² / (b + c)) is χ² on (seeds − 1) degrees of
 * freedom if McNemar's width is right. Summed over independent models (each row's seeds once: tests
 * 0→1 and 1→2 of one row would share a model) it is χ² on the summed df, and `dispersion` = sum / df
 * estimates the variance ratio (1 when McNemar's width is right). Uncorrected, so the statistic's
 * null mean is exactly its df. Tests with no discordant pair (df 0) are left out; none left: null.
 */
export function seedNoiseDispersion(
  tests: readonly { readonly q: number; readonly df: number }[],
): { readonly df: number; readonly chi2: number; readonly p: number; readonly dispersion: number } | null {
  const used = tests.filter((t) => t.df > 0);
  if (!used.length) return null;
  const df = used.reduce((s, t) => s + t.df, 0);
  const chi2 = used.reduce((s, t) => s + t.q, 0);
  return { df, chi2, p: chiSquareSf(chi2, df), dispersion: chi2 / df };
}

/** Continued fraction of the incomplete beta (Numerical Recipes' betacf, modified Lentz, 1e-15 relative). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  const guard = (v: number): number => (Math.abs(v) < tiny ? tiny : v);
  let c = 1;
  let d = 1 / guard(1 - ((a + b) * x) / (a + 1));
  let h = d;
  for (let m = 1; m < 1000; m++) {
    const even = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m));
    d = 1 / guard(1 + even * d);
    c = guard(1 + even / c);
    h *= d * c;
    const odd = (-(a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1 / guard(1 + odd * d);
    c = guard(1 + odd / c);
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return h;
}

/** Regularized incomplete beta I_x(a, b), from the side where the fraction converges (keeps small values precise). */
function regularizedBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  return x < (a + 1) / (a + b + 2) ? (front * betaContinuedFraction(a, b, x)) / a : 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** Upper tail of Fisher's F with (d1, d2) degrees of freedom: P[F ≥ x] = I_{d2 / (d2 + d1·x)}(d2 / 2, d1 / 2). */
export function fSf(x: number, d1: number, d2: number): number {
  if (!(d1 > 0) || !(d2 > 0)) throw new RangeError(`fSf: need d1, d2 > 0, got ${d1}, ${d2}`);
  return x <= 0 ? 1 : regularizedBeta(d2 / (d2 + d1 * x), d2 / 2, d1 / 2);
}

/**
 * McNemar's test widened for noise it does not model, by a dispersion estimated on `df` degrees of
 * freedom (seedNoiseDispersion): the continuity-corrected statistic divided by max(1, dispersion)
 * is referred to F(1, df), not χ²₁, since the dispersion is itself an estimate from that many
 * degrees of freedom (the quasi-binomial F test). A dispersion below 1 is
 * not taken as evidence that McNemar is too wide (the floor), but the F reference stays, so p does
 * not jump where the estimate crosses 1. Never below the exact p: widening a test cannot make it
 * more confident than the exact one.
 */
export function mcnemarScaledP(b: number, c: number, dispersion: number, df: number): number {
  const { chi2, n, pExact } = mcnemarFromCounts(b, c);
  if (n === 0) return 1;
  return Math.max(pExact, fSf(chi2 / Math.max(1, dispersion), 1, df));
}

/**
 * Exact two-sided sign-test p-value for k successes out of n at p = 1/2: min(1, 2·P[X ≤ min(k, n−k)]).
 * Summed in log space (log C(n, j) by a running sum, then log-sum-exp from the largest term), so
 * n in the thousands neither overflows C(n, j) nor underflows 0.5^n before the terms are combined.
 */
export function binomialTwoSidedP(k: number, n: number): number {
  if (!Number.isInteger(k) || !Number.isInteger(n) || n < 0 || k < 0 || k > n)
    throw new RangeError(`binomialTwoSidedP: need integers 0 ≤ k ≤ n, got k=${k}, n=${n}`);
  const m = Math.min(k, n - k);
  const logHalfN = -n * Math.LN2;
  const logTerms: number[] = [];
  let logC = 0; // log C(n, 0)
  for (let j = 0; j <= m; j++) {
    logTerms.push(logC + logHalfN);
    logC += Math.log(n - j) - Math.log(j + 1);
  }
  // Terms grow with j up to n/2 ≥ m, so the last one is the largest.
  const top = logTerms[m];
  let sum = 0;
  for (const t of logTerms) sum += Math.exp(t - top);
  return Math.min(1, 2 * Math.exp(top + Math.log(sum)));
}

/** McNemar's test from the discordant counts b (A right, B wrong) and c (A wrong, B right). */
export function mcnemarFromCounts(b: number, c: number): McNemarResult {
  if (!Number.isInteger(b) || !Number.isInteger(c) || b < 0 || c < 0)
    throw new RangeError(`mcnemar: counts must be non-negative integers, got b=${b}, c=${c}`);
  const n = b + c;
  // No discordant pairs: no evidence either way (the chi-square formula would divide by 0).
  const chi2 = n === 0 ? 0 : (Math.abs(b - c) - 1) ** 2 / n;
  return { b, c, n, pExact: binomialTwoSidedP(Math.min(b, c), n), chi2, pChi2: n === 0 ? 1 : chiSquare1Sf(chi2) };
}

/** McNemar's test on per-pair correctness of models A and B over the same pairs, in the same order. */
export function mcnemar(correctA: ArrayLike<boolean>, correctB: ArrayLike<boolean>): McNemarResult {
  if (correctA.length !== correctB.length)
    throw new RangeError(
      `mcnemar: model A has ${correctA.length} per-pair results and model B ${correctB.length}; a paired test needs the same pairs`,
    );
  let b = 0;
  let c = 0;
  for (let i = 0; i < correctA.length; i++) {
    if (correctA[i] && !correctB[i]) b++;
    else if (!correctA[i] && correctB[i]) c++;
  }
  return mcnemarFromCounts(b, c);
}
