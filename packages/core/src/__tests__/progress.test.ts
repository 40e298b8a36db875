import { describeProgress, formatTimeLeft, timeLeftEstimator, type ProgressEvent } from '../index';

describe('time left in a counted phase', () => {
  it('formats seconds, minutes, and hours with minutes', () => {
    expect(formatTimeLeft(0.2)).toBe('about 1 s left');
    expect(formatTimeLeft(42)).toBe('about 42 s left');
    expect(formatTimeLeft(89)).toBe('about 89 s left');
    expect(formatTimeLeft(90)).toBe('about 2 min left');
    expect(formatTimeLeft(42 * 60 + 10)).toBe('about 42 min left');
    expect(formatTimeLeft(89 * 60)).toBe('about 89 min left');
    expect(formatTimeLeft(2 * 3600 + 10 * 60)).toBe('about 2 h 10 min left');
    expect(formatTimeLeft(2 * 3600 + 10)).toBe('about 2 h left');
  });

  const train = (step: number, message?: string): ProgressEvent => ({
    stage: 'fr-train',
    phase: 'train',
    step,
    total: 1500,
    ...(message ? { message } : {}),
  });

  it("estimates from the phase's own pace once it has moved enough steps", () => {
    const eta = timeLeftEstimator(5);
    expect(eta(train(250), 0).message).toBeUndefined(); // the phase's start
    expect(eta(train(254), 10_000).message).toBeUndefined(); // 4 steps: too few to tell
    // 10 steps in 25 s: 2.5 s a step, 1,240 steps left → 3,100 s.
    expect(eta(train(260), 25_000).message).toBe('about 52 min left');
    // A message of the stage's own is kept, the estimate after it.
    expect(eta(train(260, 'warm-up'), 25_000).message).toBe('warm-up (about 52 min left)');
    expect(describeProgress(eta(train(260), 25_000))).toBe('[fr-train] train 260/1500 about 52 min left');
  });

  it('keeps each phase its own start: a checkpoint between steps does not restart the estimate', () => {
    const eta = timeLeftEstimator(5);
    eta(train(0), 0);
    expect(eta({ stage: 'fr-train', phase: 'checkpoint', step: 250, total: 1500 }, 500_000).message).toBeUndefined();
    // 300 steps in 600 s: 2 s a step, 1,200 left.
    expect(eta(train(300), 600_000).message).toBe('about 40 min left');
  });

  it('restarts where the step count goes back (a resume), and says nothing at the end or without a total', () => {
    const eta = timeLeftEstimator(5);
    eta(train(900), 0);
    eta(train(1000), 100_000);
    expect(eta(train(250), 200_000).message).toBeUndefined(); // back to a checkpoint: a new start
    expect(eta(train(260), 210_000).message).toBe('about 21 min left'); // 1 s a step, 1,240 left
    expect(eta(train(1500), 1_450_000).message).toBeUndefined();
    expect(eta({ stage: 'eval', phase: 'embed', step: 10 }, 1_500_000)).toEqual({ stage: 'eval', phase: 'embed', step: 10 });
  });

  it('restarts where a phase counts from its first step again (the next shard in one process)', () => {
    const eta = timeLeftEstimator(5);
    const sample = (step: number): ProgressEvent => ({ stage: 'sample', phase: 'sample', step, total: 10 });
    eta(sample(1), 0);
    expect(eta(sample(9), 800_000).message).toBe('about 2 min left'); // 8 identities in 800 s, 1 left
    // The next shard starts again at 1, an hour later: its estimate must not count that hour.
    expect(eta(sample(1), 4_400_000).message).toBeUndefined();
    expect(eta(sample(6), 4_900_000).message).toBe('about 7 min left'); // 5 in 500 s, 4 left
  });

  it('needs at least one step of pace whatever minSteps says', () => {
    const eta = timeLeftEstimator(0);
    eta({ stage: 's', phase: 'p', step: 3, total: 10 }, 0);
    expect(eta({ stage: 's', phase: 'p', step: 3, total: 10 }, 1000).message).toBeUndefined();
    expect(eta({ stage: 's', phase: 'p', step: 4, total: 10 }, 2000).message).toBe('about 12 s left');
  });
});
