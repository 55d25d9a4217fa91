// The protocol: schemas, frame codec, error codes and limits shared by every part of AIGrid.
export * from './errors.ts';
export * from './limits.ts';
export * from './signaling.ts';
export * from './serving.ts';
export * from './blocks.ts';
export * from './vdag.ts';
export * from './activation.ts';
export * from './frames.ts';
export * from './session.ts';
export * from './f16.ts';
export * from './origins.ts';
export * from './identity.ts';
export * from './tickets.ts';
export * from './agreement.ts';
export * from './evidence.ts';
export * from './accusation.ts';
export * from './ice.ts';
