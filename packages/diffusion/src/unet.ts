import { z } from 'zod';
import { InvalidInputError, Rng, readTensorFile, tf, writeTensorFile } from '@id3/core';
import { ParamStore, conv2d, groupNorm, linear, silu, timestepEmbedding, upsample2x } from './layers';

/**
 * The conditional UNet ε_θ(x_t, t, y, s) of improved-diffusion, shrunk to taste by config:
 * residual blocks (GroupNorm, SiLU, 3×3 conv, timestep+condition embedding added per block or as
 * FiLM scale-shift of the block's second GroupNorm),
 * self-attention at chosen resolutions, strided-conv downsampling, nearest + conv upsampling.
 * The condition c = MLP([y; s]) (hidden 512, 256, ReLU) is added to the timestep embedding.
 *
 * unetArchitectureSchema: the knobs a config sets (resolution and condition sizes come from the data).
 */
export const unetArchitectureSchema = z
  .object({
    inChannels: z.number().int().positive().default(3),
    baseChannels: z.number().int().positive().default(32),
    channelMult: z.array(z.number().int().positive()).nonempty().default([1, 2, 2]),
    resBlocks: z.number().int().positive().default(1),
    /** Resolutions (sides) that get a self-attention block. */
    attentionResolutions: z.array(z.number().int().positive()).default([8]),
    groups: z.number().int().positive().default(8),
    conditionHidden: z.tuple([z.number().int().positive(), z.number().int().positive()]).default([512, 256]),
    /**
     * How a residual block takes the timestep + condition embedding: 'add' (a per-channel bias
     * before conv2) or 'scale-shift' (FiLM of the second GroupNorm, improved-diffusion's
     * use_scale_shift_norm: h ← norm(h)·(1 + scale) + shift), which lets the condition gate features.
     */
    conditioning: z.enum(['add', 'scale-shift']).default('add'),
  })
  .strict();

export const unetConfigSchema = unetArchitectureSchema
  .extend({
    /** Image side (square), divisible by 2^(levels − 1). */
    resolution: z.number().int().min(8).max(512),
    /** Identity embedding size d (the teacher's) and attribute count. */
    identityDim: z.number().int().positive(),
    attributeDim: z.number().int().nonnegative().default(4),
  })
  .strict()
  .superRefine((c, ctx) => {
    const factor = 2 ** (c.channelMult.length - 1);
    if (c.resolution % factor !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['resolution'],
        message: `${c.resolution} is not divisible by 2^${c.channelMult.length - 1} (channelMult has ${c.channelMult.length} levels)`,
      });
    for (const [i, m] of c.channelMult.entries()) {
      if ((c.baseChannels * m) % Math.min(c.groups, c.baseChannels * m) !== 0)
        ctx.addIssue({
          code: 'custom',
          path: ['channelMult', i],
          message: `${c.baseChannels * m} channels do not split into ${c.groups} groups`,
        });
    }
  });
export type UNetConfig = z.output<typeof unetConfigSchema>;
export type UNetConfigInput = z.input<typeof unetConfigSchema>;

/**
 * The smallest UNet with every kind of block (two levels, groups of 4, a 16-16 condition MLP):
 * for tests and quick plumbing checks at 8–16 px, never a generator.
 */
export function tinyUNetConfig(resolution: number, identityDim: number, over: Partial<UNetConfigInput> = {}): UNetConfig {
  return unetConfigSchema.parse({
    resolution,
    baseChannels: 8,
    channelMult: [1, 2],
    attentionResolutions: [],
    groups: 4,
    identityDim,
    conditionHidden: [16, 16],
    ...over,
  });
}

export interface UNetInputs {
  readonly xt: tf.Tensor4D;
  readonly t: readonly number[];
  /** [b, identityDim] unit identity embeddings. */
  readonly y: tf.Tensor2D;
  /** [b, attributeDim] scaled attributes. */
  readonly s: tf.Tensor2D;
  /** Per-sample 0/1: 0 drops the condition (classifier-free guidance training / null condition). */
  readonly keepCondition?: tf.Tensor2D;
}

export const UNET_WEIGHTS_FORMAT = 'id3-unet-weights/1';

export class UNet {
  readonly params: ParamStore;
  readonly embedDim: number;

