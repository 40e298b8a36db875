import { Rng, flattenTensorsSync, parseConfig, tf } from '@id3/core';
import { iresnetConfigSchema, iresnetPlan, type IResNetConfig, type IResNetConfigInput, type IResNetPlan } from './iresnet-config';
import { batchNorm, conv2d, dropout, linear, prelu, type ForwardMode } from './layers';
import { ParamStore, type NamedShape } from './param-store';
import { assignFlat, flattenVariables, readWeights, restoreWeights, writeWeights } from './weights-file';

export const IRESNET_WEIGHTS_FORMAT = 'id3-iresnet-weights/1';

export interface IResNetForwardOptions {
  /** Batch statistics (and running-average updates) and dropout when true; running statistics when false. */
  readonly training: boolean;
  /** Draws the dropout masks; required when training with dropout > 0. */
  readonly rng?: Rng;
}

/**
 * arcface_torch's IResNet (backbones/iresnet.py) on tfjs:
 *   stem      conv3×3 (stride 1) → BN → PReLU
 *   4 stages  IBasicBlocks: BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus the input
 *             (through conv1×1(stride) → BN where the shape changes); the first block of a
 *             stage carries its stride
 *   head      BN → flatten → dropout → fc → BN (`features`: γ fixed at 1, β learned)
 * Input [n, side, side, 3] RGB in [-1, 1]; output [n, embeddingDim], not normalised (the
 * margin head and the verification protocol normalise).
 *
 * Tensors are named as in arcface_torch's state_dict (`layer2.0.downsample.1.running_var`)
 * and created in its order. Layouts differ from PyTorch's: convolution kernels are
 * [kh, kw, cin, cout], the fc weight is [in, out] and its inputs are flattened in NHWC order
 * (h, w, c), so a converted state_dict needs transposes and a permutation of fc rows.
 * The frozen `features.weight` (all ones) is not stored: it is the one PyTorch parameter
 * that this network does not count.
 */
export class IResNet {
  readonly params: ParamStore;
  readonly plan: IResNetPlan;

  private constructor(
    readonly config: IResNetConfig,
    rng: Rng | undefined,
  ) {
    this.params = new ParamStore(rng);
    this.plan = iresnetPlan(config);
    // One inference forward on a 1-image batch creates every tensor, in forward order.
    tf.tidy(() => {
      const r = config.resolution;
      this.forward(tf.zeros([1, r, r, 3]), { training: false });
    });
    this.params.freeze();
  }

  /** Validates the config (errors name the field, e.g. `field 'resolution': 48 is not a supported resolution`). */
  static create(config: IResNetConfigInput, seed: number): IResNet {
    return new IResNet(parseConfig(iresnetConfigSchema, config, 'iresnet config'), new Rng(seed).fork('iresnet-init'));
  }

  /**
   * The network with its random initialisers skipped (those tensors zero; BatchNorm and PReLU
   * at their constant inits), to load weights into: drawing 43 M normals for an IResNet-50
   * costs seconds.
   */
  static empty(config: IResNetConfigInput): IResNet {
    return new IResNet(parseConfig(iresnetConfigSchema, config, 'iresnet config'), undefined);
  }

  /** The trainable variables, in parameter order (what an optimiser and flat gradients use). */
  get variables(): tf.Variable[] {
    return [...this.params.params.values()];
  }

  /** BatchNorm running means and variances: saved with the weights, never differentiated. */
  get buffers(): tf.Variable[] {
    return [...this.params.buffers.values()];
  }

  parameterCount(): number {
    return this.params.paramCount();
  }

  bufferCount(): number {
    return this.params.bufferCount();
  }

