export { cosineBetas, ddimTimesteps, identityWeight, linearBetas, makeSchedule, scheduleConfigSchema, scheduleFromBetas } from './schedule';
export type { NoiseSchedule, ScheduleConfig } from './schedule';
export { GaussianDiffusion, gaussianNoise, perSampleNoise, runLoop } from './gaussian-diffusion';
export type { DdimOptions, EpsModel, GuidanceHook, NoiseSource, SampleOptions, SampleStep } from './gaussian-diffusion';
export { ParamStore, groupNormWith, timestepEmbedding, upsample2x } from './layers';
export { UNET_WEIGHTS_FORMAT, UNet, tinyUNetConfig, unetArchitectureSchema, unetConfigSchema } from './unet';
export type { UNetConfig, UNetConfigInput, UNetInputs } from './unet';
export { TeacherInput, fitAxisMap, resampleMatrix } from './teacher-input';
export { id3LossTerms } from './loss';
export type { Id3LossBatch, Id3LossOptions, Id3LossTerms } from './loss';
export { CHECKPOINT_FORMAT, DiffusionTrainer, FLIP_NEGATED_ATTRIBUTES, listCheckpoints, trainerConfigSchema } from './trainer';
export type {
  DiffusionTrainerOptions,
  HistoryPoint,
  LossValues,
  StepLog,
  TrainerConfig,
  TrainerConfigInput,
  TrainingData,
} from './trainer';
export { sampleConditions } from './sampling';
export type { Conditions } from './sampling';
export { gridPng, toImages } from './images';
export { embedCrops, identityConsistency, pearson, readAttributes } from './held-out-evaluation';
export type { AttributeReadout, HeldOutHistoryRow, HeldOutHistorySettings } from './held-out-evaluation';
export { trainDiffusionConfigSchema, trainDiffusionStage } from './stage';
export type { TrainDiffusionConfig } from './stage';
export { GENERATOR_FORMAT, generatorDescriptorSchema, loadGenerator, readGeneratorDescriptor, writeGeneratorDescriptor } from './generator';
export type { GeneratorDescriptor, GeneratorDescriptorInput, LoadedGenerator } from './generator';
export { heldOutRows, readPreparedLabels } from './holdout';
export { identitySpaceConfigSchema, identitySpaceStage } from './identity-space-stage';
export type { IdentitySpaceConfig } from './identity-space-stage';
export {
  GENERATOR_CARD_FORMAT,
  SHIPPED_MODEL_MAX_BYTES,
  adoptIdentitySpace,
  adoptableIdentitySpace,
  formatBytes,
  generatorCardSchema,
  generatorTargets,
  modelCardMarkdown,
  readGeneratorCard,
  recordGeneratorCard,
  resolveModelPath,
  shipGenerator,
} from './shipped-model';
export type { GeneratorCard, ShipGeneratorOptions, ShippedGenerator } from './shipped-model';
export { readInitWeights, startFromInit } from './fine-tune';
export type { InitExpectation, InitWeights } from './fine-tune';