  private constructor(
    readonly config: UNetConfig,
    rng: Rng,
  ) {
    this.params = new ParamStore(rng);
    this.embedDim = config.baseChannels * 4;
    // One forward on a 1-image batch creates every parameter, in forward order.
    tf.tidy(() => {
      const r = config.resolution;
      this.forward({
        xt: tf.zeros([1, r, r, config.inChannels]),
        t: [0],
        y: tf.zeros([1, config.identityDim]),
        s: tf.zeros([1, config.attributeDim]),
      });
    });
    this.params.freeze();
  }

  static create(config: UNetConfigInput, seed: number): UNet {
    return new UNet(unetConfigSchema.parse(config), new Rng(seed).fork('unet-init'));
  }

  get variables(): tf.Variable[] {
    return [...this.params.variables.values()];
  }

  parameterCount(): number {
    return this.params.count();
  }

  /** ε̂ for a batch. Call inside tf.tidy (or a gradient function). */
  forward(inp: UNetInputs): tf.Tensor4D {
    const c = this.config;
    const p = this.params;
    const ch = c.baseChannels;
    const E = this.embedDim;

    let emb = linear(p, 'time.1', silu(linear(p, 'time.0', timestepEmbedding(inp.t, ch), E)), E);
    const ys = c.attributeDim > 0 ? tf.concat([inp.y, inp.s], 1) : inp.y;
    const [h1, h2] = c.conditionHidden;
    let cond = linear(p, 'cond.2', tf.relu(linear(p, 'cond.1', tf.relu(linear(p, 'cond.0', ys, h1)), h2)), E);
    if (inp.keepCondition) cond = tf.mul(cond, inp.keepCondition);
    emb = tf.add(emb, cond);

    let h = conv2d(p, 'in', inp.xt, ch, 3);
    const skips: tf.Tensor4D[] = [h];
    let res = c.resolution;
    for (const [level, mult] of c.channelMult.entries()) {
      for (let r = 0; r < c.resBlocks; r++) {
        h = this.resBlock(`down.${level}.${r}`, h, emb, ch * mult);
        if (c.attentionResolutions.includes(res)) h = this.attention(`down.${level}.${r}.attn`, h);
        skips.push(h);
      }
      if (level < c.channelMult.length - 1) {
        h = conv2d(p, `down.${level}.downsample`, h, h.shape[3], 3, { stride: 2 });
        res /= 2;
        skips.push(h);
      }
    }
    h = this.resBlock('mid.0', h, emb, h.shape[3]);
    h = this.attention('mid.attn', h);
    h = this.resBlock('mid.1', h, emb, h.shape[3]);
    for (let level = c.channelMult.length - 1; level >= 0; level--) {
      for (let r = 0; r <= c.resBlocks; r++) {
        const skip = skips.pop();
        if (!skip) throw new Error('UNet: skip stack underflow');
        h = this.resBlock(`up.${level}.${r}`, tf.concat([h, skip], 3), emb, ch * c.channelMult[level]);
        if (c.attentionResolutions.includes(res)) h = this.attention(`up.${level}.${r}.attn`, h);
      }
      if (level > 0) {
        h = conv2d(p, `up.${level}.upsample`, upsample2x(h), h.shape[3], 3);
        res *= 2;
      }
    }
    h = silu(groupNorm(p, 'out.norm', h, c.groups));
    return conv2d(p, 'out', h, c.inChannels, 3, { zeroInit: true });
  }

