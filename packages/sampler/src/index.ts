export { attributeSpecSchema, drawAttributes, meanAttributes } from './attributes';
export type { AttributePool, AttributeSpec } from './attributes';
export { calibrateFaceCheck, meanShape, normaliseShape, procrustesResidual, readFace } from './face-check';
export type { FaceCheck, FaceReading } from './face-check';
export { filterConfigSchema, IdentitySampler, quantise, samplerLoopSchema } from './generate';
export type { AttemptRecord, FilterConfig, IdentityOutcome, SamplerLoop } from './generate';
export { guidanceConfigSchema, guidedTimesteps, identityGuidance, identitySimilarity, x0GuidanceCoefficient } from './guidance';
export type { GuidanceConfig, IdentityGuidanceOptions } from './guidance';
export { attributeRng, imageSeed } from './seeds';
export { assertWritable, sampleConfigSchema, sampleStage, STAGE_MODEL } from './stage';
export type { SampleConfig } from './stage';
export { writeDatasetCard } from './card';
export type { AttributeNumbers, DatasetCardInput, DatasetCardNumbers, LeakageEntry, SyntheticSet } from './card';
export {
  drawVerificationPairs,
  flagLeakingIdentities,
  flaggedAbove,
  fractionAtLeast,
  gatherRows,
  identityLeakage,
  nearestNeighbours,
  quantile,
  summarise,
  unitRows,
} from './leakage';
export type { DistributionSummary, IdentityLeakage, LeakageFlags, NearestNeighbours, VerificationPairs } from './leakage';
