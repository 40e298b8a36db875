import { learningRateAt, lrScheduleSchema, type LrScheduleInput } from '../index';

const at = (s: LrScheduleInput, steps: number[]): number[] => steps.map((t) => learningRateAt(lrScheduleSchema.parse(s), t));

describe('learning-rate schedules (1-based step numbers)', () => {
  it('linear warm-up then constant', () => {
    expect(at({ learningRate: 1e-3, warmupSteps: 4 }, [1, 2, 4, 100])).toEqual([2.5e-4, 5e-4, 1e-3, 1e-3]);
    expect(at({ learningRate: 0.1 }, [1, 1000])).toEqual([0.1, 0.1]);
  });

  it('step decay: ×gamma from each milestone on (MultiStepLR)', () => {
    const s: LrScheduleInput = { learningRate: 0.1, decay: { kind: 'step', milestones: [10, 20], gamma: 0.1 } };
    const got = at(s, [1, 9, 10, 19, 20, 500]);
    [0.1, 0.1, 0.01, 0.01, 0.001, 0.001].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 15));
    // Warm-up and milestones compose.
    expect(at({ ...s, warmupSteps: 4 }, [2])[0]).toBeCloseTo(0.05, 15);
  });

  it('cosine: base at the end of the warm-up, the midpoint halfway, the floor at totalSteps', () => {
    const s = { learningRate: 1, warmupSteps: 10, decay: { kind: 'cosine', totalSteps: 110, minLearningRate: 0.1 } } as const;
    const [w5, w10, mid, quarter, end, after] = at(s, [5, 10, 60, 35, 110, 200]);
    expect(w5).toBeCloseTo(0.5, 12);
    expect(w10).toBeCloseTo(1, 12);
    expect(mid).toBeCloseTo(0.55, 12); // 0.1 + 0.9·(1 + cos π/2)/2
    expect(quarter).toBeCloseTo(0.1 + 0.9 * (0.5 + Math.SQRT1_2 / 2), 12); // cos π/4
    expect(end).toBeCloseTo(0.1, 12);
    expect(after).toBeCloseTo(0.1, 12);
  });

  it('polynomial: (1 − progress)^power to the end rate', () => {
    const s = { learningRate: 0.1, decay: { kind: 'polynomial', totalSteps: 100, power: 2 } } as const;
    const got = at(s, [0, 50, 75, 100, 150]);
    [0.1, 0.025, 0.00625, 0, 0].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 15));
    expect(at({ learningRate: 1, decay: { kind: 'polynomial', totalSteps: 10, endLearningRate: 0.5 } }, [5])[0]).toBeCloseTo(0.75, 15);
  });

  it('the schema fills defaults and names bad configs', () => {
    expect(lrScheduleSchema.parse({ learningRate: 0.1 })).toEqual({ learningRate: 0.1, warmupSteps: 0, decay: { kind: 'constant' } });
    expect(lrScheduleSchema.parse({ learningRate: 0.1, decay: { kind: 'step', milestones: [5] } }).decay).toEqual({
      kind: 'step',
      milestones: [5],
      gamma: 0.1,
    });
    expect(() => lrScheduleSchema.parse({ learningRate: 0.1, decay: { kind: 'step', milestones: [5, 5] } })).toThrow(
      /milestones must increase/,
    );
    expect(() => lrScheduleSchema.parse({ learningRate: 0.1, warmupSteps: 10, decay: { kind: 'cosine', totalSteps: 10 } })).toThrow(
      /totalSteps must exceed/,
    );
    expect(() => lrScheduleSchema.parse({ learningRate: 0.1, decay: { kind: 'linear' } })).toThrow();
  });
});