  private resBlock(name: string, x: tf.Tensor4D, emb: tf.Tensor2D, cout: number): tf.Tensor4D {
    const p = this.params;
    let h = conv2d(p, `${name}.conv1`, silu(groupNorm(p, `${name}.norm1`, x, this.config.groups)), cout, 3);
    let normed: tf.Tensor4D;
    if (this.config.conditioning === 'scale-shift') {
      const e = tf.reshape(linear(p, `${name}.emb`, silu(emb), 2 * cout), [emb.shape[0], 1, 1, 2 * cout]);
      const [scale, shift] = tf.split(e, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
      normed = tf.add(tf.mul(groupNorm(p, `${name}.norm2`, h, this.config.groups), tf.add(scale, 1)), shift);
    } else {
      const e = linear(p, `${name}.emb`, silu(emb), cout);
      h = tf.add(h, tf.reshape(e, [e.shape[0], 1, 1, cout]));
      normed = groupNorm(p, `${name}.norm2`, h, this.config.groups);
    }
    h = conv2d(p, `${name}.conv2`, silu(normed), cout, 3, { zeroInit: true });
    const skip = x.shape[3] === cout ? x : conv2d(p, `${name}.skip`, x, cout, 1);
    return tf.add(skip, h);
  }

  /** Single-head self-attention over the h·w positions, residual, zero-initialised output. */
  private attention(name: string, x: tf.Tensor4D): tf.Tensor4D {
    const p = this.params;
    const [b, hh, ww, c] = x.shape;
    const n = hh * ww;
    const qkv = tf.reshape(conv2d(p, `${name}.qkv`, groupNorm(p, `${name}.norm`, x, this.config.groups), 3 * c, 1), [b, n, 3 * c]);
    const [q, k, v] = tf.split(qkv, 3, 2) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
    // An explicit transpose: wasm's matMul with transposeB is several times slower.
    const scores = tf.mul(tf.matMul(q, tf.transpose(k, [0, 2, 1])), 1 / Math.sqrt(c));
    const attended = tf.matMul(tf.softmax(scores), v);
    return tf.add(x, conv2d(p, `${name}.proj`, tf.reshape(attended, [b, hh, ww, c]), c, 1, { zeroInit: true }));
  }

  /** All weights, flattened in parameter order (for checkpoints, EMA and data-parallel sync). */
  async flatWeights(): Promise<Float32Array> {
    const out = new Float32Array(this.parameterCount());
    let offset = 0;
    for (const v of this.params.variables.values()) {
      out.set((await v.data()) as Float32Array, offset);
      offset += v.size;
    }
    return out;
  }

  /** flatWeights, synchronously (CPU backends; used at construction). */
  flatWeightsSync(): Float32Array {
    const out = new Float32Array(this.parameterCount());
    let offset = 0;
    for (const v of this.params.variables.values()) {
      out.set(v.dataSync() as Float32Array, offset);
      offset += v.size;
    }
    return out;
  }

  setFlatWeights(values: Float32Array): void {
    if (values.length !== this.parameterCount())
      throw new RangeError(`setFlatWeights: ${values.length} values for ${this.parameterCount()} parameters`);
    let offset = 0;
    for (const v of this.params.variables.values()) {
      const t = tf.tensor(values.subarray(offset, offset + v.size), v.shape);
      v.assign(t);
      t.dispose();
      offset += v.size;
    }
  }

  /** Parameter names and shapes in save order. */
  layout(): { name: string; shape: number[] }[] {
    return [...this.params.variables.entries()].map(([name, v]) => ({ name, shape: [...v.shape] }));
  }

  /**
   * Save as an id3 tensor file: `<path>.bin` holds every parameter as little-endian float32,
   * concatenated in `meta.params` order; `<path>.json` holds the config, the layout and the
   * data's sha256. `UNet.load` rebuilds the network from the config and checks the layout.
   * `values` saves other weights of the same layout (e.g. the EMA copy) instead of this net's.
   */
  async save(path: string, extraMeta: Record<string, unknown> = {}, values?: Float32Array): Promise<string> {
    const flat = values ?? (await this.flatWeights());
    if (flat.length !== this.parameterCount()) throw new RangeError(`save: ${flat.length} values for ${this.parameterCount()} parameters`);
    return writeTensorFile(path, 'float32', [flat.length], flat, {
      format: UNET_WEIGHTS_FORMAT,
      config: this.config,
      params: this.layout(),
      ...extraMeta,
    });
  }

  static load(path: string): UNet {
    const { header, values } = readTensorFile(path);
    const meta = header.meta as { format?: string; config?: unknown; params?: { name: string; shape: number[] }[] } | undefined;
    if (meta?.format !== UNET_WEIGHTS_FORMAT || !meta.params)
      throw new InvalidInputError(`${path}: not ${UNET_WEIGHTS_FORMAT} weights`, { file: path });
    const net = UNet.create(meta.config as UNetConfigInput, 0);
    const layout = net.layout();
    if (JSON.stringify(layout) !== JSON.stringify(meta.params)) {
      net.dispose();
      throw new InvalidInputError(`${path}: parameter layout does not match its config (saved by a different UNet version?)`, {
        file: path,
      });
    }
    net.setFlatWeights(values as Float32Array);
    return net;
  }

  dispose(): void {
    this.params.dispose();
  }
}
