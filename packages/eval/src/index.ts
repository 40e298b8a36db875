export {
  areaUnder,
  equalErrorRate,
  evaluateDistances,
  evaluateVerification,
  meanStd,
  pairCorrectness,
  pairDistances,
  pairFolds,
  rates,
  rocCurve,
} from './verification';
export type { VerificationOptions, VerificationResult } from './verification';
export {
  binomialTwoSidedP,
  chiSquare1Sf,
  chiSquareSf,
  cochranQ,
  erfc,
  fSf,
  mcnemar,
  mcnemarFromCounts,
  mcnemarScaledP,
  seedNoiseDispersion,
} from './mcnemar';
export type { McNemarResult } from './mcnemar';
export { CropCache, EmbeddingCache, type CachedCrop } from './embedding-cache';
export { DEFAULT_POSE_EDGES, largestPoseDifference, poseBinnedAccuracy, yawDifferences } from './pose-bins';
export type { PoseBin, PoseBinnedAccuracy, PoseBinOptions } from './pose-bins';
export { PAPER_BENCHMARKS, paperTable, rocSvg, scoreHistogramSvg } from './report';
export type { ModelRow, PaperBenchmark } from './report';
export { evalConfigSchema, evalStage } from './stage';
export type { EvalConfig, PairResults } from './stage';
