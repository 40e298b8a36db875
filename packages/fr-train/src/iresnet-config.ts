import { z } from 'zod';

/** Blocks per stage (arcface_torch backbones/iresnet.py: iresnet18, iresnet34, iresnet50). */
export const IRESNET_LAYERS = { 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3] } as const;
export type IResNetDepth = keyof typeof IRESNET_LAYERS;
export const IRESNET_DEPTHS = [18, 34, 50] as const satisfies readonly IResNetDepth[];

/** Channels of the four stages at width 1 (the stem has the first stage's). */
export const IRESNET_STAGE_CHANNELS = [64, 128, 256, 512] as const;

/**
 * Stride of each of the four stages per input side. The stem is a stride-1 3×3 convolution at
 * every size.
 *  - 112: arcface_torch's network unchanged: 112 → 56 → 28 → 14 → 7.
 *  - 64: the same strides give 64 → 32 → 16 → 8 → 4 (4×4 final map); nothing to adapt.
 *  - 32: the same strides would end at 2×2, where the fc layer sees each quarter of the face
 *    as one cell. The first stage keeps stride 1 instead (32 → 32 → 16 → 8 → 4): the final map
 *    stays 4×4 like the 64 variant, so the fc layer keeps a coarse spatial layout (eyes vs
 *    mouth), the role the 7×7 map plays at 112. The first stage then runs at 32×32, 4× the
 *    work of a stride-2 first stage, still small next to a 112 network (CIFAR ResNets make
 *    the same choice: no early downsampling of 32×32 images).
 */
export const IRESNET_STAGE_STRIDES = { 32: [1, 2, 2, 2], 64: [2, 2, 2, 2], 112: [2, 2, 2, 2] } as const;
export type IResNetResolution = keyof typeof IRESNET_STAGE_STRIDES;
export const IRESNET_RESOLUTIONS = [32, 64, 112] as const satisfies readonly IResNetResolution[];

/** A number field that must be one of `values`; the error names the value and the choices. */
function oneOf<T extends number>(values: readonly T[], what: string) {
  return z.number().refine(
    (v): v is T => (values as readonly number[]).includes(v),
    (v) => ({ message: `${v} is not a supported ${what} (one of ${values.join(', ')})` }),
  );
}

/**
 * An IResNet (arcface_torch's backbone): `depth` 18/34/50; `width` multiplies the stage
 * channels 64, 128, 256, 512 (64·width must be a whole number); `resolution` is the input side
 * (square RGB in [-1, 1], arcface_torch's (x/255 − 0.5)/0.5); `embeddingDim` the feature size;
 * `dropout` the rate before the fc layer (arcface_torch's default 0).
 */
export const iresnetConfigSchema = z
  .object({
    depth: oneOf(IRESNET_DEPTHS, 'depth'),
    resolution: oneOf(IRESNET_RESOLUTIONS, 'resolution'),
    width: z
      .number()
      .positive()
      .max(4)
      .default(1)
      .refine((w) => Number.isInteger(64 * w), { message: '64·width must be a whole number of channels' }),
    embeddingDim: z.number().int().positive().default(512),
    dropout: z.number().min(0).lt(1).default(0),
  })
  .strict();
export type IResNetConfig = z.output<typeof iresnetConfigSchema>;
export type IResNetConfigInput = z.input<typeof iresnetConfigSchema>;

export interface IResNetStagePlan {
  readonly channels: number;
  readonly blocks: number;
  readonly stride: 1 | 2;
  /** Side of the stage's output map. */
  readonly side: number;
}

export interface IResNetPlan {
  readonly stemChannels: number;
  readonly stages: readonly IResNetStagePlan[];
  /** Side of the last feature map, flattened into the fc layer. */
  readonly finalSide: number;
  readonly fcInputs: number;
}

/** The shape of the network a config describes (channels, blocks, strides, map sides). */
export function iresnetPlan(config: IResNetConfig): IResNetPlan {
  const layers = IRESNET_LAYERS[config.depth];
  const strides = IRESNET_STAGE_STRIDES[config.resolution];
  let side: number = config.resolution;
  const stages = IRESNET_STAGE_CHANNELS.map((c, i) => {
    side /= strides[i];
    return { channels: Math.round(c * config.width), blocks: layers[i], stride: strides[i], side };
  });
  const last = stages[stages.length - 1];
  return { stemChannels: stages[0].channels, stages, finalSide: side, fcInputs: last.channels * side * side };
}
