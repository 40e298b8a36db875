import { tf } from '@id3/core';
import { alignmentTemplate, networkEmbedder, type EmbedderEntry, type FaceEmbedder } from './face-embedder';
import { loadFaceApiNets } from './face-api';

/**
 * face-api's recognition network (dlib's ResNet-29 face descriptor, 128-d, 150×150 dlib chips in
 * 0–255; it subtracts its own mean internally).
 */
export async function loadFaceApiRecognition(entry: Omit<EmbedderEntry, 'load'>): Promise<FaceEmbedder> {
  const api = await loadFaceApiNets(['faceRecognitionNet']);
  const { name, dim, inputSize: size, alignment, padding } = entry;
  return networkEmbedder(
    { name, dim, inputSize: size, alignment, inputTemplate: alignmentTemplate(alignment, size, padding) },
    (resized) => {
      // unstack of a 1-image batch leaves its gradient undefined in tfjs (Unpack_grad); reshape instead.
      const images =
        resized.shape[0] === 1
          ? [tf.reshape(resized, [resized.shape[1], resized.shape[2], resized.shape[3]]) as tf.Tensor3D]
          : (tf.unstack(resized) as tf.Tensor3D[]);
      const out = api.nets.faceRecognitionNet.forwardInput(new api.NetInput(images, true));
      return tf.reshape(out, [resized.shape[0], dim]) as tf.Tensor2D;
    },
  );
}
