import { sha256File, tf } from '@id3/core';
import { networkEmbedder, scaledTemplate, type FaceEmbedder } from '@id3/faces';
import { IResNet } from './iresnet';

/**
 * A trained IResNet as a face embedder, so `eval` scores it like any teacher: ArcFace-aligned
 * crops at the model's resolution (exactly how its training crops were cut: the 112 template,
 * resized), RGB 0–255 in, unit embeddings out (the network takes [-1, 1]; inference mode).
 */
export async function loadTrainedEmbedder(
  weightsPath: string,
): Promise<FaceEmbedder & { readonly weightsSha256: string; dispose(): void }> {
  const net = IResNet.load(weightsPath);
  const weightsSha256 = await sha256File(weightsPath.endsWith('.json') ? weightsPath : `${weightsPath}.json`);
  const r = net.config.resolution;
  const embedder = networkEmbedder(
    {
      // Names the weights (their header's hash names the data file's hash too): caches key on it.
      name: `fr-train-${weightsSha256.slice(0, 12)}`,
      dim: net.config.embeddingDim,
      inputSize: r,
      alignment: 'arcface',
      inputTemplate: scaledTemplate(r),
    },
    (sized) => net.forward(tf.sub(tf.div(sized, 127.5), 1) as tf.Tensor4D, { training: false }) as tf.Tensor2D,
  );
  return { ...embedder, weightsSha256, dispose: () => net.dispose() };
}
