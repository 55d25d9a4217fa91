// What both SDK entries export besides connect().
export { Grid, modelInfo, type ContributeOptions, type GridOptions, type ServeOptions, type VdagRunOptions } from './grid.ts';
export type { VdagEvent, VdagRunResult } from './vdag-run.ts';
export { Contribution, type ContributionEvents } from './contribution.ts';
export { DEFAULT_NETWORK, type ConnectOptions } from './connect.ts';
export { DEFAULT_MAX_TOKENS } from './request.ts';
export { TextStream } from './text-stream.ts';
export type * from './types.ts';
export { AigridError, ERROR_CODES, ERROR_HINTS, isErrorCode, type ErrorCode, type SerializedError, type ModelSpec, type Block, type BlockSpecInput, type BlockQuery, type Vdag, type VdagSpecInput, type PolicyRecord, type PolicySpecInput, type Hop, type Identity, ephemeralIdentity } from '../../protocol/index.ts';
export type { ServingStatus, LoadingProgress, VerifyOptions, CheckEvent, PeerVerdict } from '../grid/index.ts';
