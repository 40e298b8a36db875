export { areaUnder, equalErrorRate, evaluateDistances, evaluateVerification, pairDistances, rates, rocCurve } from './verification';
export type { VerificationOptions, VerificationResult } from './verification';
export { EmbeddingCache } from './embedding-cache';
export { PAPER_BENCHMARKS, paperTable, rocSvg, scoreHistogramSvg } from './report';
export type { ModelRow, PaperBenchmark } from './report';
export { evalConfigSchema, evalStage } from './stage';
export type { EvalConfig } from './stage';
