import { tf } from '../backend';
import { JsLoopOptimizer } from './js-loop-optimizer';
import {
  optimizerConfigSchema,
  optimizerImplementationFor,
  type Optimizer,
  type OptimizerConfigInput,
  type OptimizerImplementation,
} from './optimizer';
import { TfjsOpsOptimizer } from './tfjs-ops-optimizer';

/**
 * An optimiser over `variables` (their order is the parameter order of flat gradients, weights
 * and state). The implementation follows the active backend unless one is named.
 */
export function createOptimizer(
  config: OptimizerConfigInput,
  variables: readonly tf.Variable[],
  o: { implementation?: OptimizerImplementation | 'auto' } = {},
): Optimizer {
  const parsed = optimizerConfigSchema.parse(config);
  const implementation = !o.implementation || o.implementation === 'auto' ? optimizerImplementationFor(tf.getBackend()) : o.implementation;
  return implementation === 'js-loop' ? new JsLoopOptimizer(parsed, variables) : new TfjsOpsOptimizer(parsed, variables);
}
