/**
 * The generator the diffusion benches measure: train-diffusion's defaults (base 32, mults 1-2-2,
 * one residual block per level, attention at 8×8, 1.35 M parameters), also what the PyTorch
 * reference (unet_reference.py) builds from the same JSON.
 */
export const GENERATOR_ARCH = {
  baseChannels: 32,
  channelMult: [1, 2, 2],
  resBlocks: 1,
  attentionResolutions: [8],
  groups: 8,
  identityDim: 128,
  attributeDim: 4,
  conditionHidden: [512, 256],
};
