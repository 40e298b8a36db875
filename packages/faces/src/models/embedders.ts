import { InvalidInputError } from '@id3/core';
import { loadFaceApiRecognition } from './faceapi-recognition';
import type { EmbedderEntry, FaceEmbedder } from './face-embedder';
import { loadMobileFace } from './mobileface';

/**
 * The one registry of face embedders a config can name (prepare's teacher, bench, eval): name →
 * what the network needs (input size, crop, padding) and how to load it. Built-ins below; trained
 * FR models join with registerEmbedder.
 */
const entries = new Map<string, EmbedderEntry>();
/** One load per name per process: each load reads the weights and builds a graph. */
const loaded = new Map<string, Promise<FaceEmbedder>>();

export const DEFAULT_EMBEDDER = 'faceapi-dlib-128';

/** Names in registration order (built-ins first, the default first of all). */
export function embedderNames(): string[] {
  return [...entries.keys()];
}

/** Why `name` is not a known embedder (the message a config field reports). */
export function unknownEmbedderMessage(name: string): string {
  return `unknown face embedder '${name}' (known: ${embedderNames().join(', ')})`;
}

/** The registry entry of `name`; an unknown name is invalid input naming `field` when given. */
export function embedderInfo(name: string, field?: string): EmbedderEntry {
  const entry = entries.get(name);
  if (entry) return entry;
  const message = unknownEmbedderMessage(name);
  throw new InvalidInputError(field ? `field '${field}': ${message}` : message, field ? { field } : undefined);
}

/** The loaded embedder `name`, cached per process (a failed load is retried on the next call). */
export async function loadEmbedder(name: string, field?: string): Promise<FaceEmbedder> {
  const entry = embedderInfo(name, field);
  let embedder = loaded.get(name);
  if (!embedder) {
    embedder = entry.load().then((e) => {
      if (e.name !== entry.name || e.dim !== entry.dim || e.inputSize !== entry.inputSize || e.alignment !== entry.alignment) {
        throw new Error(
          `face embedder '${name}' loaded as ${e.name} (${e.dim}-d, ${e.inputSize}px, ${e.alignment}); its registry entry says ${entry.dim}-d, ${entry.inputSize}px, ${entry.alignment}`,
        );
      }
      return e;
    });
    loaded.set(name, embedder);
    embedder.catch(() => loaded.delete(name));
  }
  return embedder;
}

/** Add an embedder (e.g. a trained FR model); its name must be new. */
export function registerEmbedder(entry: EmbedderEntry): void {
  if (entries.has(entry.name)) throw new InvalidInputError(`face embedder '${entry.name}' is already registered`);
  if (!/^[A-Za-z0-9._-]+$/.test(entry.name))
    throw new InvalidInputError(`face embedder name '${entry.name}': use letters, digits, '.', '_' and '-' only`);
  for (const key of ['dim', 'inputSize'] as const) {
    if (!Number.isInteger(entry[key]) || entry[key] <= 0)
      throw new InvalidInputError(`face embedder '${entry.name}': ${key} must be a positive integer, got ${entry[key]}`);
  }
  if (!(entry.padding >= 0)) throw new InvalidInputError(`face embedder '${entry.name}': padding must be ≥ 0, got ${entry.padding}`);
  if (entry.alignment !== 'dlib-chip' && entry.alignment !== 'arcface')
    throw new InvalidInputError(`face embedder '${entry.name}': unknown alignment '${String(entry.alignment)}'`);
  entries.set(entry.name, entry);
}

function builtIn(spec: Omit<EmbedderEntry, 'load'>, load: (spec: Omit<EmbedderEntry, 'load'>) => Promise<FaceEmbedder>): void {
  registerEmbedder({ ...spec, load: () => load(spec) });
}

// face-api's dlib ResNet on dlib's 150×150 chips (padding 0.25, as dlib's recognition example).
builtIn({ name: DEFAULT_EMBEDDER, dim: 128, inputSize: 150, alignment: 'dlib-chip', padding: 0.25 }, loadFaceApiRecognition);
// MobileFace on the plain ArcFace 112×112 crop.
builtIn({ name: 'mobileface-256', dim: 256, inputSize: 112, alignment: 'arcface', padding: 0 }, loadMobileFace);
