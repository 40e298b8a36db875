import { forEachLimited } from '../contracts';

// The experiment workflow's scheduler, driven here by hand: each item runs until the test
// finishes it, and `waitUntil` polls as the workflow's `condition` re-checks after every event.
function harness(items: readonly string[], limit: number, conflict?: (a: string, b: string) => boolean) {
  const started: string[] = [];
  const finishers = new Map<string, () => void>();
  const waitUntil = async (ready: () => boolean): Promise<void> => {
    while (!ready()) await new Promise((r) => setImmediate(r));
  };
  const done = forEachLimited(
    items,
    limit,
    (item) =>
      new Promise<void>((resolve) => {
        started.push(item);
        finishers.set(item, resolve);
      }),
    { conflict, waitUntil },
  );
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));
  const finish = async (item: string): Promise<void> => {
    const f = finishers.get(item);
    if (!f) throw new Error(`${item} is not running (started: ${started.join(', ')})`);
    finishers.delete(item);
    f();
    await settle();
  };
  const running = (): string[] => [...finishers.keys()].sort();
  return { started, finish, running, done, settle };
}

// Items named <row><seed>: a row's seeds make the same data.
const sameRow = (a: string, b: string): boolean => a[0] === b[0];

describe('forEachLimited (the experiment scheduler)', () => {
  it('one at a time runs the items in order', async () => {
    const h = harness(['A0', 'A1', 'B0'], 1, sameRow);
    await h.settle();
    expect(h.running()).toEqual(['A0']);
    await h.finish('A0');
    expect(h.running()).toEqual(['A1']);
    await h.finish('A1');
    await h.finish('B0');
    await h.done;
    expect(h.started).toEqual(['A0', 'A1', 'B0']);
  });

  it('side by side, an item that conflicts with one in flight waits and the next free one starts', async () => {
    const h = harness(['A0', 'A1', 'B0', 'B1', 'C0'], 2, sameRow);
    await h.settle();
    expect(h.running()).toEqual(['A0', 'B0']); // A1 skipped: A0 makes its data
    await h.finish('B0');
    expect(h.running()).toEqual(['A0', 'B1']); // A1 still waits for A0; B1 is free now
    await h.finish('B1');
    expect(h.running()).toEqual(['A0', 'C0']);
    await h.finish('A0');
    expect(h.running()).toEqual(['A1', 'C0']);
    await h.finish('C0');
    await h.finish('A1');
    await h.done;
    expect(h.started).toEqual(['A0', 'B0', 'B1', 'C0', 'A1']);
  });

  it('takes the first free item in order: a freed row seed before later rows', async () => {
    const h = harness(['A0', 'A1', 'B0', 'B1', 'C0'], 2, sameRow);
    await h.settle();
    await h.finish('A0');
    expect(h.running()).toEqual(['A1', 'B0']);
    await h.finish('B0');
    expect(h.running()).toEqual(['A1', 'B1']);
    await h.finish('A1');
    expect(h.running()).toEqual(['B1', 'C0']);
    await h.finish('B1');
    await h.finish('C0');
    await h.done;
    expect(h.started).toEqual(['A0', 'B0', 'A1', 'B1', 'C0']);
  });

  it('a lane with only conflicting items left waits for them rather than running two at once', async () => {
    const h = harness(['A0', 'A1', 'A2'], 3, sameRow);
    await h.settle();
    expect(h.running()).toEqual(['A0']);
    await h.finish('A0');
    expect(h.running()).toEqual(['A1']);
    await h.finish('A1');
    await h.finish('A2');
    await h.done;
    expect(h.started).toEqual(['A0', 'A1', 'A2']);
  });

  it('without conflicts it fills every lane in order, and an empty list finishes at once', async () => {
    const h = harness(['A0', 'A1', 'B0'], 2);
    await h.settle();
    expect(h.running()).toEqual(['A0', 'A1']);
    await h.finish('A1');
    expect(h.running()).toEqual(['A0', 'B0']);
    await h.finish('A0');
    await h.finish('B0');
    await h.done;
    await expect(forEachLimited([], 2, async () => undefined, { waitUntil: async () => undefined })).resolves.toBeUndefined();
  });

  it('once stop() says so, starts no more; those in flight finish', async () => {
    const started: string[] = [];
    await forEachLimited(['A0', 'B0', 'C0', 'D0'], 2, async (item) => void started.push(item), { stop: () => started.length >= 3 });
    expect(started).toEqual(['A0', 'B0', 'C0']);
  });

  it('starts the first item synchronously, as the plain loop did (replayed executions issue the same commands)', () => {
    const started: string[] = [];
    void forEachLimited(['A0', 'B0'], 1, async (item) => void started.push(item), { waitUntil: async () => undefined });
    expect(started).toEqual(['A0']);
  });
});
