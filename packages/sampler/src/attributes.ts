import { z } from 'zod';
import { ATTRIBUTE_NAMES, scaleAttributes, unscaleAttributes } from '@id3/faces';
import type { Rng } from '@id3/core';

/**
 * How s_ij is chosen (the paper's Algorithm 3, step 3):
 * - `empirical`: the attributes of a random training image of the generator (the default);
 * - `ranges`: listed attributes uniform in a raw range (years, degrees), the others empirical
 *   (e.g. a pose-only variant: `{yaw: [-45, 45]}`);
 * - `mean`: every image gets the training mean (Table 1's fixed-attributes row).
 */
export const attributeSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('empirical') }).strict(),
  z
    .object({
      kind: z.literal('ranges'),
      ranges: z
        .object(
          Object.fromEntries(ATTRIBUTE_NAMES.map((n) => [n, z.tuple([z.number(), z.number()]).optional()])) as Record<
            (typeof ATTRIBUTE_NAMES)[number],
            z.ZodOptional<z.ZodTuple<[z.ZodNumber, z.ZodNumber]>>
          >,
        )
        .strict()
        .refine((r) => Object.values(r).every((v) => v === undefined || v[0] <= v[1]), {
          message: 'each range must be [lo, hi] with lo ≤ hi',
        }),
    })
    .strict(),
  z.object({ kind: z.literal('mean') }).strict(),
]);
export type AttributeSpec = z.output<typeof attributeSpecSchema>;

/** Scaled attribute rows (prepare's `attributes-scaled`) of the images the generator trained on. */
export interface AttributePool {
  readonly scaled: Float32Array;
  readonly width: number;
  readonly rows: readonly number[];
}

export function meanAttributes(pool: AttributePool): Float32Array {
  const mean = new Float32Array(pool.width);
  for (const r of pool.rows) for (let k = 0; k < pool.width; k++) mean[k] += pool.scaled[r * pool.width + k] / pool.rows.length;
  return mean;
}

/** One scaled attribute vector s for a slot, drawn from the slot's own stream. */
export function drawAttributes(spec: AttributeSpec, pool: AttributePool, rng: Rng, mean?: Float32Array): Float32Array {
  if (pool.width !== ATTRIBUTE_NAMES.length)
    throw new RangeError(`attributes: expected ${ATTRIBUTE_NAMES.length} columns, got ${pool.width}`);
  if (spec.kind === 'mean') return Float32Array.from(mean ?? meanAttributes(pool));
  const row = pool.rows[rng.int(pool.rows.length)];
  const s = pool.scaled.slice(row * pool.width, (row + 1) * pool.width);
  if (spec.kind === 'empirical') return s;
  const raw = unscaleAttributes(Array.from(s));
  ATTRIBUTE_NAMES.forEach((name, k) => {
    const range = spec.ranges[name];
    if (range) raw[k] = range[0] + (range[1] - range[0]) * rng.uniform();
  });
  return Float32Array.from(scaleAttributes(raw));
}
