import { tf } from '@id3/core';
import { dlibChipTemplate5, scaledTemplate, type Point } from '../align';
import type { RgbImage } from '../image-io';

/** The crop a recognition network was trained on: dlib's face chip, or the ArcFace crop. */
export type FaceAlignment = 'dlib-chip' | 'arcface';

/**
 * A frozen, pretrained face-recognition network (the ID³ teacher f, or an evaluated model):
 * aligned face images in, unit embeddings out. `embed` is built from differentiable tfjs ops, so
 * the diffusion loss can backpropagate through it (the weights are never updated).
 */
export interface FaceEmbedder {
  readonly name: string;
  readonly dim: number;
  /** Side of the square input the network itself takes (inputs are resized to it). */
  readonly inputSize: number;
  readonly alignment: FaceAlignment;
  /**
   * The five alignment points (eye centres, nose tip, mouth corners) in the network's input
   * frame: where an aligned face must put them. Lets other code map its own crops onto the
   * network's input (the diffusion loss does).
   */
  readonly inputTemplate: readonly Point[];
  /** [n, h, w, 3] RGB in 0–255 (aligned crops, any size) → [n, dim] L2-normalised. */
  embed(batch: tf.Tensor4D): tf.Tensor2D;
}

/** A registered embedder before it is loaded: what it is and which crop it needs. */
export interface EmbedderEntry {
  readonly name: string;
  readonly dim: number;
  readonly inputSize: number;
  readonly alignment: FaceAlignment;
  /** Margin of the crop around the face (see scaledTemplate / dlibChipTemplate): dlib's chips use 0.25, ArcFace crops 0. */
  readonly padding: number;
  load(): Promise<FaceEmbedder>;
}

/** The five template points of an `alignment` crop of side `size` with `padding`. */
export function alignmentTemplate(alignment: FaceAlignment, size: number, padding: number): Point[] {
  return alignment === 'dlib-chip' ? dlibChipTemplate5(size, padding) : scaledTemplate(size, padding);
}

export function l2Normalise(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.add(tf.norm(x, 2, 1, true), 1e-12)) as tf.Tensor2D);
}

/**
 * A face embedder around a network: `embed` resizes the batch to the input size when it differs,
 * runs `forward` (which takes RGB 0–255 at that size) and L2-normalises — the part every
 * recogniser shares, so each only says how its network is called.
 */
export function networkEmbedder(spec: Omit<FaceEmbedder, 'embed'>, forward: (sized: tf.Tensor4D) => tf.Tensor2D): FaceEmbedder {
  const size = spec.inputSize;
  return {
    ...spec,
    embed(batch) {
      return tf.tidy(() => {
        const sized = batch.shape[1] === size && batch.shape[2] === size ? batch : tf.image.resizeBilinear(batch, [size, size]);
        return l2Normalise(forward(sized));
      });
    },
  };
}

/** Embed each image and its horizontal flip, sum, normalise (the evaluation protocol). */
export function embedWithFlip(embedder: FaceEmbedder, batch: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => l2Normalise(tf.add(embedder.embed(batch), embedder.embed(tf.reverse(batch, 2) as tf.Tensor4D)) as tf.Tensor2D));
}

/** One crop already in the embedder's frame (any size: `embed` resizes) → its unit flip-summed embedding. */
export async function embedImage(embedder: FaceEmbedder, image: RgbImage): Promise<Float32Array> {
  const e = tf.tidy(() => embedWithFlip(embedder, tf.tensor4d(Float32Array.from(image.data), [1, image.height, image.width, 3])));
  try {
    return (await e.data()) as Float32Array;
  } finally {
    e.dispose();
  }
}
