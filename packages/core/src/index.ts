export { initBackend, activeBackend, BackendUnavailableError, BACKEND_REQUESTS, tf } from './backend';
export type { BackendChoice, BackendRequest } from './backend';
export {
  conv2dFilterGradient,
  conv2dInputGradient,
  convGeometry,
  depthwiseInputGradient,
  installWasmConvGradients,
} from './wasm-conv-gradients';
export { Rng } from './rng';
export type { RngState } from './rng';
export {
  PROGRESS_LINE_PREFIX,
  consoleSink,
  describeProgress,
  formatProgressLine,
  formatTimeLeft,
  jsonLineSink,
  parseProgressLine,
  throttled,
  timeLeftEstimator,
} from './progress';
export type { ProgressEvent, ProgressSink } from './progress';
export { canonicalJson, hashJson, sha256, sha256File } from './hash';
export { INVALID_INPUT_EXIT_CODE, InvalidInputError, isInvalidInput } from './errors';
export { ConfigError, listProfiles, loadProfile, mergeConfig, parseConfig, profilesDir, readJsonFile } from './config';
export type { JsonObject } from './config';
export { RunStore, readTensorFile, writeFileAtomic, writeJsonAtomic, writeTensorFile } from './run-store';
export type { OutputRecord, StageEvent, StageManifest, TensorDtype, TensorHeader } from './run-store';
export { SHARD_ID, checkResources, executeShard, executeStage, prepareStageRun, resolveUpstreamInputs } from './stage';
export type {
  AnyStageDefinition,
  MachineLimits,
  StageEstimate,
  CompletedShard,
  PipelineSections,
  ShardContext,
  StageContext,
  StageDefinition,
  StageOutputs,
  StagePlan,
  StageRunOptions,
  StageRunResult,
  StageShards,
} from './stage';
export { binEdges, gridSvg, histogram, histogramSvg, lineChartSvg, svgToPng } from './plot';
export type { HistogramPlot, HistogramSeries, LineChart, LineSeries } from './plot';
// The training kit (optimisers, LR schedules, EMA, clipping, checkpoint directories, gradient workers).
export * from './training';
