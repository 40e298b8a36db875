/** One shard's result: flat gradients (parameter order) and the loss terms, summable over shards. */
export interface GradientResult {
  readonly grads: Float32Array;
  readonly terms: Float32Array;
}

/** Main thread → worker. `init` once, then one `step` per training step. */
export type GradientWorkerRequest<Init, Payload> =
  | { readonly kind: 'init'; readonly init: Init }
  | { readonly kind: 'step'; readonly id: number; readonly weights: Float32Array; readonly payload: Payload };

/** Worker → main thread: one reply per request. */
export type GradientWorkerReply =
  | { readonly kind: 'ready' }
  | ({ readonly kind: 'grads'; readonly id: number } & GradientResult)
  | { readonly kind: 'error'; readonly message: string };
