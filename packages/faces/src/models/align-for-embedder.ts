import { alignDlibChip, warpToTemplate, type Point } from '../align';
import type { RgbImage } from '../image-io';
import type { AlignResult } from './detect-align';
import { embedderInfo } from './embedders';
import { alignmentTemplate, type EmbedderEntry, type FaceEmbedder } from './face-embedder';

/**
 * The crop `embedder` expects, cut from the original image with the detection's landmarks (each
 * network sees faces the way it was trained: face-api's dlib network scores 78% on LFW from
 * ArcFace crops, 98% from its chips). A dlib chip is fitted on the 68 landmarks when there are
 * some; otherwise (ArcFace crops, or a centre-crop fallback) the five points are warped onto the
 * embedder's template.
 */
export function alignForEmbedder(image: RgbImage, found: AlignResult & { ok: true }, embedder: FaceEmbedder | EmbedderEntry): RgbImage {
  const size = embedder.inputSize;
  if (embedder.alignment === 'dlib-chip' && found.landmarks68)
    return alignDlibChip(image, found.landmarks68, size, paddingOf(embedder)).image;
  const template: readonly Point[] =
    'inputTemplate' in embedder ? embedder.inputTemplate : alignmentTemplate(embedder.alignment, size, embedder.padding);
  return warpToTemplate(image, found.points, template, size).image;
}

/** A loaded embedder carries no padding: its registry entry has it. */
function paddingOf(embedder: FaceEmbedder | EmbedderEntry): number {
  return 'padding' in embedder ? embedder.padding : embedderInfo(embedder.name).padding;
}
