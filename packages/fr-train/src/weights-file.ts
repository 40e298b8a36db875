import { InvalidInputError, readTensorFile, tf, writeTensorFile } from '@id3/core';
import type { NamedShape, ParamStore } from './param-store';

/** Variables → one flat array in their order (a download per variable). */
export async function flattenVariables(variables: readonly tf.Variable[]): Promise<Float32Array> {
  const out = new Float32Array(variables.reduce((n, v) => n + v.size, 0));
  let offset = 0;
  for (const v of variables) {
    out.set((await v.data()) as Float32Array, offset);
    offset += v.size;
  }
  return out;
}

/** A flat array (in variable order) → the variables. */
export function assignFlat(variables: readonly tf.Variable[], values: Float32Array, what: string): void {
  const expected = variables.reduce((n, v) => n + v.size, 0);
  if (values.length !== expected) throw new RangeError(`${what}: ${values.length} values for ${expected}`);
  let offset = 0;
  for (const v of variables) {
    const t = tf.tensor(values.subarray(offset, offset + v.size), v.shape);
    v.assign(t);
    t.dispose();
    offset += v.size;
  }
}

/** The header's description of a network's weights: enough to rebuild it and check the layout. */
export interface WeightsMeta {
  readonly format: string;
  readonly config: unknown;
  readonly params: NamedShape[];
  readonly buffers: NamedShape[];
}

/**
 * Save a network as an id3 tensor file: `<path>.bin` holds the parameters then the buffers as
 * little-endian float32, concatenated in the order `meta.params` then `meta.buffers` list them
 * (names and shapes); `<path>.json` also holds the format, the config and the data's sha256.
 * `params` replaces the live parameter values (e.g. an optimiser's host copy).
 */
export async function writeWeights(
  path: string,
  store: ParamStore,
  format: string,
  config: unknown,
  extraMeta: Record<string, unknown> = {},
  params?: Float32Array,
): Promise<string> {
  const paramValues = params ?? (await flattenVariables([...store.params.values()]));
  if (paramValues.length !== store.paramCount())
    throw new RangeError(`save: ${paramValues.length} parameter values for ${store.paramCount()} parameters`);
  const bufferValues = await flattenVariables([...store.buffers.values()]);
  const flat = new Float32Array(paramValues.length + bufferValues.length);
  flat.set(paramValues);
  flat.set(bufferValues, paramValues.length);
  const { params: paramLayout, buffers: bufferLayout } = store.layout();
  const meta: WeightsMeta = { format, config, params: paramLayout, buffers: bufferLayout };
  return writeTensorFile(path, 'float32', [flat.length], flat, { ...meta, ...extraMeta });
}

/** Read a weights file of `format`; the caller rebuilds the network from `meta.config`, then `restoreWeights`. */
export function readWeights(path: string, format: string): { meta: WeightsMeta & Record<string, unknown>; values: Float32Array } {
  const { header, values } = readTensorFile(path);
  const meta = header.meta as Partial<WeightsMeta> | undefined;
  if (meta?.format !== format || !Array.isArray(meta.params) || !Array.isArray(meta.buffers) || !(values instanceof Float32Array))
    throw new InvalidInputError(`${path}: not ${format} weights`, { file: path });
  return { meta: meta as WeightsMeta & Record<string, unknown>, values };
}

/** Check that the file's layout is the rebuilt network's, then load parameters and buffers. */
export function restoreWeights(path: string, store: ParamStore, meta: WeightsMeta, values: Float32Array): void {
  const layout = store.layout();
  if (JSON.stringify(layout.params) !== JSON.stringify(meta.params) || JSON.stringify(layout.buffers) !== JSON.stringify(meta.buffers))
    throw new InvalidInputError(`${path}: parameter layout does not match its config (saved by a different version?)`, { file: path });
  const paramCount = store.paramCount();
  if (values.length !== paramCount + store.bufferCount())
    throw new InvalidInputError(`${path}: ${values.length} values for ${paramCount + store.bufferCount()}`, { file: path });
  assignFlat([...store.params.values()], values.subarray(0, paramCount), `${path} parameters`);
  assignFlat([...store.buffers.values()], values.subarray(paramCount), `${path} buffers`);
}
