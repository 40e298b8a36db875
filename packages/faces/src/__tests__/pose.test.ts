import { headPoseFrom68, projectModel, type Point } from '../index';

describe('head pose from landmarks', () => {
  it.each([
    { yaw: 0, pitch: 0, roll: 0 },
    { yaw: 30, pitch: 0, roll: 0 },
    { yaw: -20, pitch: 10, roll: 5 },
    { yaw: 10, pitch: -15, roll: -12 },
  ])('recovers a known pose %o from projected landmarks', (pose) => {
    const est = headPoseFrom68(projectModel(pose));
    expect(est.yaw).toBeCloseTo(pose.yaw, 6);
    expect(est.pitch).toBeCloseTo(pose.pitch, 6);
    expect(est.roll).toBeCloseTo(pose.roll, 6);
  });

  it('a horizontal flip negates yaw and roll and keeps pitch', () => {
    const pts = projectModel({ yaw: 25, pitch: 8, roll: 10 });
    // Mirror x and swap left/right landmark roles (36↔45, 48↔54), as flipping an image does.
    const flipped: Point[] = pts.map(([x, y]) => [200 - x, y]);
    for (const [a, b] of [
      [36, 45],
      [48, 54],
    ])
      [flipped[a], flipped[b]] = [flipped[b], flipped[a]];
    const est = headPoseFrom68(flipped);
    expect(est.yaw).toBeCloseTo(-25, 6);
    expect(est.roll).toBeCloseTo(-10, 6);
    expect(est.pitch).toBeCloseTo(8, 6);
  });

  it('rotating the image in plane by θ changes roll by θ', () => {
    const pts = projectModel({ yaw: 15, pitch: -5, roll: 3 });
    const theta = (20 * Math.PI) / 180; // clockwise in the image (y down)
    const rotated: Point[] = pts.map(([x, y]) => [
      100 + (x - 100) * Math.cos(theta) - (y - 100) * Math.sin(theta),
      100 + (x - 100) * Math.sin(theta) + (y - 100) * Math.cos(theta),
    ]);
    const before = headPoseFrom68(pts);
    const after = headPoseFrom68(rotated);
    expect(after.roll - before.roll).toBeCloseTo(20, 6);
    expect(after.yaw).toBeCloseTo(before.yaw, 6);
    expect(after.pitch).toBeCloseTo(before.pitch, 6);
  });
});
