// Face-recognition training models (insightface arcface_torch on tfjs): IResNet backbones and
// the margin heads (ArcFace, CosFace, softmax) with their cross-entropy loss.
export {
  IRESNET_DEPTHS,
  IRESNET_LAYERS,
  IRESNET_RESOLUTIONS,
  IRESNET_STAGE_CHANNELS,
  IRESNET_STAGE_STRIDES,
  iresnetConfigSchema,
  iresnetPlan,
} from './iresnet-config';
export type { IResNetConfig, IResNetConfigInput, IResNetDepth, IResNetPlan, IResNetResolution, IResNetStagePlan } from './iresnet-config';
export { IRESNET_WEIGHTS_FORMAT, IResNet } from './iresnet';
export type { IResNetForwardOptions } from './iresnet';
export { BN_EPSILON, BN_MOMENTUM, batchNormInference, batchNormTraining, updateRunningStatistics } from './batch-norm';
export type { BatchStatistics } from './batch-norm';
export { CONV_INIT_STD } from './layers';
export { ParamStore } from './param-store';
export type { Init, NamedShape } from './param-store';
export { DEFAULT_MARGINS, adaCosScale, l2Normalize, marginLogits, marginWarmupFactor, softmaxCrossEntropy } from './margin';
export type { MarginKind, MarginSpec } from './margin';
export { MARGIN_HEAD_WEIGHTS_FORMAT, MarginHead, marginHeadConfigSchema } from './margin-head';
export type { MarginHeadConfig, MarginHeadConfigInput, MarginHeadShape, MarginOptions } from './margin-head';
export { datasetFromArrays, datasetFromPrepared, identitySelectionSchema, selectIdentities, splitValidation } from './dataset';
export type { FaceDataset, IdentitySelection } from './dataset';
export { FR_CHECKPOINT_FORMAT, FrTrainer, frLearningRateSchedule, frTrainerConfigSchema } from './trainer';
export type { FrHistoryPoint, FrStepLog, FrTrainerConfig, FrTrainerConfigInput, FrTrainerOptions } from './trainer';
export { loadTrainedEmbedder } from './embedder';
export { FR_MODEL_CARD_FORMAT, frTrainingCurveSvg, frTrainConfigSchema, frTrainStage } from './stage';
export type { FrTrainConfig } from './stage';
