export { dataDir, requireDataPath } from './data-dir';
export { decodeImage, decodeImageBytes, decodeNetpbm, resizeImage } from './image-io';
export type { RgbImage } from './image-io';
export { readLfwPairs } from './readers/lfw';
export type { PairList, VerificationPair } from './readers/lfw';
export { readCfpPairs } from './readers/cfp';
export { parseUtkFaceName, readUtkFace } from './readers/utkface';
export type { UtkFaceRecord } from './readers/utkface';
export { readImageFolders } from './readers/folders';
export type { LabelledImage } from './readers/folders';
export { parseInsightfaceBin, readInsightfaceBin } from './readers/insightface-bin';
export type { InsightfaceBin } from './readers/insightface-bin';
export {
  IR_HEADER_SIZE,
  RECORDIO_MAGIC,
  encodeRecord,
  openRecordIo,
  packImageRecord,
  readInsightfaceDataset,
  writeInsightfaceRecordIo,
  writeRecordIo,
} from './readers/recordio';
export type { IRHeader, ImageRecord, InsightfaceDataset, InsightfaceImage, RecordIo } from './readers/recordio';
export {
  ARCFACE_TEMPLATE_112,
  DLIB_CHIP_INDICES,
  alignDlibChip,
  alignFace,
  dlibChipTemplate,
  dlibChipTemplate5,
  warpToTemplate,
  applySimilarity,
  fitSimilarity,
  fivePointsFrom68,
  invertSimilarity,
  scaledTemplate,
} from './align';
export type { Point, Similarity } from './align';
export { faceApi, faceApiModelDir, loadFaceApiNets } from './models/face-api';
export { embedImage, embedWithFlip, networkEmbedder } from './models/face-embedder';
export type { EmbedderEntry, FaceAlignment, FaceEmbedder } from './models/face-embedder';
export { DEFAULT_EMBEDDER, embedderInfo, embedderNames, loadEmbedder, registerEmbedder } from './models/embedders';
export { alignForEmbedder } from './models/align-for-embedder';
export { teacherCalibration, thresholdAtFar } from './models/teacher-calibration';
export type { TeacherCalibration } from './models/teacher-calibration';
export { centredTemplatePoints, detectAndAlign, landmarksOfCrop } from './models/detect-align';
export type { AlignOptions, AlignResult, DetectorName } from './models/detect-align';
export { headPoseFrom68, projectModel } from './pose';
export type { HeadPose } from './pose';
export { landmarkBox, predictAge } from './models/age';
export {
  ATTRIBUTE_NAMES,
  ATTRIBUTE_SCALING,
  correlation,
  prepareConfigSchema,
  prepareStage,
  resolveSourcePath,
  scaleAttributes,
  unscaleAttributes,
} from './prepare';
export type { PrepareConfig } from './prepare';
export { randomAttributes, randomIdentity, renderFacePng, renderFaceSvg, writeProceduralFaces } from './procedural';
export type { FaceAttributes, FaceIdentity } from './procedural';
