import { tf } from '@id3/core';
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
  /** [n, h, w, 3] RGB in 0–255 (aligned crops, any size) → [n, dim] L2-normalised. */
  embed(batch: tf.Tensor4D): tf.Tensor2D;
}

/** Embedding size of each teacher a config can name (checked against the anchors' dimension). */
export const TEACHER_DIMS = { 'faceapi-dlib-128': 128 } as const;

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
    embed(batch) {
      return tf.tidy(() => {
        const resized = batch.shape[1] === 150 && batch.shape[2] === 150 ? batch : tf.image.resizeBilinear(batch, [150, 150]);
        const input = new api.NetInput(tf.unstack(resized) as tf.Tensor3D[], true);
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
