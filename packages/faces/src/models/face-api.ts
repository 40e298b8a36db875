import { dirname, join } from 'node:path';
import { tf } from '@id3/core';

/**
 * @vladmandic/face-api, wasm build, on the project's own tfjs (it requires the same hoisted
 * `@tensorflow/tfjs` instance, so its tensors are ours). Weights ship inside the npm package:
 * nothing is downloaded. Only the parts id3 uses are typed here.
 */
interface FaceApiNet {
  loadFromDisk(dir: string): Promise<void>;
  readonly isLoaded: boolean;
}
interface Box {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}
export interface FaceApiDetection {
  readonly detection: { readonly score: number; readonly box: Box };
  readonly landmarks: { readonly positions: readonly { readonly x: number; readonly y: number }[] };
}
interface FaceApiModule {
  readonly nets: {
    readonly tinyFaceDetector: FaceApiNet;
    readonly ssdMobilenetv1: FaceApiNet;
    readonly faceLandmark68Net: FaceApiNet & {
      detectLandmarks(input: tf.Tensor3D): Promise<{ readonly positions: readonly { readonly x: number; readonly y: number }[] }>;
    };
    readonly faceRecognitionNet: FaceApiNet & { forwardInput(input: unknown): tf.Tensor2D };
    readonly ageGenderNet: FaceApiNet & {
      predictAgeAndGender(input: tf.Tensor3D): Promise<{ age: number; gender: string; genderProbability: number }>;
    };
  };
  NetInput: new (inputs: tf.Tensor3D[], treatAsBatchInput?: boolean) => unknown;
  TinyFaceDetectorOptions: new (o: { inputSize?: number; scoreThreshold?: number }) => unknown;
  SsdMobilenetv1Options: new (o: { minConfidence?: number; maxResults?: number }) => unknown;
  detectAllFaces(input: tf.Tensor3D, options: unknown): { withFaceLandmarks(): Promise<FaceApiDetection[]> };
}

let loaded: FaceApiModule | undefined;

/** The face-api module (loaded lazily: it is large, and only stages that need faces pay for it). */
export function faceApi(): FaceApiModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded ??= require('@vladmandic/face-api/dist/face-api.node-wasm.js') as FaceApiModule;
  return loaded;
}

export function faceApiModelDir(): string {
  return join(dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
}

/** Load the named nets from the package's model folder (idempotent). */
export async function loadFaceApiNets(names: readonly (keyof FaceApiModule['nets'])[]): Promise<FaceApiModule> {
  const api = faceApi();
  for (const name of names) if (!api.nets[name].isLoaded) await api.nets[name].loadFromDisk(faceApiModelDir());
  return api;
}
