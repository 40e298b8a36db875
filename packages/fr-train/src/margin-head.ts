import { z } from 'zod';
import { ConfigError, Rng, flattenTensorsSync, parseConfig, tf } from '@id3/core';
import { DEFAULT_MARGINS, adaCosScale, checkLabels, l2Normalize, marginLogits, softmaxCrossEntropy, type MarginSpec } from './margin';
import { ParamStore } from './param-store';
import { assignFlat, flattenVariables, readWeights, restoreWeights, writeWeights } from './weights-file';

export const MARGIN_HEAD_WEIGHTS_FORMAT = 'id3-margin-head-weights/1';

/** `scale` unset: the AdaCos scale √2·ln(C − 1) for the class count (see adaCosScale). */
const scale = z.number().positive().optional();

/**
 * The classification head over identities: ArcFace (additive angular margin, default 0.5),
 * CosFace (additive cosine margin, default 0.35) or softmax (no margin; `normalize` false is a
 * plain linear softmax x·W, no scale).
 */
export const marginHeadConfigSchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('arcface'), margin: z.number().min(0).lt(Math.PI).default(DEFAULT_MARGINS.arcface), scale }).strict(),
    z.object({ kind: z.literal('cosface'), margin: z.number().min(0).max(2).default(DEFAULT_MARGINS.cosface), scale }).strict(),
    z.object({ kind: z.literal('softmax'), normalize: z.boolean().default(true), scale }).strict(),
  ])
  .superRefine((c, ctx) => {
    if (c.kind === 'softmax' && !c.normalize && c.scale !== undefined)
      ctx.addIssue({ code: 'custom', path: ['scale'], message: 'a softmax without normalisation has no scale' });
  });
export type MarginHeadConfig = z.output<typeof marginHeadConfigSchema>;
export type MarginHeadConfigInput = z.input<typeof marginHeadConfigSchema>;

export interface MarginHeadShape {
  readonly classes: number;
  readonly embeddingDim: number;
}

export interface MarginOptions {
  /** Scales the margin, in [0, 1]: 0 for a softmax warm-up, 1 (default) for the full margin (see marginWarmupFactor). */
  readonly marginFactor?: number;
}

/**
 * Class centres W [embeddingDim, classes] and the margin softmax over them — arcface_torch's
 * PartialFC without sampling (sample_rate 1): logits from normalised embeddings and normalised
 * centres, the margin at each row's label, the scale, then cross-entropy. W starts at
 * N(0, 0.01²) as there.
 */
export class MarginHead {
  readonly params: ParamStore;
  /** The resolved kind, margin and scale. */
  readonly spec: MarginSpec;
  private readonly normalize: boolean;

  private constructor(
    readonly config: MarginHeadConfig,
    readonly shape: MarginHeadShape,
    rng: Rng | undefined,
  ) {
    const { classes, embeddingDim } = shape;
    if (!Number.isInteger(classes) || classes < 2) throw new RangeError(`MarginHead: classes must be an integer ≥ 2, got ${classes}`);
    if (!Number.isInteger(embeddingDim) || embeddingDim < 1)
      throw new RangeError(`MarginHead: embeddingDim must be a positive integer, got ${embeddingDim}`);
    this.normalize = config.kind !== 'softmax' || config.normalize;
    const margin = config.kind === 'softmax' ? 0 : config.margin;
    if (this.normalize && config.scale === undefined && classes < 3)
      throw new ConfigError(
        [{ field: 'scale', message: `the default AdaCos scale √2·ln(C − 1) needs at least 3 classes, got ${classes}` }],
        'margin head config',
      );
    const s = this.normalize ? (config.scale ?? adaCosScale(classes)) : 1;
    this.spec = { kind: config.kind, margin, scale: s };
    this.params = new ParamStore(rng);
    this.params.param('weight', [embeddingDim, classes], { normal: 0.01 });
    this.params.freeze();
  }

  static create(config: MarginHeadConfigInput, shape: MarginHeadShape, seed: number): MarginHead {
    return new MarginHead(parseConfig(marginHeadConfigSchema, config, 'margin head config'), shape, new Rng(seed).fork('margin-head-init'));
  }

  /** The head with W at zero, to load weights into (no random draws). */
  static empty(config: MarginHeadConfigInput, shape: MarginHeadShape): MarginHead {
    return new MarginHead(parseConfig(marginHeadConfigSchema, config, 'margin head config'), shape, undefined);
  }

  /** The class centres W [embeddingDim, classes]. */
  get weight(): tf.Variable {
    return this.variables[0];
  }

  get variables(): tf.Variable[] {
    return [...this.params.params.values()];
  }

  parameterCount(): number {
    return this.params.paramCount();
  }

  /** cos θ between each embedding and each class centre, [n, classes] (also what accuracy reads). */
  cosines(embeddings: tf.Tensor2D): tf.Tensor2D {
    this.checkEmbeddings(embeddings);
    return tf.tidy(() => tf.matMul(l2Normalize(embeddings, 1), l2Normalize(this.weight as tf.Tensor2D, 0)));
  }

  /** Logits with the margin applied at each row's label (a plain x·W for the unnormalised softmax). */
  logits(embeddings: tf.Tensor2D, labels: ArrayLike<number>, o: MarginOptions = {}): tf.Tensor2D {
    if (this.normalize) return tf.tidy(() => marginLogits(this.cosines(embeddings), labels, this.spec, o.marginFactor ?? 1));
    this.checkEmbeddings(embeddings);
    checkLabels(labels, this.shape.classes, embeddings.shape[0]);
    return tf.matMul(embeddings, this.weight as tf.Tensor2D);
  }

  /** Mean cross-entropy of the margin logits: the training loss. Differentiable in the embeddings and W. */
  loss(embeddings: tf.Tensor2D, labels: ArrayLike<number>, o: MarginOptions = {}): tf.Scalar {
    return tf.tidy(() => softmaxCrossEntropy(this.logits(embeddings, labels, o), labels));
  }

  private checkEmbeddings(embeddings: tf.Tensor2D): void {
    if (embeddings.rank !== 2 || embeddings.shape[1] !== this.shape.embeddingDim)
      throw new RangeError(`MarginHead: embeddings must be [n, ${this.shape.embeddingDim}], got [${embeddings.shape.join(', ')}]`);
  }

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

  /** Save as an id3 tensor file (W; the header holds the config, classes and embedding size). */
  save(path: string, extraMeta: Record<string, unknown> = {}, params?: Float32Array): Promise<string> {
    return writeWeights(path, this.params, MARGIN_HEAD_WEIGHTS_FORMAT, this.config, { shape: this.shape, ...extraMeta }, params);
  }

  static load(path: string): MarginHead {
    const { meta, values } = readWeights(path, MARGIN_HEAD_WEIGHTS_FORMAT);
    const head = MarginHead.empty(meta.config as MarginHeadConfigInput, meta.shape as MarginHeadShape);
    try {
      restoreWeights(path, head.params, meta, values);
    } catch (err) {
      head.dispose();
      throw err;
    }
    return head;
  }

  dispose(): void {
    this.params.dispose();
  }
}