  /** Embeddings for a batch. Call inside tf.tidy (or a gradient function). */
  forward(x: tf.Tensor4D, o: IResNetForwardOptions): tf.Tensor2D {
    const { resolution: r, dropout: rate, embeddingDim } = this.config;
    if (x.rank !== 4 || x.shape[1] !== r || x.shape[2] !== r || x.shape[3] !== 3)
      throw new RangeError(`IResNet: input must be [n, ${r}, ${r}, 3] (RGB in [-1, 1]), got [${x.shape.join(', ')}]`);
    if (o.training && rate > 0 && !o.rng) throw new Error('IResNet: training with dropout > 0 needs options.rng');
    const p = this.params;
    const mode: ForwardMode = { training: o.training };
    let h = conv2d(p, 'conv1', x, this.plan.stemChannels, 3, 1);
    h = prelu(p, 'prelu', batchNorm(p, 'bn1', h, mode));
    for (const [i, stage] of this.plan.stages.entries()) {
      for (let b = 0; b < stage.blocks; b++) h = this.block(`layer${i + 1}.${b}`, h, stage.channels, b === 0 ? stage.stride : 1, mode);
    }
    h = batchNorm(p, 'bn2', h, mode);
    let f = tf.reshape(h, [h.shape[0], this.plan.fcInputs]) as tf.Tensor2D;
    if (o.training && rate > 0 && o.rng) f = dropout(f, rate, o.rng);
    f = linear(p, 'fc', f, embeddingDim);
    return batchNorm(p, 'features', f, mode, { fixedScale: true });
  }

  /** IBasicBlock: BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus the (downsampled) input. */
  private block(name: string, x: tf.Tensor4D, planes: number, stride: 1 | 2, mode: ForwardMode): tf.Tensor4D {
    const p = this.params;
    let out = conv2d(p, `${name}.conv1`, batchNorm(p, `${name}.bn1`, x, mode), planes, 3, 1);
    out = prelu(p, `${name}.prelu`, batchNorm(p, `${name}.bn2`, out, mode));
    out = batchNorm(p, `${name}.bn3`, conv2d(p, `${name}.conv2`, out, planes, 3, stride), mode);
    const identity =
      stride !== 1 || x.shape[3] !== planes
        ? batchNorm(p, `${name}.downsample.1`, conv2d(p, `${name}.downsample.0`, x, planes, 1, stride), mode)
        : x;
    return tf.add(out, identity);
  }

  /** All parameters, flat in parameter order (checkpoints, data-parallel sync). */
  flatWeights(): Promise<Float32Array> {
    return flattenVariables(this.variables);
  }

  /** flatWeights, synchronously (CPU backends). */
  flatWeightsSync(): Float32Array {
    return flattenTensorsSync(this.variables);
  }

  setFlatWeights(values: Float32Array): void {
    assignFlat(this.variables, values, 'setFlatWeights');
  }

  /** The BatchNorm running statistics, flat in buffer order (checkpoints; data-parallel replicas take the main thread's). */
  flatBuffersSync(): Float32Array {
    return flattenTensorsSync(this.buffers);
  }

  setFlatBuffers(values: Float32Array): void {
    assignFlat(this.buffers, values, 'setFlatBuffers');
  }

  /** Parameter and buffer names and shapes, in save order. */
  layout(): { params: NamedShape[]; buffers: NamedShape[] } {
    return this.params.layout();
  }

  /**
   * Save as an id3 tensor file (parameters, then BatchNorm buffers; the header holds the config
   * and both layouts). `params` saves other parameter values of the same layout instead of the
   * live ones. `IResNet.load` rebuilds the network from the config and checks the layout.
   */
  save(path: string, extraMeta: Record<string, unknown> = {}, params?: Float32Array): Promise<string> {
    return writeWeights(path, this.params, IRESNET_WEIGHTS_FORMAT, this.config, extraMeta, params);
  }

  static load(path: string): IResNet {
    const { meta, values } = readWeights(path, IRESNET_WEIGHTS_FORMAT);
    const net = IResNet.empty(meta.config as IResNetConfigInput);
    try {
      restoreWeights(path, net.params, meta, values);
    } catch (err) {
      net.dispose();
      throw err;
    }
    return net;
  }

  dispose(): void {
    this.params.dispose();
  }
}
