export { tammesAnchors, resolveTammesOptions, scheduleAt, nearestNeighbours, geometric } from './tammes';
export type { ResolvedTammesOptions, TammesOptions, TammesProgress, TammesRunHooks } from './tammes';
export { sampleIdentities, validateIdentityOptions } from './identities';
export type { IdentityEmbeddings, IdentitySamplingOptions } from './identities';
export { pairwiseStats } from './pairwise';
export type { PairwiseStats } from './pairwise';
export { angleDeg, normaliseRows, randomUnitVectors } from './sphere';
export { anchorsConfigSchema, anchorsStage, identitiesConfigSchema, identitiesStage } from './stages';
export type { AnchorsConfig, IdentitiesConfig } from './stages';
export {
  IDENTITY_SPACE_FORMAT,
  IDENTITY_SPACE_VERSION,
  chooseK,
  fitIdentitySpace,
  fromWhitened,
  meanAndCovariance,
  readIdentitySpace,
  requireSameIdentitySpace,
  symmetricEigen,
  toWhitened,
  writeIdentitySpace,
} from './identity-space';
export type { IdentitySpaceHeader, IdentitySpaceMap, KeepOptions, LoadedIdentitySpace } from './identity-space';
