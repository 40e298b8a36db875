export { areaUnder, equalErrorRate, evaluateDistances, evaluateVerification, pairDistances, rates, rocCurve } from './verification';
export type { VerificationOptions, VerificationResult } from './verification';
export { EmbeddingCache } from './embedding-cache';
