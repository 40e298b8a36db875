export * from './contracts';
export { createActivities } from './activities';
export type { Activities, ActivityDeps } from './activities';
export { createId3Worker } from './worker';
export type { Id3WorkerOptions } from './worker';
export { freePort, isServerHealthy, startDevServer } from './server';
export type { DevServerOptions, RunningDevServer } from './server';
export {
  buildPipelineConfig,
  localRunDir,
  pipelineConfigSchema,
  planRun,
  readPipelineConfig,
  stageSection,
  validateStageSection,
} from './pipeline-config';
export type { PipelineConfig } from './pipeline-config';
export { BUILTIN_STAGES, EXTRA_STAGES_ENV, createStageRegistry, stageRegistry } from './stages';
export type { StageRegistry } from './stages';
export { runStageCommand, stageCommandMain, RESULT_LINE_PREFIX } from './stage-command';
export type { StageCommandMode, StageCommandOptions } from './stage-command';
export { REPO_ROOT, ID3_BIN, runsDir, stateDir, temporalCliPath } from './paths';
export {
  experimentResultsPaths,
  experimentSchema,
  experimentsDir,
  resultsConfigHash,
  loadExperiment,
  planExperiment,
  publishedFolderOf,
  rebuildExperimentReport,
  READING_FILE,
  readReused,
  recordExperimentRun,
  reuseFinishedStages,
} from './experiment';
export type { Experiment, ExperimentResults, ExperimentRowResult } from './experiment';
export { CARRIED_STAGES, progressFolder, restoreExperimentProgress, saveExperimentProgress } from './experiment-progress';
export type { CarriedShard, ProgressMove } from './experiment-progress';
