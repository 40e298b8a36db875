import { z } from 'zod';

const stepsSchema = z.number().int().positive();

/** What the learning rate does after the warm-up. */
export const lrDecaySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant') }).strict(),
  /** Multiply by gamma at each milestone (1-based step numbers, as torch's MultiStepLR). */
  z.object({ kind: z.literal('step'), milestones: z.array(stepsSchema).min(1), gamma: z.number().positive().default(0.1) }).strict(),
  /** Half a cosine from the base rate at the end of the warm-up to `minLearningRate` at totalSteps. */
  z.object({ kind: z.literal('cosine'), totalSteps: stepsSchema, minLearningRate: z.number().nonnegative().default(0) }).strict(),
  /** (1 − progress)^power from the base rate to `endLearningRate` at totalSteps. */
  z
    .object({
      kind: z.literal('polynomial'),
      totalSteps: stepsSchema,
      power: z.number().positive().default(1),
      endLearningRate: z.number().nonnegative().default(0),
    })
    .strict(),
]);

export const lrScheduleSchema = z
  .object({
    learningRate: z.number().positive(),
    /** Linear warm-up from 0: step s (1-based) uses learningRate·min(1, s / warmupSteps). */
    warmupSteps: z.number().int().nonnegative().default(0),
    decay: lrDecaySchema.default({ kind: 'constant' }),
  })
  .strict()
  .superRefine((s, ctx) => {
    const d = s.decay;
    if (d.kind === 'step' && d.milestones.some((m, i) => i > 0 && m <= d.milestones[i - 1])) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['decay', 'milestones'], message: 'milestones must increase' });
    }
    if ((d.kind === 'cosine' || d.kind === 'polynomial') && d.totalSteps <= s.warmupSteps) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['decay', 'totalSteps'],
        message: `totalSteps must exceed warmupSteps (${s.warmupSteps})`,
      });
    }
  });
export type LrSchedule = z.output<typeof lrScheduleSchema>;
export type LrScheduleInput = z.input<typeof lrScheduleSchema>;
export type LrDecay = z.output<typeof lrDecaySchema>;

/** The linear warm-up factor at 1-based step `step`: min(1, step / warmupSteps), 1 without warm-up. */
export function warmupFactor(step: number, warmupSteps: number): number {
  return warmupSteps > 0 ? Math.min(1, step / warmupSteps) : 1;
}

/** Fraction of the decay phase (after the warm-up, up to totalSteps) done at `step`, in [0, 1]. */
export function decayProgress(step: number, warmupSteps: number, totalSteps: number): number {
  return Math.min(1, Math.max(0, (step - warmupSteps) / (totalSteps - warmupSteps)));
}

/** The decayed rate at `step`, before the warm-up factor. */
export function decayedLearningRate(base: number, decay: LrDecay, step: number, warmupSteps: number): number {
  switch (decay.kind) {
    case 'constant':
      return base;
    case 'step':
      return base * decay.gamma ** decay.milestones.filter((m) => step >= m).length;
    case 'cosine': {
      const p = decayProgress(step, warmupSteps, decay.totalSteps);
      return decay.minLearningRate + (base - decay.minLearningRate) * 0.5 * (1 + Math.cos(Math.PI * p));
    }
    case 'polynomial': {
      const p = decayProgress(step, warmupSteps, decay.totalSteps);
      return decay.endLearningRate + (base - decay.endLearningRate) * (1 - p) ** decay.power;
    }
  }
}

/** The learning rate for update number `step` (1-based): warm-up factor × decayed rate. */
export function learningRateAt(schedule: LrSchedule, step: number): number {
  return decayedLearningRate(schedule.learningRate, schedule.decay, step, schedule.warmupSteps) * warmupFactor(step, schedule.warmupSteps);
}
