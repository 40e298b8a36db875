// The training kit shared by the id3 trainers: optimisers (a JS-loop path for CPU backends, a
// tfjs-ops path for GPU backends), learning-rate schedules, EMA, clipping, checkpoint
// directories and data-parallel gradient workers.
export { adamStepSize, adamUpdate } from './adam';
export type { AdamHyperparameters, AdamUpdate } from './adam';
export { sgdMomentumUpdate } from './sgd';
export type { SgdHyperparameters, SgdUpdate } from './sgd';
export { OPTIMIZER_SLOTS, adamConfigSchema, optimizerConfigSchema, optimizerImplementationFor, sgdConfigSchema } from './optimizer';
export type {
  Gradients,
  Optimizer,
  OptimizerConfig,
  OptimizerConfigInput,
  OptimizerImplementation,
  OptimizerKind,
  OptimizerState,
  UpdateOptions,
} from './optimizer';
export { JsLoopOptimizer, flattenTensorsSync } from './js-loop-optimizer';
export { TfjsOpsOptimizer } from './tfjs-ops-optimizer';
export { createOptimizer } from './create-optimizer';
export { decayProgress, decayedLearningRate, learningRateAt, lrDecaySchema, lrScheduleSchema, warmupFactor } from './lr-schedule';
export type { LrDecay, LrSchedule, LrScheduleInput } from './lr-schedule';
export { emaDecayAt, emaUpdate, emaUpdateVariables } from './ema';
export { clipScale, globalNorm, globalNormTensor } from './clip';
export {
  CHECKPOINT_STATE_FILE,
  checkpointName,
  listCheckpoints,
  moveCheckpointsAside,
  pruneCheckpoints,
  resumeCheckpoint,
  writeCheckpoint,
} from './checkpoint-dir';
export type { CheckpointEntry, CheckpointStateBase, ResumeOutcome } from './checkpoint-dir';
export { GradientWorkerPool } from './gradient-worker-pool';
export type { GradientWorkerPoolOptions } from './gradient-worker-pool';
export { serveGradientWorker } from './serve-gradient-worker';
export type { GradientWorkerBody } from './serve-gradient-worker';
export type { GradientResult, GradientWorkerReply, GradientWorkerRequest } from './gradient-worker-protocol';
export { resolveThreads } from './threads';
